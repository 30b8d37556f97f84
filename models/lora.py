"""Many nodes' LoRA adapters over one frozen encoder, in one forward pass.

A worker serves hundreds of nodes whose end models differ only by a LoRA adapter and a
head, so it holds **one** frozen encoder (:class:`SharedEncoder`, one per process and
model folder) and each node keeps its adapter as plain tensors (:class:`LoraAdapter`,
about 0.3 MB for MiniLM's query and value projections at r=8).

The LoRA term of each target ``Linear`` (``x @ A.T @ B.T * alpha / r``, as peft's
``lora.Linear`` adds it) is added by a forward hook that reads, from a context variable,
which adapter each row of the current forward pass uses. A context variable is per
thread: serving (many adapters, one per row, no gradients) and a node's consolidation
(its working adapter, with gradients) run through the same modules at the same time
without touching each other's state, and nothing in the encoder is ever written after it
is loaded. Rows of one adapter are one matrix product; a batch that mixes adapters
gathers each row's ``A`` and ``B`` and runs two batched products (``bmm``) per layer,
whatever the number of adapters; rows without an adapter (a node that never
consolidated) add nothing.

The tensors are named as peft names them (``get_peft_model_state_dict``), so a registry
version is a peft LoRA state dict: the unit tests load one into a peft model and check
the embeddings agree.

>>> import torch
>>> adapter = LoraAdapter.initial({"q": (4, 3)}, r=2, alpha=4)
>>> adapter.b["q"].abs().sum().item(), adapter.scaling  # B starts at zero: no change yet
(0.0, 2.0)
>>> adapter.is_zero()
True
"""

from __future__ import annotations

import contextlib
import hashlib
import math
import threading
from collections.abc import Iterator, Sequence
from contextvars import ContextVar
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch

from models.compute import autocast, resolve_precision, store_frozen_linears
from models.encoder import encoder_layer_count, load_encoder, mean_pool, resolve_encoder_path
from models.options import LENGTH_BUCKET, POOL_LAYERS, LoraOptions

PEFT_PREFIX = "base_model.model."
A_SUFFIX = ".lora_A.weight"
B_SUFFIX = ".lora_B.weight"


@dataclass(frozen=True)
class LoraAdapter:
    """One node's LoRA weights: per target module, ``A`` of shape (r, in) and ``B`` of
    shape (out, r). Never changed in place except by the trainer, on its own copy
    (:meth:`trainable`)."""

    a: dict[str, torch.Tensor]
    b: dict[str, torch.Tensor]
    scaling: float

    @classmethod
    def initial(
        cls, shapes: dict[str, tuple[int, int]], r: int, alpha: float, seed: int = 0
    ) -> LoraAdapter:
        """peft's LoRA initialisation (``A`` Kaiming-uniform, ``B`` zero), from ``seed``:
        ``shapes`` maps each target module to its (in, out) features."""
        generator = torch.Generator().manual_seed(seed)
        a, b = {}, {}
        for name, (fan_in, fan_out) in shapes.items():
            bound = 1.0 / math.sqrt(fan_in)  # kaiming_uniform_(a=sqrt(5)) on (r, fan_in)
            a[name] = (torch.rand(r, fan_in, generator=generator) * 2 - 1) * bound
            b[name] = torch.zeros(fan_out, r)
        return cls(a, b, alpha / r)

    def is_zero(self) -> bool:
        """Whether the adapter changes nothing (every ``B`` is zero: a fresh adapter)."""
        return all(not bool(t.any()) for t in self.b.values())

    def trainable(self) -> LoraAdapter:
        """A copy whose tensors require gradients (the original is untouched)."""
        a = {k: v.detach().clone().requires_grad_(True) for k, v in self.a.items()}
        b = {k: v.detach().clone().requires_grad_(True) for k, v in self.b.items()}
        return LoraAdapter(a, b, self.scaling)

    def frozen(self) -> LoraAdapter:
        """A detached copy, for serving."""
        a = {k: v.detach().clone() for k, v in self.a.items()}
        b = {k: v.detach().clone() for k, v in self.b.items()}
        return LoraAdapter(a, b, self.scaling)

    def parameters(self) -> list[torch.Tensor]:
        return [t for name in sorted(self.a) for t in (self.a[name], self.b[name])]

    @property
    def nbytes(self) -> int:
        return sum(t.numel() * t.element_size() for t in self.parameters())

    def state(self) -> dict[str, torch.Tensor]:
        """The tensors under peft's names (``get_peft_model_state_dict``)."""
        out = {}
        for name in sorted(self.a):
            out[PEFT_PREFIX + name + A_SUFFIX] = self.a[name].detach().clone()
            out[PEFT_PREFIX + name + B_SUFFIX] = self.b[name].detach().clone()
        return out

    @classmethod
    def from_state(
        cls, tensors: dict[str, torch.Tensor], shapes: dict[str, tuple[int, int]], scaling: float
    ) -> LoraAdapter:
        """The adapter of a peft-named state dict; every target module must be in it, and
        nothing else."""
        a, b, other = split_factors(tensors)
        if other:
            raise ValueError(f"adapter has a tensor this model lacks: {other[0]}")
        a = {k: v.detach().float().clone() for k, v in a.items()}
        b = {k: v.detach().float().clone() for k, v in b.items()}
        unknown = sorted((set(a) | set(b)) - set(shapes))
        missing = sorted(set(shapes) - set(a) - set(b))
        if unknown or missing:
            raise ValueError(
                f"adapter does not fit this encoder: unknown {unknown[:3]}, missing {missing[:3]}"
            )
        return cls(a, b, scaling)

    def digest(self) -> str:
        h = hashlib.sha256()
        for name, tensor in self.state().items():
            h.update(name.encode())
            h.update(tensor.contiguous().numpy().tobytes())
        return h.hexdigest()[:16]


