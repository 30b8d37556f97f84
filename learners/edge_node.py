"""One edge node's model lifecycle: serve, learn from every batch at once, gate, publish.

Two speeds (the End-Cloud idea applied to one node):

- **Fast path**, on every training batch: the batch's examples are embedded once under the
  serving encoder and kept, with their embeddings, in the node's bounded, class-balanced
  :class:`~learners.memory.ExampleMemory` (seeds included). The head is then refitted on
  the whole memory (a regularised multinomial logistic regression, warm-started:
  :mod:`learners.head_fit`), so a label changes what the node serves as soon as its batch
  is learnt, and a new intent is servable at once. Nothing but the head changes, so the
  gate scores both heads on cached held-out embeddings: no forward pass at all.
- **Slow path**, every ``consolidate_every`` new labels (0: never): LoRA on a working copy
  of the encoder (:class:`~learners.trainer.IncrementalTrainer`, steps drawn from the
  memory) in a thread of its own (:class:`Consolidation`), then the memory is embedded
  again under the new encoder and the head refitted on it. Serving and the fast path go on
  meanwhile; the memory learnt while it ran is embedded under the new encoder at the end.

Either candidate is gated (:class:`~learners.gate.EvalGate`) against the serving version and
the node's first version, on held-out examples that were never trained on. Only an accepted
candidate is written to the registry and swapped into ``serving`` under the model's lock, so
a request sees the old or the new version, never a mix. A rejected candidate's labels stay
in the memory (they are true; the next refit learns them with newer ones). Batch ids
already applied are remembered on disk, so a batch delivered again is skipped.

A node that only serves holds its end model alone (adapter, head and labels, over the
encoder every node of the process shares): its memory, held-out set and first head are
read from its files when it first learns, and :meth:`EdgeNode.release_learning_state`
lets them go again (everything is on disk after every update), so a worker can hold many
serving nodes and keep the memories of the few that learn.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import time
from collections import Counter, deque
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np

from learners.fleet.aggregator import COUNTS
from learners.fleet.prior import FleetPrior
from learners.gate import Scores
from learners.head_fit import fit_softmax, row_layer_prior
from learners.holdout import HoldoutRouter
from learners.memory import ExampleMemory
from learners.options import EdgeOptions
from learners.trainer import IncrementalTrainer, TrainingGuardError, TrainReport
from models.end_model import EndModel, Prediction
from models.registry import AdapterRegistry

Array = np.ndarray[Any, Any]
MEMORY_FILE = "memory.npz"
HOLDOUT_FILE = "holdout.npz"
FIRST_HEAD_FILE = "first_head.npz"
GATE_HEAD_FILE = "gate_head.npz"
LEGACY_EXAMPLES = "examples.jsonl"
EMBED_CHUNK = 512  # examples a consolidation embeds between two looks at its stop signal
BORROWED_MOVE = 0.05  # a borrowed row is brought up to date once the fleet's moved this much


class NodeNotBootstrappedError(LookupError):
    """The registry has no version for this node: run `ecc node init` (the demo does)."""


@dataclass(frozen=True)
class LabelledText:
    example_id: str
    text: str
    label: str


@dataclass(frozen=True)
class BatchOutcome:
    status: Literal["published", "rejected", "skipped"]
    version: int
    candidate: int | None
    parent: int | None
    reason: str
    labels_added: list[str]
    metrics: dict[str, float]
    served_at: float | None = None
    """``time.perf_counter()`` when a published version's labels began to change the
    answers: a head-only version's gate-accepted head answers before its held-out refit is
    fitted and published (what is written to disk does not hold the labels up)."""


@dataclass(frozen=True)
class _Head:
    """A head as logit weights over unit-norm embeddings, with its labels (and the key of
    the encoder it was fitted under, where that matters)."""

    weight: Array
    bias: Array
    labels: list[str]
    key: str = ""

    def predict(self, vectors: Array) -> list[str]:
        if not len(vectors):
            return []
        index = (np.asarray(vectors, np.float32) @ self.weight.T + self.bias).argmax(1)
        return [self.labels[i] for i in index]


@dataclass
class Consolidation:
    """A LoRA consolidation under way: the working copy of the encoder and the memory and
    held-out texts as they were when it began.

    :meth:`run` trains the copy and embeds those texts under it; it touches nothing of the
    node, so it runs in a thread of its own while the node serves and its fast path goes
    on learning. Then :meth:`EdgeNode.finish_consolidation` gates it.
    """

    model: EndModel
    trainer: IncrementalTrainer
    parent: int
    ids: list[str]
    texts: list[str]
    labels: list[str]
    held_ids: list[str]
    held_texts: list[str]
    report: TrainReport | None = None
    error: str = ""
    seconds: float = 0.0
    _vectors: dict[str, Array] = field(default_factory=dict)

    def run(self, stop: Callable[[], bool] = lambda: False) -> None:
        """Train, then embed; ``stop()`` turning true (the worker is stopping) abandons it
        within a training step or an embedding chunk."""
        started = time.perf_counter()
        try:
            self.report = self.trainer.train(self.texts, self.labels, stop)
        except TrainingGuardError as exc:
            self.error = str(exc)
            return
        ids, texts = [*self.ids, *self.held_ids], [*self.texts, *self.held_texts]
        for i in range(0, len(texts), EMBED_CHUNK):
            if stop():
                self.error = "abandoned: the worker is stopping"
                return
            chunk = self.model.embed(texts[i : i + EMBED_CHUNK], locked=False)
            self._vectors.update(zip(ids[i : i + EMBED_CHUNK], chunk, strict=True))
        self.seconds = time.perf_counter() - started

    def embed(self, ids: Sequence[str], texts: Sequence[str]) -> Array:
        """Embeddings of these examples under the consolidated encoder: those it began with
        are cached, the rest (learnt since) are computed now."""
        missing = [i for i, x in enumerate(ids) if x not in self._vectors]
        fresh = self.model.embed([texts[i] for i in missing], locked=False)
        self._vectors.update({ids[i]: v for i, v in zip(missing, fresh, strict=True)})
        if not ids:
            return np.zeros((0, self.model.dim), np.float32)
        return np.stack([self._vectors[x] for x in ids])


class EdgeNode:
    def __init__(
        self, node_id: str, registry: AdapterRegistry, state_dir: Path, options: EdgeOptions
    ) -> None:
        self.node_id = node_id
        self.registry = registry
        self.options = options
        self.dir = Path(state_dir) / "nodes" / node_id
        self.dir.mkdir(parents=True, exist_ok=True)
        current = registry.current(node_id)
        if current is None:
            raise NodeNotBootstrappedError(
                f"node {node_id!r} has no adapter version in {registry.root}: "
                f"bootstrap it with `ecc node init {node_id} --data FILE`"
            )
        self.serving = new_end_model(options)
        meta, tensors = registry.load(node_id, current.version)
        self.serving.load_state(tensors, meta.labels)
        self.version = meta.version
        self.encoder_version = int(meta.extra.get("encoder_version", meta.version))
        self.router = HoldoutRouter(options.holdout_every)
        self.applied: set[str] = set()
        self.swap_seconds: deque[float] = deque(maxlen=1000)
        self.refit_seconds: deque[float] = deque(maxlen=1000)
        self.labels_since_consolidation = 0
        self._working: EndModel | None = None
        self._consolidating = False
        self._pins = 0
        self._memory: ExampleMemory | None = None
        self._holdout: ExampleMemory | None = None
        self._first: _Head | None = None
        self._gate_head: tuple[int, _Head] | None = None
        log = self.dir / "batches.log"
        if log.exists():
            self.applied = {b for b in log.read_text().split() if b}

    # --- construction -----------------------------------------------------------------------
    @classmethod
    def bootstrap(
        cls,
        node_id: str,
        registry: AdapterRegistry,
        state_dir: Path,
        texts: Sequence[str],
        labels: Sequence[str],
        options: EdgeOptions = EdgeOptions(),
        vectors: Array | None = None,
        prior: FleetPrior | None = None,
    ) -> int:
        """Create a node's first version: the fast path's head fitted to the seeds
        (``vectors``: their embeddings under the frozen encoder, if already computed).

        With a fleet ``prior`` the head also serves the fleet's intents the seeds lack
        (their rows as the prior has them, fixed while the seeds' rows are fitted beside
        them), and the seeds' intents start from the prior's rows."""
        model = new_end_model(options)
        vectors = model.embed(list(texts)) if vectors is None else vectors
        order = list(dict.fromkeys(labels))
        warm = None
        if prior is not None:
            order += [y for y in prior.labels if y not in order]
            known = [y for y in order if y in prior.labels]
            weight0, bias0 = np.zeros((len(order), model.dim), np.float32), np.zeros(len(order))
            rows = [order.index(y) for y in known]
            weight0[rows], bias0[rows] = prior.rows(known)
            warm = (weight0, bias0.astype(np.float32))
            # each row held near the prior's as firmly as the fleet's examples behind it
            strength = np.array([1.0 + prior.counts.get(y, 0) for y in order])
        center = strength if warm else None
        weight, bias = _fit(vectors, labels, order, options, warm, center, layers=model.pool_layers)
        model.set_head_logits(weight, bias, order)
        per_label = Counter(labels)
        seeds = {y: per_label[y] for y in order}
        extra: dict[str, Any] = {"reason": "bootstrap", COUNTS: seeds}
        if prior is not None:
            extra.update(
                reason=f"bootstrap from fleet prior v{prior.version}", fleet_prior=prior.version
            )
        version = registry.publish(
            node_id,
            model.state(),
            labels=model.labels,
            base_model=model.base_model_name,
            parent=None,
            metrics={"seed_examples": float(len(texts))},
            extra=extra,
        )
        node_dir = Path(state_dir) / "nodes" / node_id
        node_dir.mkdir(parents=True, exist_ok=True)
        memory = ExampleMemory(options.memory_per_class, model.dim, model.encoder_key())
        ids = [f"seed:{i}" for i in range(len(texts))]
        memory.add(ids, texts, labels, vectors)
        memory.save(node_dir / MEMORY_FILE)
        ExampleMemory(options.holdout_per_class, model.dim, memory.key).save(
            node_dir / HOLDOUT_FILE
        )
        np.savez(
            node_dir / FIRST_HEAD_FILE,
            weight=weight,
            bias=bias,
            labels=np.array(order),
            key=np.array(memory.key),
        )
        (node_dir / "batches.log").write_text("")
        return version.version

    # --- the learning state, read when the node first learns ---------------------------------
    @property
    def memory(self) -> ExampleMemory:
        if self._memory is None:
            self._load_learning_state()
        assert self._memory is not None
        return self._memory

    @property
    def holdout(self) -> ExampleMemory:
        if self._holdout is None:
            self._load_learning_state()
        assert self._holdout is not None
        return self._holdout

    @property
    def first(self) -> _Head | None:
        if self._memory is None:
            self._load_learning_state()
        return self._first

    @property
    def learning_state_loaded(self) -> bool:
        return self._memory is not None

    @property
    def busy(self) -> bool:
        """Whether a consolidation or a pinned piece of work is under way: the node must
        stay resident (a second copy of it loaded meanwhile could miss what it writes)."""
        return self._consolidating or self._pins > 0

    @contextlib.contextmanager
    def pinned(self) -> Iterator[None]:
        """Keep the node :attr:`busy` for the block (a learning job from scheduling to end)."""
        self._pins += 1
        try:
            yield
        finally:
            self._pins -= 1

    def release_learning_state(self) -> bool:
        """Let the memory, held-out set and first head go (they are on disk); they are read
        again when the node next learns. Not during a consolidation: returns False."""
        if self._consolidating:
            return False
        self._memory = self._holdout = self._first = self._gate_head = None
        self._working = None
        return True

    @property
    def nbytes(self) -> int:
        """Bytes this node holds of its own (the shared encoder not counted)."""
        own = self.serving.nbytes + (self._working.nbytes if self._working else 0)
        for memory in (self._memory, self._holdout):
            own += memory.nbytes if memory is not None else 0
        for head in (self._first, self._gate_head[1] if self._gate_head else None):
            own += head.weight.nbytes + head.bias.nbytes if head is not None else 0
        return own

    def _load_learning_state(self) -> None:
        """Memory, held-out set and first head from the node's files."""
        dim = self.serving.dim
        self._memory = ExampleMemory(self.options.memory_per_class, dim)
        self._holdout = ExampleMemory(self.options.holdout_per_class, dim)
        if (self.dir / MEMORY_FILE).exists():
            self._memory = ExampleMemory.load(self.dir / MEMORY_FILE, self.options.memory_per_class)
        elif (self.dir / LEGACY_EXAMPLES).exists():
            self._migrate(self.dir / LEGACY_EXAMPLES)
        if (self.dir / HOLDOUT_FILE).exists():
            self._holdout = ExampleMemory.load(
                self.dir / HOLDOUT_FILE, self.options.holdout_per_class
            )
        key = self.serving.encoder_key()
        stale = [m for m in (self._memory, self._holdout) if m.key != key]
        for memory in stale:  # another encoder's embeddings (a rollback, an old node)
            self._reembed(memory, self.serving, key)
        if stale:
            self._save_memory()
        first = self.dir / FIRST_HEAD_FILE
        if first.exists():
            with np.load(first, allow_pickle=False) as f:
                self._first = _Head(f["weight"], f["bias"], f["labels"].tolist(), str(f["key"]))
        gate = self.dir / GATE_HEAD_FILE
        if gate.exists():
            with np.load(gate, allow_pickle=False) as f:
                head = _Head(f["weight"], f["bias"], f["labels"].tolist(), str(f["key"]))
                self._gate_head = (int(f["version"]), head)

    def _migrate(self, legacy: Path) -> None:
        """A node written before the memory existed: its examples.jsonl, read once."""
        rows = [json.loads(line) for line in legacy.read_text().splitlines() if line.strip()]
        assert self._memory is not None and self._holdout is not None
        for flag, memory in ((False, self._memory), (True, self._holdout)):
            mine = [r for r in rows if bool(r["holdout"]) == flag]
            ids = [f"legacy:{int(flag)}:{i}" for i in range(len(mine))]
            texts, labels = [r["text"] for r in mine], [r["label"] for r in mine]
            memory.add(ids, texts, labels, np.zeros((len(mine), self.serving.dim), np.float32))
            memory.key = ""  # embedded below
        self._save_memory()

    @staticmethod
    def _reembed(memory: ExampleMemory, model: EndModel, key: str) -> None:
        _, texts, _ = memory.examples()
        memory.set_vectors(model.embed(texts, locked=False), key)

    # --- serving ------------------------------------------------------------------------------
    def predict(self, texts: Sequence[str], k: int = 3) -> tuple[list[Prediction], int]:
        """Predictions and the version that made them (read under the same lock)."""
        predictions, version, _ = self.predict_versions(texts, k)
        return predictions, version

    def predict_versions(
        self, texts: Sequence[str], k: int = 3
    ) -> tuple[list[Prediction], int, int]:
        """Predictions, the version that made them and the version whose encoder computed
        their embeddings (head-only versions keep their parent's)."""
        return EdgeNode.predict_many([(self, texts)], k)[0]

    @staticmethod
    def predict_many(
        requests: Sequence[tuple[EdgeNode, Sequence[str]]], k: int = 3
    ) -> list[tuple[list[Prediction], int, int]]:
        """:meth:`predict_versions` of each ``(node, texts)``, in one forward pass over
        every node's texts (each row through its node's adapter and head)."""
        with contextlib.ExitStack() as held:
            for node in {id(n): n for n, _ in requests}.values():
                held.enter_context(node.serving.lock)
            answers = EndModel.predict_many([(n.serving, texts) for n, texts in requests], k)
            return [
                (preds, node.version, node.encoder_version)
                for (node, _), preds in zip(requests, answers, strict=True)
            ]

    # --- learning: the fast path --------------------------------------------------------------
    def apply_batch(self, batch_id: str, examples: Sequence[LabelledText]) -> BatchOutcome:
        return self.apply_batches([(batch_id, examples)])

    def apply_batches(self, batches: Sequence[tuple[str, Sequence[LabelledText]]]) -> BatchOutcome:
        """Learn one or more batches as one update: into the memory, then a head refit.

        Batches applied before are skipped; the result is one candidate version, gated,
        published or rejected as a whole. The caller runs :meth:`consolidate` when
        :meth:`consolidation_due` says so.
        """
        fresh = [(b, ex) for b, ex in batches if b not in self.applied]
        if not fresh:
            again = ", ".join(b for b, _ in batches)
            return self._outcome("skipped", None, f"batch {again} was applied before", [], {})
        ids = [b for b, _ in fresh]
        examples = [e for _, ex in fresh for e in ex]
        new = [y for y in dict.fromkeys(e.label for e in examples) if y not in self.serving.labels]
        known_to_memory = set(self.memory.labels())
        implausible = [y for y in new if y not in known_to_memory]
        if len(implausible) > self.options.train.max_new_intents:
            self._remember(ids)
            return self._outcome(
                "rejected",
                None,
                f"the batch brings {len(implausible)} new intents at once (at most "
                f"{self.options.train.max_new_intents} per update): an implausible label "
                "distribution, not applied",
                [],
                {},
            )
        vectors = self.serving.embed([e.text for e in examples], locked=False)
        held = [i for i, e in enumerate(examples) if self.router.is_holdout(e.example_id)]
        train = [i for i, e in enumerate(examples) if not self.router.is_holdout(e.example_id)]
        # what the held-out set cannot keep is trained on: no label is wasted
        spare = self.holdout.add(*_columns(examples, held, vectors, self.serving.dim))
        ids_, texts, labels, rows = _columns(examples, train, vectors, self.serving.dim)
        self.memory.add(
            [*ids_, *(k.example_id for k in spare)],
            [*texts, *(k.text for k in spare)],
            [*labels, *(k.label for k in spare)],
            np.concatenate([rows, np.array([k.vector for k in spare]).reshape(-1, rows.shape[1])]),
        )
        if not train and not spare:
            self._save_memory(memory=False)
            self._remember(ids)
            return self._outcome("skipped", None, "every example went to the held-out set", [], {})
        self.labels_since_consolidation += len(train) + len(spare)
        started = time.perf_counter()
        try:
            vectors = self.memory.vectors()
            candidate = self._refit(vectors, self._gated_serving_head())
        except TrainingGuardError as exc:
            outcome = self._outcome("rejected", None, str(exc), [], {})
        else:
            self.refit_seconds.append(time.perf_counter() - started)
            extra = {"refit_seconds": self.refit_seconds[-1]}
            outcome = self._decide(candidate, None, ids, extra, vectors)
        self._save_memory(holdout=bool(held))
        self._remember(ids)
        return outcome

    def consolidation_due(self) -> bool:
        """Whether ``consolidate_every`` new labels have gathered since the last LoRA
        consolidation (never, with ``consolidate_every`` 0)."""
        every = self.options.consolidate_every
        return bool(every) and self.labels_since_consolidation >= every

    def _refit(self, vectors: Array, warm: EndModel | _Head) -> _Head:
        """The head refitted on the whole memory (``vectors``: its embeddings under the
        encoder the head will serve with), warm-started from ``warm``'s head; a row
        without an example here was borrowed from the fleet, and :func:`_fit` keeps it."""
        if isinstance(warm, EndModel):
            warm = _Head(*warm.head_logits(), list(warm.labels))
        _, _, labels = self.memory.examples()
        order = list(warm.labels) + [y for y in self.memory.labels() if y not in warm.labels]
        layers = self.serving.pool_layers
        weight, bias = _fit(
            vectors, labels, order, self.options, (warm.weight, warm.bias), layers=layers
        )
        if not (np.isfinite(weight).all() and np.isfinite(bias).all()):
            raise TrainingGuardError("the head's weights became NaN or infinite: not applied")
        return _Head(weight, bias, order)

    def _with_holdout(
        self, head: _Head, memory_vectors: Array, holdout_vectors: Array, warm: _Head | None
    ) -> _Head:
        """``head`` refitted on the memory and the held-out set together (``head`` itself
        if there is nothing held out or the fit fails). Warm-started from ``warm`` (the
        head served before, when it serves the same encoder) where it has the row: that is
        this objective's optimum of one batch ago, while ``head`` is the memory-only one's
        (starting from it, each refit would jump between the two optima: 6 s a batch
        instead of a fraction)."""
        _, _, held = self.holdout.examples()
        if not held:
            return head
        _, _, labels = self.memory.examples()
        weight, bias = head.weight.copy(), head.bias.copy()
        if warm is not None:
            served = {y: i for i, y in enumerate(warm.labels)}
            for i, y in enumerate(head.labels):
                if y in served:
                    weight[i], bias[i] = warm.weight[served[y]], warm.bias[served[y]]
        vectors = np.concatenate([memory_vectors, holdout_vectors])
        layers = self.serving.pool_layers
        weight, bias = _fit(
            vectors, [*labels, *held], head.labels, self.options, (weight, bias), layers=layers
        )
        if not (np.isfinite(weight).all() and np.isfinite(bias).all()):
            return head
        return _Head(weight, bias, head.labels)

    def _gated_serving_head(self) -> _Head:
        """What the gate compares a candidate against: the serving version's memory-only
        head, if this node made it; else (a bootstrap, a rollback, another worker's
        version) the head the version serves."""
        if self._memory is None:
            self._load_learning_state()
        if self._gate_head is not None and self._gate_head[0] == self.version:
            return self._gate_head[1]
        return _Head(*self.serving.head_logits(), list(self.serving.labels))

    def _keep_gate_head(self, version: int, head: _Head, key: str) -> None:
        self._gate_head = (version, head)
        np.savez(
            self.dir / GATE_HEAD_FILE,
            weight=head.weight,
            bias=head.bias,
            labels=np.array(head.labels),
            key=np.array(key),
            version=np.array(version),
        )

    def _decide(
        self,
        head: _Head,
        encoder: EndModel | None,
        batch_ids: list[str],
        extra: dict[str, float],
        memory_vectors: Array,
        holdout_vectors: Array | None = None,
        more: dict[str, Any] | None = None,
    ) -> BatchOutcome:
        """Gate ``head`` (served by ``encoder``, or by the serving encoder when None) and
        publish it if accepted. ``memory_vectors`` and ``holdout_vectors``: the memory
        and the held-out set under ``encoder`` (held-out None: the cached ones); ``more``:
        manifest entries beside the usual ones.

        The gate compares heads fitted on the memory alone, so the held-out examples
        judge them fairly; what is published and served is the accepted head refitted on
        the held-out examples too (:meth:`_with_holdout`), since every label helps the
        node's answers (BANKING77: keeping 20 per intent out of the served head cost
        0.6-1 point). The memory-only head is kept beside the version
        (``gate_head.npz``) as what the next candidate is compared against. A head-only
        candidate answers as soon as the gate accepts it, under the serving version's
        number, until the refit is published (one fit, about half a second); if the refit
        or the publication fails, the serving version's head answers again."""
        _, _, truth = self.holdout.examples()
        serving_vectors = self.holdout.vectors()
        before = _scores(truth, self._gated_serving_head().predict(serving_vectors))
        after = _scores(
            truth, head.predict(serving_vectors if holdout_vectors is None else holdout_vectors)
        )
        first = None
        if self.first is not None and self.first.key == self.holdout.key:
            # the held-out embeddings are the first version's encoder's: its head scores them
            first = _scores(truth, self.first.predict(serving_vectors))
        decision = self.options.gate.decide(before, after, first)
        added = [y for y in head.labels if y not in self.serving.labels]
        metrics = {
            "holdout_accuracy": after.accuracy,
            "holdout_accuracy_before": before.accuracy,
            "holdout_size": float(len(truth)),
            "memory_size": float(len(self.memory)),
            "batches": float(len(batch_ids)),
            **extra,
        }
        if not decision.accept:
            return self._outcome("rejected", None, decision.reason, added, metrics)
        model = encoder or self.serving
        served_at = None
        warm = None
        if encoder is None:
            # The accepted head answers at once, while the held-out refit runs: the labels
            # change answers one fit sooner (BANKING77: 1.52 s -> 0.30 s p50). Until the
            # refit is published the answers keep the serving version's number.
            warm = _Head(*self.serving.head_logits(), list(self.serving.labels))
            self.serving.set_head_logits(head.weight, head.bias, head.labels)
            served_at = time.perf_counter()
        try:
            served = self._with_holdout(
                head,
                memory_vectors,
                serving_vectors if holdout_vectors is None else holdout_vectors,
                warm,
            )
            state = model.state()
            state.update(model.head_state(served.weight, served.bias))
            parent = self.version
            # a head-only version names the version whose encoder it shares (none: its own)
            shared = {"encoder_version": self.encoder_version} if encoder is None else {}
            published = self.registry.publish(
                self.node_id,
                state,
                labels=head.labels,
                base_model=model.base_model_name,
                parent=parent,
                metrics={k: v for k, v in metrics.items() if v == v},
                extra={
                    "batch_ids": batch_ids,
                    "labels_added": added,
                    COUNTS: {y: self.memory.seen(y) for y in head.labels},
                    **shared,
                    **(more or {}),
                },
            )
        except BaseException:
            if warm is not None:  # nothing was published: back to what the version serves
                self.serving.set_head_logits(warm.weight, warm.bias, warm.labels)
            raise
        paused = time.perf_counter()
        if encoder is None:
            self.serving.set_head_logits(served.weight, served.bias, head.labels)
            with self.serving.lock:
                self.version = published.version
        else:
            with self.serving.lock:  # the swap: between two requests, never during one
                self.serving.load_state(state, head.labels)
                self.version = published.version
                self.encoder_version = published.version
        swapped = time.perf_counter()
        self.swap_seconds.append(swapped - paused)
        self._keep_gate_head(published.version, head, model.encoder_key())
        return BatchOutcome(
            "published",
            published.version,
            published.version,
            parent,
            decision.reason,
            added,
            metrics,
            swapped if served_at is None else served_at,
        )

    # --- learning: from the fleet --------------------------------------------------------------
    def adopt(self, prior: FleetPrior) -> BatchOutcome:
        """A fleet prior as a candidate: the serving head with the prior's rows of the
        intents this node has no example of (new ones appended, borrowed ones brought up
        to date), gated like any update (the held-out set has none of those intents, so
        the gate guards what the node already answers).

        The node's own rows are refitted on its memory beside the borrowed ones (which
        stay as they came), so where a borrowed intent reaches into what the node's own
        examples show, its own rows take that back. Its own intents keep their own rows:
        its own labels say more about its own traffic than the fleet's average. A borrowed
        row follows the fleet's until the node's own labels of that intent arrive; its
        refits then start from it.
        """
        if self.node_id in prior.contributors and len(prior.contributors) == 1:
            return self._outcome(
                "skipped", None, f"fleet prior v{prior.version} is this node's own", [], {}
            )
        if prior.weight.shape[1] != self.serving.dim:
            return self._outcome(
                "rejected",
                None,
                f"fleet prior v{prior.version} is over {prior.weight.shape[1]}-d embeddings, "
                f"this node's encoder gives {self.serving.dim}-d ones",
                [],
                {},
            )
        labels = list(self.serving.labels)
        own = {i for i, y in enumerate(labels) if self.memory.count(y) > 0}
        new = [y for y in prior.labels if y not in labels]
        weight, bias = self.serving.head_logits()
        # a softmax head is unchanged by a shift of its biases: the prior's are centred,
        # so they are moved to the centre of this node's own rows
        shift = float(bias[sorted(own)].mean()) if own else 0.0
        stale = [
            i
            for i, y in enumerate(labels)
            if i not in own and y in prior.labels and _moved(weight[i], prior.rows([y])[0][0])
        ]
        if not new and not stale:
            return self._outcome(
                "skipped",
                None,
                f"fleet prior v{prior.version} brings nothing this node lacks",
                [],
                {},
            )
        weight, bias = weight.copy(), bias.copy()
        if stale:
            weight[stale], fresh = prior.rows([labels[i] for i in stale])
            bias[stale] = fresh + shift
        rows, biases = prior.rows(new)
        borrowed = _Head(
            np.concatenate([weight, rows]).astype(np.float32),
            np.concatenate([bias, biases + shift]).astype(np.float32),
            [*labels, *new],
        )
        started = time.perf_counter()
        try:  # the node's own rows refitted beside the borrowed ones (which stay as they came)
            vectors = self.memory.vectors()
            head = self._refit(vectors, borrowed)
        except TrainingGuardError as exc:
            return self._outcome("rejected", None, f"fleet prior v{prior.version}: {exc}", [], {})
        extra = {
            "fleet_prior": float(prior.version),
            "borrowed_intents": float(len(new) + len(stale)),
            "refit_seconds": time.perf_counter() - started,
        }
        outcome = self._decide(head, None, [], extra, vectors, more={"fleet_prior": prior.version})
        reason = f"fleet prior v{prior.version} ({len(prior.contributors)} nodes): {outcome.reason}"
        return dataclasses.replace(outcome, reason=reason)

    # --- learning: the slow path --------------------------------------------------------------
    def begin_consolidation(self) -> Consolidation | None:
        """A LoRA consolidation from the serving version, to :meth:`Consolidation.run` in
        a thread of its own and then :meth:`finish_consolidation`; None while one is
        already under way. Call it from the thread that applies batches."""
        if self._consolidating:
            return None
        self._consolidating = True
        self.labels_since_consolidation = 0
        working = self._working_model()
        working.copy_from(self.serving)
        ids, texts, labels = self.memory.examples()
        held_ids, held_texts, _ = self.holdout.examples()
        return Consolidation(
            working,
            IncrementalTrainer(working, self.options.train),
            self.version,
            ids,
            texts,
            labels,
            held_ids,
            held_texts,
        )

    def finish_consolidation(self, job: Consolidation) -> BatchOutcome:
        """Gate the consolidated encoder with a head refitted on the whole memory as it is
        now (examples learnt while it trained are embedded under it here), and publish it
        if accepted. Call it from the thread that applies batches."""
        try:
            if job.error or job.report is None:
                reason = job.error or "the consolidation did not run"
                return self._outcome("rejected", None, reason, [], {})
            memory = job.embed(*self.memory.examples()[:2])
            holdout = job.embed(*self.holdout.examples()[:2])
            started = time.perf_counter()
            try:
                head = self._refit(memory, job.model)
            except TrainingGuardError as exc:
                return self._outcome("rejected", None, str(exc), [], {})
            extra = {
                "consolidation_seconds": job.seconds + time.perf_counter() - started,
                "consolidation_steps": float(job.report.steps),
                "loss_first": job.report.loss_first,
                "loss_last": job.report.loss_last,
            }
            outcome = self._decide(head, job.model, [], extra, memory, holdout)
            if outcome.status == "published":
                key = job.model.encoder_key()
                self.memory.set_vectors(memory, key)
                self.holdout.set_vectors(holdout, key)
                self._save_memory()
            return outcome
        finally:
            self._consolidating = False

    def consolidate(self) -> BatchOutcome:
        """A whole consolidation in the calling thread (benchmarks and tests)."""
        job = self.begin_consolidation()
        if job is None:
            return self._outcome("skipped", None, "a consolidation is under way", [], {})
        job.run()
        return self.finish_consolidation(job)

    def _working_model(self) -> EndModel:
        if self._working is None:
            self._working = new_end_model(self.options)
        return self._working

    # --- files --------------------------------------------------------------------------------
    def _save_memory(self, memory: bool = True, holdout: bool = True) -> None:
        """Write what changed (each file is the whole set: rewriting an unchanged one on
        every batch is wasted I/O)."""
        if memory:
            self.memory.save(self.dir / MEMORY_FILE)
        if holdout:
            self.holdout.save(self.dir / HOLDOUT_FILE)

    def _remember(self, batch_ids: list[str]) -> None:
        with open(self.dir / "batches.log", "a") as f:
            f.write("".join(b + "\n" for b in batch_ids))
        self.applied.update(batch_ids)

    def _outcome(
        self,
        status: Literal["published", "rejected", "skipped"],
        candidate: int | None,
        reason: str,
        added: list[str],
        metrics: dict[str, float],
    ) -> BatchOutcome:
        return BatchOutcome(status, self.version, candidate, self.version, reason, added, metrics)

    def registry_moved(self) -> bool:
        """Whether the registry's current version is not the one served: a cheap read any
        thread may do; :meth:`reload` decides, on the learning thread."""
        current = self.registry.current(self.node_id)
        return current is not None and current.version != self.version

    def reload(self) -> tuple[int, int]:
        """Serve the registry's current version (after a rollback, say).

        Returns the versions served before and after; call it from the thread that applies
        batches, so a publish in progress is never mistaken for a rollback.
        """
        before = self.version
        current = self.registry.current(self.node_id)
        if current is not None and current.version != self.version:
            meta, tensors = self.registry.load(self.node_id, current.version)
            with self.serving.lock:
                self.serving.load_state(tensors, meta.labels)
                self.version = meta.version
                self.encoder_version = int(meta.extra.get("encoder_version", meta.version))
            key = self.serving.encoder_key()
            for memory in (self._memory, self._holdout):  # (unloaded ones: when next read)
                if memory is not None and memory.key != key:
                    self._reembed(memory, self.serving, key)
        return before, self.version


