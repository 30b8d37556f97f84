"""One edge node's model lifecycle: serve, learn from a batch, gate, publish, swap.

The node keeps two copies of its end model: ``serving`` answers turns; ``working`` is
trained on a batch and scored on the held-out set against its own pre-batch state (which
equals the serving version). Only an accepted candidate is written to the registry and
swapped into ``serving`` (a few tensor copies under the model's lock, so a request sees
the old or the new version, never a mix). A rejected candidate is discarded by copying the
serving weights back. Batch ids already applied are remembered on disk, so a batch
delivered again after a restart is skipped.
"""

from __future__ import annotations

import json
import time
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from learners.gate import Scores
from learners.holdout import HoldoutRouter, HoldoutSet
from learners.options import EdgeOptions
from learners.replay import ClassBalancedReplay
from learners.trainer import IncrementalTrainer, TrainingGuardError
from models.end_model import EndModel, Prediction
from models.registry import AdapterRegistry


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
        self.serving = self._new_model()
        self.working = self._new_model()
        self.version = current.version
        self._load(current.version)
        self.replay = ClassBalancedReplay(options.replay_per_class, options.train.seed)
        self.holdout = HoldoutSet(options.holdout_per_class, options.train.seed)
        self.router = HoldoutRouter(options.holdout_every)
        self.trainer = IncrementalTrainer(self.working, self.replay, options.train)
        self.applied: set[str] = set()
        self.swap_seconds: deque[float] = deque(maxlen=1000)
        self._serving_preds: tuple[int, dict[str, str]] = (-1, {})
        self._restore()

    # --- construction -----------------------------------------------------------------------
    def _new_model(self) -> EndModel:
        o = self.options
        return EndModel(o.encoder_path, lora=o.lora, max_length=o.max_length)

    def _load(self, version: int) -> None:
        meta, tensors = self.registry.load(self.node_id, version)
        self.serving.load_state(tensors, meta.labels)
        self.working.load_state(tensors, meta.labels)
        self.version = meta.version

    @classmethod
    def bootstrap(
        cls,
        node_id: str,
        registry: AdapterRegistry,
        state_dir: Path,
        texts: Sequence[str],
        labels: Sequence[str],
        options: EdgeOptions = EdgeOptions(),
    ) -> int:
        """Create a node's first version: head rows at the class centroids of the examples."""
        model = EndModel(options.encoder_path, lora=options.lora, max_length=options.max_length)
        model.fit_head(texts, labels)
        version = registry.publish(
            node_id,
            model.state(),
            labels=model.labels,
            base_model=model.base_model_name,
            parent=None,
            metrics={"seed_examples": float(len(texts))},
            extra={"reason": "bootstrap"},
        )
        node_dir = Path(state_dir) / "nodes" / node_id
        node_dir.mkdir(parents=True, exist_ok=True)
        with open(node_dir / "examples.jsonl", "w") as f:
            for t, y in zip(texts, labels, strict=True):
                f.write(json.dumps({"text": t, "label": y, "holdout": False}) + "\n")
        (node_dir / "batches.log").write_text("")
        return version.version

    def _restore(self) -> None:
        """Refill replay and held-out sets and the applied batch ids from the node's files."""
        examples = self.dir / "examples.jsonl"
        if examples.exists():
            for line in examples.read_text().splitlines():
                if line.strip():
                    row = json.loads(line)
                    target = self.holdout if row["holdout"] else self.replay
                    target.add(row["text"], row["label"])
        log = self.dir / "batches.log"
        if log.exists():
            self.applied = {b for b in log.read_text().split() if b}

    # --- serving ------------------------------------------------------------------------------
    def predict(self, texts: Sequence[str], k: int = 3) -> tuple[list[Prediction], int]:
        """Predictions and the version that made them (read under the same lock)."""
        with self.serving.lock:
            return self.serving.predict(texts, k=k), self.version

    # --- learning -----------------------------------------------------------------------------
    def apply_batch(self, batch_id: str, examples: Sequence[LabelledText]) -> BatchOutcome:
        return self.apply_batches([(batch_id, examples)])

    def apply_batches(self, batches: Sequence[tuple[str, Sequence[LabelledText]]]) -> BatchOutcome:
        """Learn from one or more batches as one update (the learner coalesces a backlog).

        Batches applied before are skipped; the result is one candidate version, gated,
        published or rejected as a whole.
        """
        fresh = [(b, ex) for b, ex in batches if b not in self.applied]
        if not fresh:
            again = ", ".join(b for b, _ in batches)
            return self._outcome("skipped", None, f"batch {again} was applied before", [], {})
        ids = [b for b, _ in fresh]
        examples = [e for _, ex in fresh for e in ex]
        held = [e for e in examples if self.router.is_holdout(e.example_id)]
        train = [e for e in examples if not self.router.is_holdout(e.example_id)]
        for e in held:
            self.holdout.add(e.text, e.label)
        if not train:
            self._remember(ids, held, [])
            return self._outcome("skipped", None, "every example went to the held-out set", [], {})
        ho = self.holdout.sample(self.options.holdout_max)
        before = self._serving_score(ho)  # the working copy still equals the serving one
        try:
            report = self.trainer.train([e.text for e in train], [e.label for e in train])
        except TrainingGuardError as exc:
            self.working.copy_from(self.serving)
            self._remember(ids, held, [])
            return self._outcome("rejected", None, str(exc), [], {})
        after, after_preds = self._score(ho)
        decision = self.options.gate.decide(before, after)
        metrics = {
            "holdout_accuracy": after.accuracy,
            "holdout_accuracy_before": before.accuracy,
            "holdout_size": float(len(ho)),
            "loss_first": report.loss_first,
            "loss_last": report.loss_last,
            "train_seconds": report.seconds,
            "examples": float(report.examples),
            "batches": float(len(ids)),
        }
        if not decision.accept:
            # The gate judged this update, not the labels: they stay true, so they go to
            # replay and the next candidate learns them again together with newer ones
            # (a new intent builds up its examples across rejected candidates).
            self.working.copy_from(self.serving)
            for e in train:
                self.replay.add(e.text, e.label)
            self._remember(ids, held, train)
            return self._outcome("rejected", None, decision.reason, report.labels_added, metrics)
        parent = self.version
        published = self.registry.publish(
            self.node_id,
            self.working.state(),
            labels=self.working.labels,
            base_model=self.working.base_model_name,
            parent=parent,
            metrics={k: v for k, v in metrics.items() if v == v},
            extra={"batch_ids": ids, "labels_added": report.labels_added},
        )
        state = self.working.state()
        paused = time.perf_counter()
        with self.serving.lock:  # the swap: between two requests, never during one
            self.serving.load_state(state, self.working.labels)
            self.version = published.version
        self.swap_seconds.append(time.perf_counter() - paused)
        self._serving_preds = (published.version, after_preds)
        for e in train:
            self.replay.add(e.text, e.label)
        self._remember(ids, held, train)
        return BatchOutcome(
            "published",
            published.version,
            published.version,
            parent,
            decision.reason,
            report.labels_added,
            metrics,
        )

    def _serving_score(self, items: list[tuple[str, str]]) -> Scores:
        """The serving version's held-out score. Its predictions are kept per text, so only
        examples new to the held-out set are predicted again (the gate's cost stays flat)."""
        version, cached = self._serving_preds
        if version != self.version:
            cached = {}
        missing = [t for t, _ in items if t not in cached]
        if missing:
            for text, pred in zip(missing, self.working.predict(missing, k=1), strict=True):
                cached[text] = pred.intent
        self._serving_preds = (self.version, cached)
        return _scores(items, [cached[t] for t, _ in items])

    def _score(self, items: Sequence[tuple[str, str]]) -> tuple[Scores, dict[str, str]]:
        """The working copy's held-out score, and its prediction for each text."""
        preds = (
            [p.intent for p in self.working.predict([t for t, _ in items], k=1)] if items else []
        )
        return _scores(items, preds), {t: p for (t, _), p in zip(items, preds, strict=True)}

    def _remember(
        self, batch_ids: list[str], held: Sequence[LabelledText], train: Sequence[LabelledText]
    ) -> None:
        with open(self.dir / "examples.jsonl", "a") as f:
            for e, flag in [(e, True) for e in held] + [(e, False) for e in train]:
                f.write(json.dumps({"text": e.text, "label": e.label, "holdout": flag}) + "\n")
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
            self.working.load_state(tensors, meta.labels)
        return before, self.version


def _scores(items: Sequence[tuple[str, str]], preds: Sequence[str]) -> Scores:
    return Scores.of([y for _, y in items], preds) if items else Scores(float("nan"))