def split_factors(
    tensors: dict[str, torch.Tensor],
) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor], list[str]]:
    """The ``A`` and the ``B`` tensors of a peft-named state dict by target module, and
    the keys that are neither."""
    a, b, other = {}, {}, []
    for key, value in tensors.items():
        name = key.removeprefix(PEFT_PREFIX)
        if name.endswith(A_SUFFIX):
            a[name.removesuffix(A_SUFFIX)] = value
        elif name.endswith(B_SUFFIX):
            b[name.removesuffix(B_SUFFIX)] = value
        else:
            other.append(key)
    return a, b, other


@dataclass(frozen=True)
class _Rows:
    """Which adapter each row of the forward pass under way uses."""

    adapters: list[LoraAdapter]  # the distinct ones
    index: torch.Tensor | None  # row -> position in ``adapters`` (-1: none); None: all of [0]

    def delta(self, name: str, x: torch.Tensor) -> torch.Tensor:
        if self.index is None:
            only = self.adapters[0]
            return (x @ only.a[name].T) @ only.b[name].T * only.scaling
        first = self.adapters[0]
        r, fan_in = first.a[name].shape
        fan_out = first.b[name].shape[0]
        # slot 0 is zeros, for rows without an adapter
        a = torch.cat(
            [x.new_zeros(1, r, fan_in, dtype=torch.float32)]
            + [ad.a[name].unsqueeze(0) * ad.scaling for ad in self.adapters]
        )
        b = torch.cat(
            [x.new_zeros(1, fan_out, r, dtype=torch.float32)]
            + [ad.b[name].unsqueeze(0) for ad in self.adapters]
        )
        slots = self.index + 1
        return torch.bmm(torch.bmm(x, a[slots].transpose(1, 2)), b[slots].transpose(1, 2))


_ROWS: ContextVar[_Rows | None] = ContextVar("lora_rows", default=None)


@contextlib.contextmanager
def _rows(adapters: Sequence[LoraAdapter | None]) -> Iterator[None]:
    """Rows ``i`` of the forward passes in this block use ``adapters[i]`` (or, if one
    adapter is given, all rows use it)."""
    distinct: list[LoraAdapter] = []
    positions: dict[int, int] = {}
    index = []
    for adapter in adapters:
        if adapter is None:
            index.append(-1)
            continue
        slot = positions.setdefault(id(adapter), len(distinct))
        if slot == len(distinct):
            distinct.append(adapter)
        index.append(slot)
    if not distinct:
        rows = None
    elif len(adapters) == 1 or all(i == 0 for i in index):
        rows = _Rows(distinct, None)
    else:
        rows = _Rows(distinct, torch.tensor(index))
    token = _ROWS.set(rows)
    try:
        yield
    finally:
        _ROWS.reset(token)


