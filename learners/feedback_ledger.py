"""The feedback agent's state as plain data: what a restarted worker needs so that every
accepted feedback ends in exactly one applied training batch.

Per node, one record: its open batch, the batches it closed but has not confirmed sent
(the *outbox*), the feedback still waiting for its turn, and the offset of the last input
record of each topic that the record includes. Across nodes: the example ids taken so far,
each with the input record that brought it (:class:`SeenIds`).

The agent (``streams/agents/feedback.py``) keeps these in a changelogged table and follows
three rules, which together give at-least-once delivery made idempotent:

1. A node's record is written to the changelog, and acknowledged by the broker, before its
   input records are acknowledged, so a committed offset is never ahead of the stored
   state (``streams/state_table.py`` says why Faust's flush is not enough); after a crash
   the inputs after the stored offsets are read again.
2. A closed batch is in the stored outbox (flushed) before it is sent. A restarted worker
   sends its outbox again with the same batch ids; the learner skips an id it has applied.
3. An input record at or below the node's stored offset is part of the state already and
   is skipped (:meth:`FeedbackLedger.fresh`).

>>> from learners.batching import FeedbackBatcher, LabelledExample
>>> ledger = FeedbackLedger(FeedbackBatcher(max_size=2, max_age_s=60))
>>> ex = lambda i: LabelledExample(f"e{i}", "n1", f"t{i}", "hi", "greet", "feedback")
>>> ledger.fresh("n1", 0, "chat.feedback", 10), ledger.fresh("n1", 0, "chat.feedback", 10)
(True, False)
>>> ledger.add(ex(1), now=0.0); ledger.add(ex(2), now=1.0)
>>> [len(b.examples) for b in ledger.outbox()]
[2]
>>> copy = FeedbackLedger(FeedbackBatcher(max_size=2, max_age_s=60))
>>> copy.restore("n1", ledger.export("n1"))
>>> [b.batch_id for b in copy.outbox()] == [b.batch_id for b in ledger.outbox()]
True
"""

from __future__ import annotations

import heapq
from collections.abc import Callable, Collection, Iterator
from dataclasses import dataclass, field
from typing import Any

from learners.batching import FeedbackBatcher, LabelledExample, TrainingBatch

Origin = tuple[str, int, int]
"""The input record that carried something: (topic, partition, offset)."""


class SeenIds:
    """Ids already taken, each with its origin, forgotten ``ttl_s`` after it was taken.

    A record replayed after a crash carries its ids again: it still gets them (the state
    that included it may not have been stored), while another record with a taken id is a
    duplicate. So the id records and the node records need no common transaction.

    >>> seen = SeenIds(ttl_s=60)
    >>> seen.claim("f1", ("chat.feedback", 0, 5), now=0.0)
    True
    >>> seen.claim("f1", ("chat.feedback", 0, 5), now=1.0)  # the same record, replayed
    True
    >>> seen.claim("f1", ("chat.feedback", 0, 9), now=2.0)  # a second post of f1
    False
    >>> seen.expire(now=61.0), "f1" in seen
    ([('f1', ('chat.feedback', 0, 5))], False)
    """

    def __init__(self, ttl_s: float) -> None:
        if ttl_s <= 0:
            raise ValueError("ttl_s must be > 0")
        self.ttl_s = ttl_s
        self._ids: dict[str, tuple[Origin, float]] = {}
        self._expiry: list[tuple[float, str]] = []

    def __contains__(self, key: object) -> bool:
        return key in self._ids

    def __len__(self) -> int:
        return len(self._ids)

    def claim(self, key: str, origin: Origin, now: float) -> bool:
        """Take ``key`` for ``origin``; False if another record took it."""
        held = self._ids.get(key)
        if held is not None:
            return held[0] == origin
        self.restore(key, origin, now + self.ttl_s)
        return True

    def entry(self, key: str) -> tuple[Origin, float]:
        """``key``'s origin and expiry (what the agent stores)."""
        return self._ids[key]

    def restore(self, key: str, origin: Origin, expiry: float) -> None:
        self._ids[key] = (tuple(origin), expiry)  # type: ignore[assignment]
        heapq.heappush(self._expiry, (expiry, key))

    def expire(self, now: float) -> list[tuple[str, Origin]]:
        """Forget the ids whose time is up; returns them with their origins."""
        gone: list[tuple[str, Origin]] = []
        while self._expiry and self._expiry[0][0] <= now:
            expiry, key = heapq.heappop(self._expiry)
            held = self._ids.get(key)
            if held is not None and held[1] == expiry:
                del self._ids[key]
                gone.append((key, held[0]))
        return gone

    def clear(self) -> None:
        self._ids.clear()
        self._expiry.clear()


@dataclass(frozen=True)
class WaitingFeedback:
    """Feedback that arrived before its turn; it waits until ``deadline``."""

    feedback: dict[str, Any]
    origin: Origin
    deadline: float

    @property
    def turn_id(self) -> str:
        return str(self.feedback["turn_id"])


@dataclass
class _Node:
    partition: int
    offsets: dict[str, int] = field(default_factory=dict)
    outbox: list[TrainingBatch] = field(default_factory=list)
    waiting: list[WaitingFeedback] = field(default_factory=list)