def _moved(row: Array, fleet: Array) -> bool:
    """Whether the fleet's row of a borrowed intent moved enough to be worth an update:
    more than :data:`BORROWED_MOVE` of the row's norm. (Each adoption refits the node's own
    rows, which moves its contribution a little; a bound at refit noise would have the
    fleet and its nodes answer each other's versions every round, without end.)"""
    return float(np.linalg.norm(fleet - row)) > BORROWED_MOVE * float(np.linalg.norm(row))


def new_end_model(o: EdgeOptions) -> EndModel:
    """An end model with no head yet, as the node's options make it."""
    return EndModel(
        o.encoder_path,
        lora=o.lora,
        max_length=o.max_length,
        precision=o.precision,
        pool_layers=o.pool_layers,
    )


def _fit(
    vectors: Array,
    labels: Sequence[str],
    order: list[str],
    options: EdgeOptions,
    warm: tuple[Array, Array] | None,
    center: Array | None = None,
    *,
    layers: int,
) -> tuple[Array, Array]:
    """The head over ``order`` fitted to ``vectors``/``labels``; the rows of labels without
    an example keep their ``warm`` values (borrowed from the fleet); with ``center`` (a
    weight per row) the penalty pulls towards ``warm`` rather than zero (a start from a
    fleet prior). ``layers``: the pooled layers ``vectors`` are made of (the penalty's
    layer prior, :attr:`EdgeOptions.early_layers_weight`, rising with each row's examples)."""
    index = {y: i for i, y in enumerate(order)}
    y = np.array([index[lab] for lab in labels], dtype=np.int64)
    present = set(labels)
    frozen = np.array([lab not in present for lab in order]) if warm is not None else None
    return fit_softmax(
        vectors,
        y,
        len(order),
        options.head_c,
        init=warm,
        max_iter=options.head_max_iter,
        tolerance=options.head_tolerance,
        frozen=frozen if frozen is not None and frozen.any() else None,
        center=warm[0] if center is not None and warm is not None else None,
        center_weight=center,
        column_penalty=row_layer_prior(
            vectors.shape[1],
            layers,
            np.bincount(y, minlength=len(order)),
            options.early_layers_weight,
            options.early_layers_full_at,
        ),
    )


def _columns(
    examples: Sequence[LabelledText], rows: list[int], vectors: Array, dim: int
) -> tuple[list[str], list[str], list[str], Array]:
    """Ids, texts, labels and embeddings of ``examples[rows]``."""
    picked = vectors[rows] if rows else np.zeros((0, dim), np.float32)
    return (
        [examples[i].example_id for i in rows],
        [examples[i].text for i in rows],
        [examples[i].label for i in rows],
        picked,
    )


def _scores(truth: Sequence[str], preds: Sequence[str]) -> Scores:
    return Scores.of(list(truth), list(preds)) if truth else Scores(float("nan"))