class SharedEncoder:
    """The frozen encoder (and tokenizer) every end model of this process shares, with a
    LoRA hook on each target module; :meth:`shared` gives one per model folder and
    settings."""

    _instances: ClassVar[dict[tuple[str, int, str, tuple[str, ...], int], SharedEncoder]] = {}
    _instances_lock: ClassVar[threading.Lock] = threading.Lock()

    def __init__(
        self,
        path: str | Path | None,
        max_length: int,
        precision: str,
        targets: Sequence[str],
        pool_layers: int = POOL_LAYERS,
    ) -> None:
        if pool_layers < 1:
            raise ValueError(f"pool_layers must be 1 or more, not {pool_layers}")
        self.path = resolve_encoder_path(path)
        self.tokenizer, self.model = load_encoder(self.path)
        self.model.requires_grad_(False)
        self.max_length = max_length
        self.pool_layers = min(pool_layers, int(self.model.config.num_hidden_layers))
        self.precision = resolve_precision(precision)
        self._autocast = autocast(self.precision)
        self.shapes: dict[str, tuple[int, int]] = {}
        for name, module in self.model.named_modules():
            if isinstance(module, torch.nn.Linear) and name.split(".")[-1] in targets:
                self.shapes[name] = (module.in_features, module.out_features)
                module.register_forward_hook(_lora_hook(name))
        if not self.shapes:
            raise ValueError(f"no Linear module of {self.path} is named any of {list(targets)}")
        store_frozen_linears(self.model, self.precision)

    @classmethod
    def shared(
        cls,
        path: str | Path | None,
        max_length: int,
        precision: str,
        targets: Sequence[str],
        pool_layers: int = POOL_LAYERS,
    ) -> SharedEncoder:
        folder = resolve_encoder_path(path)
        # keyed by what the settings mean, so "auto" and the dtype it resolves to, or more
        # pooled layers than the model has, share one encoder
        layers = min(pool_layers, encoder_layer_count(folder))
        dtype = str(resolve_precision(precision))
        key = (str(folder), max_length, dtype, tuple(targets), layers)
        with cls._instances_lock:
            if key not in cls._instances:
                cls._instances[key] = cls(path, max_length, precision, targets, pool_layers)
            return cls._instances[key]

    @property
    def hidden(self) -> int:
        """Width of one layer's output (the sentence embedding's)."""
        return int(self.model.config.hidden_size)

    @property
    def dim(self) -> int:
        """Width of the features the head reads (:data:`~models.options.POOL_LAYERS`)."""
        return self.hidden * self.pool_layers

    def sentence(self, features: torch.Tensor) -> torch.Tensor:
        """The unit-norm sentence embedding (the last layer's, mean-pooled) inside
        ``features``: their last block, which the scaling made ``1/sqrt(n)`` long."""
        return features[:, -self.hidden :] * math.sqrt(self.pool_layers)

    @property
    def nbytes(self) -> int:
        return sum(t.numel() * t.element_size() for t in self.model.state_dict().values())

    def initial_adapter(self, lora: LoraOptions) -> LoraAdapter:
        return LoraAdapter.initial(self.shapes, lora.r, lora.alpha)

    def features(
        self, texts: Sequence[str], adapters: Sequence[LoraAdapter | None]
    ) -> torch.Tensor:
        """Unit-norm float32 features of ``texts`` (:data:`~models.options.POOL_LAYERS`),
        row ``i`` through ``adapters[i]`` (one adapter: all rows); the graph is kept
        (training)."""
        _check_rows(texts, adapters)
        enc: Any = self.tokenizer(
            list(texts),
            padding=True,
            truncation=True,
            max_length=self.max_length,
            return_tensors="pt",
        )
        mask = enc["attention_mask"]
        with _rows(adapters), self._autocast():
            out = self.model(**enc, output_hidden_states=self.pool_layers > 1)
        if self.pool_layers == 1:
            return mean_pool(out.last_hidden_state.float(), mask)
        layers = out.hidden_states
        pooled = [mean_pool(h.float(), mask) for h in layers[-self.pool_layers :]]
        return torch.cat(pooled, dim=-1) / math.sqrt(self.pool_layers)

    @torch.inference_mode()
    def infer(self, texts: Sequence[str], adapters: Sequence[LoraAdapter | None]) -> torch.Tensor:
        """:meth:`features` for inference, in buckets of
        :data:`~models.options.LENGTH_BUCKET` utterances of similar length (so a short
        turn is not padded to the longest of its micro-batch), in the order asked."""
        _check_rows(texts, adapters)
        every = list(adapters) if len(adapters) == len(texts) else [adapters[0]] * len(texts)
        order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
        out = torch.empty(len(texts), self.dim)
        for start in range(0, len(order), LENGTH_BUCKET):
            rows = order[start : start + LENGTH_BUCKET]
            out[rows] = self.features([texts[i] for i in rows], [every[i] for i in rows])
        return out

    def embed(self, texts: Sequence[str]) -> np.ndarray[Any, Any]:
        """Embeddings of the frozen encoder alone."""
        return self.infer(texts, [None]).numpy() if texts else np.zeros((0, self.dim), np.float32)


def _check_rows(texts: Sequence[str], adapters: Sequence[LoraAdapter | None]) -> None:
    if len(adapters) not in (1, len(texts)):
        raise ValueError(f"{len(adapters)} adapters for {len(texts)} texts: give one, or one each")


def _lora_hook(name: str) -> Any:
    def hook(
        module: torch.nn.Module, inputs: tuple[torch.Tensor, ...], output: torch.Tensor
    ) -> Any:
        rows = _ROWS.get()
        if rows is None:
            return None
        return output + rows.delta(name, inputs[0]).to(output.dtype)

    return hook