class FeedbackLedger:
    """Per-node batching state with offsets, an outbox and a join wait list: the feedback
    agent's :class:`learners.state.NodeState`, one changelog record per node.

    Every change marks the node dirty; :meth:`take_dirty` says which node records to write.
    """

    def __init__(self, batcher: FeedbackBatcher) -> None:
        self.batcher = batcher
        self._nodes: dict[str, _Node] = {}
        self._dirty: set[str] = set()

    def __contains__(self, node_id: object) -> bool:
        return node_id in self._nodes

    def nodes(self) -> list[str]:
        return list(self._nodes)

    def partition(self, node_id: str) -> int:
        return self._nodes[node_id].partition

    def fresh(self, node_id: str, partition: int, topic: str, offset: int) -> bool:
        """Record that the node includes ``topic``'s record at ``offset``; False if it
        already did (a replay after a restart)."""
        node = self._nodes.setdefault(node_id, _Node(partition))
        if offset <= node.offsets.get(topic, -1):
            return False
        node.offsets[topic] = offset
        self._dirty.add(node_id)
        return True

    def add(self, example: LabelledExample, now: float) -> None:
        """Add a labelled example of a node seen by :meth:`fresh`; a batch it fills goes
        to the outbox."""
        if example.node_id not in self._nodes:
            raise KeyError(f"node {example.node_id!r} has no state: call fresh() first")
        self._close(self.batcher.add(example, now))
        self._dirty.add(example.node_id)

    def due(self, now: float) -> None:
        """Close the batches that are old enough (into the outbox)."""
        self._close(self.batcher.due(now))

    def _close(self, batches: list[TrainingBatch]) -> None:
        for batch in batches:
            self._nodes[batch.node_id].outbox.append(batch)
            self._dirty.add(batch.node_id)

    def outbox(self) -> list[TrainingBatch]:
        """Closed batches not yet confirmed sent, every node's, oldest first per node."""
        return [b for node in self._nodes.values() for b in node.outbox]

    def sent(self, batches: list[TrainingBatch]) -> None:
        """The broker acknowledged ``batches``: drop them from the outbox."""
        done = {b.batch_id for b in batches}
        for node_id in {b.node_id for b in batches}:
            node = self._nodes[node_id]
            node.outbox = [b for b in node.outbox if b.batch_id not in done]
            self._dirty.add(node_id)

    def wait(self, node_id: str, item: WaitingFeedback) -> None:
        self._nodes[node_id].waiting.append(item)
        self._dirty.add(node_id)

    def has_waiting(self) -> bool:
        return any(node.waiting for node in self._nodes.values())

    def take_waiting(
        self,
        now: float,
        known: Callable[[str], bool],
        behind: Collection[str] = (),
        grace_s: float = 0.0,
    ) -> Iterator[tuple[str, WaitingFeedback, bool]]:
        """Remove and yield (node, item, joined) for every waiting item whose turn is now
        ``known`` (joined) or whose deadline passed (not joined).

        For a node in ``behind`` (its turns are in the topic but not read yet: a backlog
        after a restart) a passed deadline is not the end: the item waits ``grace_s`` more,
        so a slow catch-up does not dead-letter feedback whose turn is on its way.
        """
        for node_id, node in self._nodes.items():
            extra = grace_s if node_id in behind else 0.0
            keep: list[WaitingFeedback] = []
            for item in node.waiting:
                joined = known(item.turn_id)
                if joined or now >= item.deadline + extra:
                    self._dirty.add(node_id)
                    yield node_id, item, joined
                else:
                    keep.append(item)
            node.waiting = keep

    def take_dirty(self) -> set[str]:
        dirty, self._dirty = self._dirty, set()
        return dirty

    def export(self, node_id: str) -> dict[str, Any]:
        """``node_id``'s whole state as JSON-able data, one changelog record (KeyError for a
        node it does not hold)."""
        node = self._nodes[node_id]
        return {
            "partition": node.partition,
            "offsets": dict(node.offsets),
            "open": self.batcher.export(node_id) if node_id in self.batcher else None,
            "outbox": [b.to_dict() for b in node.outbox],
            "waiting": [
                {"feedback": w.feedback, "origin": list(w.origin), "deadline": w.deadline}
                for w in node.waiting
            ],
        }

    def restore(self, node_id: str, data: dict[str, Any]) -> None:
        """Replace ``node_id``'s state with what :meth:`export` gave."""
        self._nodes[node_id] = _Node(
            partition=int(data["partition"]),
            offsets={k: int(v) for k, v in data["offsets"].items()},
            outbox=[TrainingBatch.from_dict(b) for b in data["outbox"]],
            waiting=[
                WaitingFeedback(w["feedback"], tuple(w["origin"]), w["deadline"])
                for w in data["waiting"]
            ],
        )
        if data["open"] is None:
            self.batcher.forget(node_id)
        else:
            self.batcher.restore(node_id, data["open"])

    def forget(self, node_id: str) -> None:
        """Drop ``node_id`` from memory (its partition went to another worker)."""
        self._nodes.pop(node_id, None)
        self.batcher.forget(node_id)
        self._dirty.discard(node_id)
