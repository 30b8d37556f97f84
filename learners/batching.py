"""Batching policy: labelled examples become training batches per node, by size or by age.

A node's batch is closed when it holds ``max_size`` examples ("size") or when its oldest
example has waited ``max_age_s`` ("age"), so a quiet node still learns within a bounded time.
An example id seen recently is ignored (a redelivered feedback or annotation is not learned
twice), and the batch id is a hash of the node and the example ids, so the same examples
always make the same batch id and the learner can apply each batch once.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Literal

from learners.join import RecentKeys

Source = Literal["feedback", "teacher"]


@dataclass(frozen=True)
class LabelledExample:
    example_id: str
    node_id: str
    turn_id: str
    text: str
    label: str
    source: Source
    confidence: float = 1.0


@dataclass(frozen=True)
class TrainingBatch:
    batch_id: str
    node_id: str
    examples: list[LabelledExample]
    created_at: float
    reason: Literal["size", "age"]


@dataclass
class _Open:
    started: float
    examples: list[LabelledExample] = field(default_factory=list)


class FeedbackBatcher:
    """Per-node open batches, closed by size or age.

    >>> b = FeedbackBatcher(max_size=2, max_age_s=10)
    >>> ex = lambda i: LabelledExample(f"e{i}", "n1", f"t{i}", "hi", "greet", "feedback")
    >>> b.add(ex(1), now=0.0)
    []
    >>> [(t.reason, len(t.examples)) for t in b.add(ex(2), now=1.0)]
    [('size', 2)]
    >>> b.add(ex(2), now=2.0), b.add(ex(3), now=3.0)  # e2 again is ignored
    ([], [])
    >>> [(t.reason, len(t.examples)) for t in b.due(now=13.5)]
    [('age', 1)]
    """

    def __init__(self, max_size: int, max_age_s: float, remember: int = 100_000) -> None:
        if max_size < 1 or max_age_s <= 0:
            raise ValueError("max_size must be >= 1 and max_age_s > 0")
        self.max_size = max_size
        self.max_age_s = max_age_s
        self._open: dict[str, _Open] = {}
        self._seen: RecentKeys[str] = RecentKeys(remember)

    def pending(self) -> int:
        """Examples waiting in open batches."""
        return sum(len(o.examples) for o in self._open.values())

    def add(self, example: LabelledExample, now: float) -> list[TrainingBatch]:
        """Add ``example``; returns the batch it closed, if it filled one."""
        if not self._seen.add(example.example_id):
            return []
        batch = self._open.setdefault(example.node_id, _Open(started=now))
        batch.examples.append(example)
        if len(batch.examples) >= self.max_size:
            return [self._close(example.node_id, now, "size")]
        return []

    def due(self, now: float) -> list[TrainingBatch]:
        """Close every batch whose oldest example has waited ``max_age_s`` or more."""
        late = [n for n, o in self._open.items() if now - o.started >= self.max_age_s]
        return [self._close(n, now, "age") for n in late]

    def _close(self, node_id: str, now: float, reason: Literal["size", "age"]) -> TrainingBatch:
        batch = self._open.pop(node_id)
        return TrainingBatch(
            batch_id=batch_id(node_id, [e.example_id for e in batch.examples]),
            node_id=node_id,
            examples=batch.examples,
            created_at=now,
            reason=reason,
        )


def batch_id(node_id: str, example_ids: list[str]) -> str:
    """``<node>-<hash>``: the same examples always give the same id."""
    digest = hashlib.sha256("\n".join([node_id, *example_ids]).encode()).hexdigest()
    return f"{node_id}-{digest[:20]}"
