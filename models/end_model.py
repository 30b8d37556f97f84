"""The end model an edge node serves: a shared encoder + its LoRA adapter + a growable intent head.

Why this shape: on few labelled examples a randomly initialised head learns very slowly,
while a head whose rows start at the class centroids of mean-pooled, normalised embeddings
is right from the first turn (84 % vs 21 % on BANKING77 after 2k examples, DESIGN.md). The
head is therefore a scaled cosine classifier at start; LoRA on the attention projections
then adapts the encoder to the node's traffic. A new intent adds a row, leaving old rows
untouched, so old logits are unchanged until training moves them.

Every end model of a process shares one frozen encoder (:class:`models.lora.SharedEncoder`);
what a model owns is its adapter (None until it is first trained: a fresh LoRA adapter
changes nothing), its head and its labels, a few hundred KB. :meth:`EndModel.predict_many`
answers texts of many models in one forward pass.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from models.lora import LoraAdapter, SharedEncoder, split_factors
from models.options import HEAD_SCALE, MAX_LENGTH, POOL_LAYERS, PRECISION, LoraOptions

HEAD_WEIGHT = "head.weight"
HEAD_BIAS = "head.bias"
LORA_PREFIX = "lora."
FROZEN_KEY = "frozen"  # the encoder key of a model without an adapter


@dataclass(frozen=True)
class Prediction:
    intent: str
    confidence: float
    top_k: list[tuple[str, float]]
    embedding: np.ndarray[Any, Any]


HEAD_ANCHOR = 0.1  # the bootstrap head fit's L2 pull towards the class centroids


class IntentHead(torch.nn.Module):
    """``scale * (e @ W.T) + b`` over unit-norm embeddings ``e``; rows can be appended."""

    def __init__(self, dim: int, scale: float = HEAD_SCALE) -> None:
        super().__init__()
        self.scale = scale
        self.weight = torch.nn.Parameter(torch.zeros(0, dim))
        self.bias = torch.nn.Parameter(torch.zeros(0))

    def forward(self, e: torch.Tensor) -> torch.Tensor:
        return self.scale * (e @ self.weight.T) + self.bias

    def append(self, rows: torch.Tensor) -> None:
        with torch.no_grad():
            self.weight = torch.nn.Parameter(torch.cat([self.weight.detach(), rows]))
            self.bias = torch.nn.Parameter(torch.cat([self.bias.detach(), torch.zeros(len(rows))]))

    def set(self, weight: torch.Tensor, bias: torch.Tensor) -> None:
        self.weight = torch.nn.Parameter(weight.detach().clone())
        self.bias = torch.nn.Parameter(bias.detach().clone())


class EndModel:
    """Intent classifier for one edge node.

    >>> m = EndModel()  # the packaged all-MiniLM-L6-v2
    >>> m.fit_head(["where is my parcel", "cancel my order"], ["track", "cancel"])
    >>> m.predict(["where's my package"])[0].intent
    'track'
    """

    def __init__(
        self,
        encoder_path: str | Path | None = None,
        lora: LoraOptions = LoraOptions(),
        max_length: int = MAX_LENGTH,
        scale: float = HEAD_SCALE,
        precision: str = PRECISION,
        pool_layers: int = POOL_LAYERS,
    ) -> None:
        self.encoder = SharedEncoder.shared(
            encoder_path, max_length, precision, lora.targets, pool_layers
        )
        self.lora = lora
        self.adapter: LoraAdapter | None = None
        self.head = IntentHead(self.encoder.dim, scale)
        self.labels: list[str] = []
        # Serving reads and a swap of weights never interleave (a swap is a few tensor copies).
        self.lock = threading.RLock()

    # --- encoding ---------------------------------------------------------------------------
    @property
    def dim(self) -> int:
        return int(self.head.weight.shape[1])

    @property
    def pool_layers(self) -> int:
        """Encoder layers the features are pooled from (the model's, clipped)."""
        return self.encoder.pool_layers

    @property
    def encoder_path(self) -> Path:
        return self.encoder.path

    @property
    def precision(self) -> torch.dtype:
        return self.encoder.precision

    @property
    def base_model_name(self) -> str:
        return self.encoder_path.name if self.encoder_path.name != "model" else "all-MiniLM-L6-v2"

    def features(self, texts: Sequence[str]) -> torch.Tensor:
        """Unit-norm sentence embeddings through the adapted encoder (keeps the graph), in
        float32; the forward pass runs at the model's precision (LoRA and head weights
        stay float32, so training updates them exactly)."""
        return self.encoder.features(texts, [self.adapter])

    def _infer(self, texts: Sequence[str]) -> torch.Tensor:
        return self.encoder.infer(texts, [self.adapter])

    @torch.inference_mode()
    def embed(self, texts: Sequence[str], locked: bool = True) -> np.ndarray[Any, Any]:
        """Embeddings of ``texts``. ``locked=False`` is for the thread that alone swaps this
        model's weights (the learner): it cannot race itself, and serving need not wait."""
        with self.lock if locked else contextlib.nullcontext():
            return self._infer(texts).numpy()

    # --- head -------------------------------------------------------------------------------
    def label_index(self, label: str) -> int:
        return self.labels.index(label)

    def fit_head(
        self, texts: Sequence[str], labels: Sequence[str], anchor: float | None = HEAD_ANCHOR
    ) -> None:
        """A new head for ``texts``: rows at the class centroids, then (unless ``anchor`` is
        None) fitted to the examples by cross-entropy with an L2 pull of ``anchor`` towards
        the centroids. The fit lifts a few-shot start well above bare centroids (BANKING77,
        10 examples per intent: 81 % -> 87 % on held-out text); the pull keeps confidence on
        unknown intents low, which the drift detectors rely on."""
        self.head = IntentHead(self.dim, self.head.scale)
        self.labels = []
        self.add_labels(texts, labels)
        if anchor is None or len(self.labels) < 2:
            return
        x = torch.from_numpy(self.embed(list(texts)))
        y = torch.tensor([self.labels.index(label) for label in labels])
        start = self.head.weight.detach().clone()
        weight = start.clone().requires_grad_(True)
        bias = torch.zeros(len(self.labels), requires_grad=True)
        opt = torch.optim.LBFGS([weight, bias], max_iter=100, line_search_fn="strong_wolfe")

        def loss() -> torch.Tensor:
            opt.zero_grad()
            logits = self.head.scale * (x @ weight.T) + bias
            pull = ((weight - start) ** 2).sum(1).mean()
            value = torch.nn.functional.cross_entropy(logits, y) + anchor * pull
            value.backward()
            return value

        opt.step(loss)
        with self.lock:
            self.head.set(weight, bias)

    def head_logits(self) -> tuple[np.ndarray[Any, Any], np.ndarray[Any, Any]]:
        """The head as logit weights: ``logits = e @ W.T + b`` for unit-norm ``e``."""
        with self.lock:
            weight = self.head.scale * self.head.weight.detach().numpy()
            return weight.copy(), self.head.bias.detach().numpy().copy()

    def set_head_logits(
        self, weight: np.ndarray[Any, Any], bias: np.ndarray[Any, Any], labels: Sequence[str]
    ) -> None:
        """Serve a head given as logit weights (:meth:`head_logits`) for ``labels``, at
        once; the encoder is untouched."""
        if weight.shape != (len(labels), self.dim) or bias.shape != (len(labels),):
            raise ValueError(f"head of shape {weight.shape} does not fit {len(labels)} labels")
        w = torch.from_numpy(np.asarray(weight, dtype=np.float32) / self.head.scale)
        b = torch.from_numpy(np.asarray(bias, dtype=np.float32))
        with self.lock:
            self.head.set(w, b)
            self.labels = list(labels)

    def head_state(
        self, weight: np.ndarray[Any, Any], bias: np.ndarray[Any, Any]
    ) -> dict[str, torch.Tensor]:
        """The registry's head tensors (:meth:`state`) of a head given as logit weights."""
        return {
            HEAD_WEIGHT: torch.from_numpy(np.asarray(weight, np.float32) / self.head.scale),
            HEAD_BIAS: torch.from_numpy(np.asarray(bias, np.float32)),
        }

    def encoder_key(self) -> str:
        """A digest of the adapter's weights: embeddings computed under one key are valid
        for every version with the same key (a head-only update keeps it)."""
        with self.lock:
            key = self.adapter.digest() if self.adapter is not None else FROZEN_KEY
            layers = self.encoder.pool_layers
            return key if layers == 1 else f"{key}/pool{layers}"

    @property
    def nbytes(self) -> int:
        """Bytes this model holds of its own (the shared encoder not counted)."""
        own = self.head.weight.numel() + self.head.bias.numel()
        return own * 4 + (self.adapter.nbytes if self.adapter is not None else 0)

    def add_labels(self, texts: Sequence[str], labels: Sequence[str]) -> list[str]:
        """Append a row for every label of ``labels`` not known yet, at its examples' centroid.

        Existing rows are untouched, so the logits of known intents do not change.
        """
        new = [lab for lab in dict.fromkeys(labels) if lab not in self.labels]
        if not new:
            return []
        emb = torch.from_numpy(self.embed(list(texts)))
        rows = []
        for lab in new:
            idx = [i for i, y in enumerate(labels) if y == lab]
            rows.append(torch.nn.functional.normalize(emb[idx].mean(0), dim=0))
        with self.lock:
            self.head.append(torch.stack(rows))
            self.labels.extend(new)
        return new

    # --- inference --------------------------------------------------------------------------
    def predict(self, texts: Sequence[str], k: int = 3) -> list[Prediction]:
        return EndModel.predict_many([(self, texts)], k)[0]

    @staticmethod
    @torch.inference_mode()
    def predict_many(
        requests: Sequence[tuple[EndModel, Sequence[str]]], k: int = 3
    ) -> list[list[Prediction]]:
        """Predictions for each ``(model, texts)`` of ``requests``, in one forward pass
        over all their texts (models sharing one encoder), each row through its own
        model's adapter and head: the same answers as each model gives alone."""
        models = list({id(m): m for m, _ in requests}.values())
        for model in models:
            if not model.labels:
                raise RuntimeError(
                    "the model has no intents yet: bootstrap it with labelled examples"
                )
            if model.encoder is not models[0].encoder:
                raise ValueError("models predicted together must share their encoder")
        texts = [t for _, ts in requests for t in ts]
        if not texts:
            return [[] for _ in requests]
        with contextlib.ExitStack() as held:
            for model in models:
                held.enter_context(model.lock)
            adapters = [m.adapter for m, ts in requests for _ in ts]
            emb = models[0].encoder.infer(texts, adapters)
            out = []
            start = 0
            for model, ts in requests:
                rows = emb[start : start + len(ts)]
                start += len(ts)
                labels = list(model.labels)
                probs = torch.softmax(model.head(rows), dim=-1)
                top = torch.topk(probs, min(k, len(labels)), dim=-1)
                out.append(_predictions(labels, models[0].encoder.sentence(rows), top))
        return out

    def logits(self, texts: Sequence[str]) -> torch.Tensor:
        """Raw head logits (with the graph, for training)."""
        return self.head(self.features(texts))

    # --- weights ----------------------------------------------------------------------------
    def trainable_parameters(self) -> list[torch.Tensor]:
        """The adapter's and the head's tensors, for an optimiser: the adapter is first
        replaced by a trainable copy of itself (a fresh one if there is none), so the
        tensors it shared with another model are never changed."""
        with self.lock:
            current = self.adapter or self.encoder.initial_adapter(self.lora)
            self.adapter = current.trainable()
            return [*self.adapter.parameters(), self.head.weight, self.head.bias]

    def state(self) -> dict[str, torch.Tensor]:
        """Everything a version is made of besides the frozen encoder: LoRA weights (under
        peft's names; none while the model has no adapter) and head."""
        with self.lock:
            lora = self.adapter.state() if self.adapter is not None else {}
            tensors = {LORA_PREFIX + k: v for k, v in lora.items()}
            tensors[HEAD_WEIGHT] = self.head.weight.detach().clone()
            tensors[HEAD_BIAS] = self.head.bias.detach().clone()
        return tensors

    def load_state(self, tensors: dict[str, torch.Tensor], labels: Sequence[str]) -> None:
        """Swap in a version's weights; readers see either the old or the new one, never a mix."""
        weight, bias = tensors[HEAD_WEIGHT], tensors[HEAD_BIAS]
        if weight.shape != (len(labels), self.dim) or bias.shape != (len(labels),):
            raise ValueError(
                f"head of shape {tuple(weight.shape)} does not fit {len(labels)} labels "
                f"of a {self.dim}-d encoder"
            )
        lora = {k[len(LORA_PREFIX) :]: v for k, v in tensors.items() if k.startswith(LORA_PREFIX)}
        adapter = None
        if lora:
            scaling = self.lora.alpha / self.lora.r
            adapter = LoraAdapter.from_state(lora, self.encoder.shapes, scaling)
            adapter = None if adapter.is_zero() else adapter  # a fresh adapter: no LoRA work
        with self.lock:
            self.adapter = adapter
            self.head.set(weight, bias)
            self.labels = list(labels)

    def copy_from(self, other: EndModel) -> None:
        """Serve what ``other`` serves (its adapter is shared: adapters are only changed
        through :meth:`trainable_parameters`, on a copy)."""
        with other.lock:
            adapter, labels = other.adapter, list(other.labels)
            weight, bias = other.head.weight.detach().clone(), other.head.bias.detach().clone()
        with self.lock:
            self.adapter = adapter.frozen() if adapter is not None else None
            self.head.set(weight, bias)
            self.labels = labels


def logit_head(
    tensors: dict[str, torch.Tensor],
) -> tuple[np.ndarray[Any, Any], np.ndarray[Any, Any]]:
    """A registry version's head as logit weights (:meth:`EndModel.head_logits`), read
    without loading a model."""
    weight = tensors[HEAD_WEIGHT].float().numpy() * HEAD_SCALE
    return weight, tensors[HEAD_BIAS].float().numpy().copy()


def lora_factors(
    tensors: dict[str, torch.Tensor], lora: LoraOptions
) -> dict[str, tuple[np.ndarray[Any, Any], np.ndarray[Any, Any]]] | None:
    """A registry version's LoRA as ``(A, B * scaling)`` per target module (so the update
    is ``B @ A``), read without loading a model; None for a version without LoRA."""
    a, b = lora_state(tensors)
    scaling = lora.alpha / lora.r
    out = {k: (a[k].float().numpy(), b[k].float().numpy() * scaling) for k in a}
    if all(not f[1].any() for f in out.values()):
        return None  # a fresh adapter (or none): no update
    return out


def lora_state(
    tensors: dict[str, torch.Tensor],
) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
    """The ``A`` and ``B`` tensors stored under :data:`LORA_PREFIX`, by target module; a
    module with one of the two is refused."""
    lora = {k[len(LORA_PREFIX) :]: v for k, v in tensors.items() if k.startswith(LORA_PREFIX)}
    a, b, _ = split_factors(lora)
    if set(a) != set(b):
        raise ValueError(f"LoRA factors that do not pair up: {sorted(set(a) ^ set(b))[:3]}")
    return a, b


def _predictions(labels: list[str], rows: torch.Tensor, top: Any) -> list[Prediction]:
    out = []
    for row in range(len(rows)):
        pairs = [
            (labels[j], float(p)) for p, j in zip(top.values[row], top.indices[row], strict=True)
        ]
        out.append(Prediction(pairs[0][0], pairs[0][1], pairs, rows[row].numpy()))
    return out
