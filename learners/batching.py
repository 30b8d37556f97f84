"""Batching policy: labelled examples become training batches per node, by size or by age.

A node's batch is closed when it holds ``max_size`` examples ("size") or when its oldest
example has waited ``max_age_s`` ("age"), so a quiet node still learns within a bounded time.
The batch id is a hash of the node and the example ids, so the same examples always make
the same batch id and the learner can apply each batch once. Which examples are new (not a
redelivery) is :class:`learners.feedback_ledger.SeenIds`' job, not the batcher's.
Open batches export to JSON-able dicts (:class:`learners.state.NodeState`), so a worker can
keep them in a changelog.
"""

from __future__ import annotations

import dataclasses
import hashlib
from dataclasses import dataclass, field
from typing import Any, Literal

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

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> LabelledExample:
        return cls(**data)


@dataclass(frozen=True)
class TrainingBatch:
    batch_id: str
    node_id: str
    examples: list[LabelledExample]
    created_at: float
    reason: Literal["size", "age"]
    started: float = 0.0
    """When its first example arrived (``created_at - started`` is the batch's age)."""

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TrainingBatch:
        examples = [LabelledExample.from_dict(e) for e in data["examples"]]
        return cls(**{**data, "examples": examples})


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
    >>> b.add(ex(3), now=3.0)
    []
    >>> [(t.reason, len(t.examples)) for t in b.due(now=13.5)]
    [('age', 1)]
    """

    def __init__(self, max_size: int, max_age_s: float) -> None:
        if max_size < 1 or max_age_s <= 0:
            raise ValueError("max_size must be >= 1 and max_age_s > 0")
        self.max_size = max_size
        self.max_age_s = max_age_s
        self._open: dict[str, _Open] = {}

    def pending(self) -> int:
        """Examples waiting in open batches."""
        return sum(len(o.examples) for o in self._open.values())

    def add(self, example: LabelledExample, now: float) -> list[TrainingBatch]:
        """Add ``example``; returns the batch it closed, if it filled one."""
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
            started=batch.started,
        )

    # --- state (learners.state.NodeState) ---------------------------------------------------
    def __contains__(self, node_id: object) -> bool:
        """Whether ``node_id`` has an open batch."""
        return node_id in self._open

    def nodes(self) -> list[str]:
        """The nodes with an open batch (a node without one has no state here)."""
        return list(self._open)

    def export(self, node_id: str) -> dict[str, Any]:
        """``node_id``'s open batch as JSON-able data (KeyError if it has none)."""
        batch = self._open[node_id]
        return {"started": batch.started, "examples": [e.to_dict() for e in batch.examples]}

    def restore(self, node_id: str, data: dict[str, Any]) -> None:
        """Replace ``node_id``'s open batch with what :meth:`export` gave."""
        examples = [LabelledExample.from_dict(e) for e in data["examples"]]
        self._open[node_id] = _Open(started=data["started"], examples=examples)

    def forget(self, node_id: str) -> None:
        """Drop ``node_id``'s open batch."""
        self._open.pop(node_id, None)


def feedback_label(kind: str, label: str | None, predicted: str) -> str | None:
    """The label a piece of feedback gives its turn: a correction's label, or the served
    prediction for a thumbs-up; None for feedback that labels nothing (a thumbs-down is a
    teacher candidate, a rating or an escalation says nothing about the intent).

    >>> feedback_label("correction", "refund_status", "track_order")
    'refund_status'
    >>> feedback_label("thumbs_up", None, "track_order"), feedback_label("thumbs_down", None, "x")
    ('track_order', None)
    """
    if kind == "correction":
        return label
    if kind == "thumbs_up":
        return predicted
    return None


def batch_id(node_id: str, example_ids: list[str]) -> str:
    """``<node>-<hash>``: the same examples always give the same id."""
    digest = hashlib.sha256("\n".join([node_id, *example_ids]).encode()).hexdigest()
    return f"{node_id}-{digest[:20]}"
