"""Which turns to send to the cloud teacher, and when.

The teacher is expensive and sees only what it must. A turn becomes a candidate when
- its predicted intent is drifting on its node (low-confidence turns first), or
- a user gave it a thumbs-down without saying the right intent.
Requests are paced by a token bucket per node (``budget_per_minute``). Candidates wait in a
bounded queue per node and leave it by priority as the budget allows: the strongest drift
first, then the lowest confidence (a thumbs-down counts as confidence 0), oldest first on
ties; so in a drift storm the budget goes where drift is worst, and a candidate whose intent
stopped drifting is dropped. A turn is never requested twice, and near-duplicate texts
(same words once lower-cased and stripped of punctuation and digits) are sent once, so the
sample stays diverse. When an intent starts drifting, the recent turns that led to the
alarm are offered right away.
"""

from __future__ import annotations

import heapq
import itertools
import re
from collections import deque
from dataclasses import dataclass

from learners.join import RecentKeys

_NOT_WORD = re.compile(r"[^a-z]+")
THUMBS_DOWN = "thumbs-down, no label"


@dataclass(frozen=True)
class TeacherCandidate:
    node_id: str
    turn_id: str
    text: str
    predicted: str
    confidence: float
    reason: str


class TokenBucket:
    """``rate_per_minute`` tokens a minute, at most that many saved up.

    >>> bucket = TokenBucket(rate_per_minute=60, now=0.0)
    >>> sum(bucket.take(0.0) for _ in range(100))
    60
    >>> bucket.take(0.5), bucket.take(1.0)
    (False, True)
    """

    def __init__(self, rate_per_minute: float, now: float) -> None:
        self.capacity = float(rate_per_minute)
        self.rate = rate_per_minute / 60.0
        self.tokens = self.capacity
        self.at = now

    def take(self, now: float) -> bool:
        self.tokens = self.left(now)
        self.at = max(self.at, now)
        if self.tokens >= 1.0:
            self.tokens -= 1.0
            return True
        return False

    def left(self, now: float) -> float:
        """Tokens available at ``now`` (saved ones plus the refill since the last take)."""
        return min(self.capacity, self.tokens + max(0.0, now - self.at) * self.rate)


class TeacherRequestPolicy:
    """Chooses teacher requests within a per-node budget; never one turn twice.

    >>> p = TeacherRequestPolicy(budget_per_minute=2, low_confidence=0.5)
    >>> p.offer_turn("n1", "t1", "refund_status", 0.4, "is my refund coming", now=0.0)
    []
    >>> [c.turn_id for c in p.set_drifting("n1", "refund_status", True, 0.9, now=1.0)]
    ['t1']
    >>> [c.reason for c in p.offer_turn("n1", "t2", "refund_status", 0.9, "refund pls", 2.0)]
    ['drifting intent refund_status']
    >>> p.offer_turn("n1", "t3", "refund_status", 0.3, "my refund?", now=3.0)  # budget spent
    []
    """

    def __init__(
        self,
        budget_per_minute: int,
        low_confidence: float,
        recent_per_intent: int = 32,
        remember: int = 200_000,
        queue_per_node: int = 256,
    ) -> None:
        self.budget_per_minute = budget_per_minute
        self.low_confidence = low_confidence
        self.recent_per_intent = recent_per_intent
        self.remember = remember
        self._drifting: dict[tuple[str, str], float] = {}
        self._buckets: dict[str, TokenBucket] = {}
        self._requested: RecentKeys[str] = RecentKeys(remember)
        self._texts: RecentKeys[tuple[str, str]] = RecentKeys(remember)
        self._recent: dict[tuple[str, str], deque[TeacherCandidate]] = {}
        self.queue_per_node = queue_per_node
        self._queues: dict[str, list[tuple[float, float, int, TeacherCandidate]]] = {}
        self._order = itertools.count()

    def drifting(self, node_id: str) -> dict[str, float]:
        """The drifting intents of ``node_id`` with their scores."""
        return {i: s for (n, i), s in self._drifting.items() if n == node_id}

    def nodes(self) -> list[str]:
        """Nodes seen so far (served turns or drift events)."""
        return sorted(set(self._buckets) | {node for node, _ in self._drifting})

    def queued(self, node_id: str) -> int:
        """Candidates of ``node_id`` waiting for budget (at most 2 x ``queue_per_node``)."""
        return len(self._queues.get(node_id, ()))

    def budget_left(self, node_id: str, now: float) -> float:
        bucket = self._buckets.get(node_id)
        return bucket.left(now) if bucket else float(self.budget_per_minute)

    def offer_turn(
        self, node_id: str, turn_id: str, intent: str, confidence: float, text: str, now: float
    ) -> list[TeacherCandidate]:
        """A served turn; returns it as a request if its intent is drifting and budget allows."""
        key = (node_id, intent)
        if key not in self._drifting:
            recent = self._recent.setdefault(key, deque(maxlen=self.recent_per_intent))
            recent.append(TeacherCandidate(node_id, turn_id, text, intent, confidence, ""))
            return []
        weak = "low-confidence turn of " if confidence < self.low_confidence else ""
        candidate = TeacherCandidate(
            node_id, turn_id, text, intent, confidence, f"{weak}drifting intent {intent}"
        )
        return self._admit([candidate], node_id, now)

    def offer_thumbs_down(
        self, node_id: str, turn_id: str, intent: str, text: str, now: float
    ) -> list[TeacherCandidate]:
        """A turn the user said was wrong without giving the right intent."""
        candidate = TeacherCandidate(node_id, turn_id, text, intent, 0.0, THUMBS_DOWN)
        return self._admit([candidate], node_id, now)

    def set_drifting(
        self, node_id: str, intent: str, drifting: bool, score: float, now: float
    ) -> list[TeacherCandidate]:
        """Drift state of an intent changed; a new alarm offers the turns that raised it."""
        key = (node_id, intent)
        if not drifting:
            self._drifting.pop(key, None)
            return []
        self._drifting[key] = score
        recent = sorted(self._recent.pop(key, deque()), key=lambda c: c.confidence)
        return self._admit(
            [
                TeacherCandidate(
                    c.node_id,
                    c.turn_id,
                    c.text,
                    c.predicted,
                    c.confidence,
                    f"recent turn of newly drifting intent {intent}",
                )
                for c in recent
            ],
            node_id,
            now,
        )

    def due(self, now: float) -> list[TeacherCandidate]:
        """Queued candidates of every node that the refilled budgets allow now."""
        return [c for node_id in list(self._queues) for c in self._send(node_id, now)]

    def _admit(
        self, candidates: list[TeacherCandidate], node_id: str, now: float
    ) -> list[TeacherCandidate]:
        """Queue ``candidates`` of ``node_id``, then send what its budget allows."""
        queue = self._queues.setdefault(node_id, [])
        for c in candidates:
            if not self._new(c):
                continue
            drift = self._drifting.get((node_id, c.predicted), 0.0)
            heapq.heappush(queue, (-drift, c.confidence, next(self._order), c))
        if len(queue) > 2 * self.queue_per_node:  # keep the most urgent (trimmed in bulk)
            queue[:] = heapq.nsmallest(self.queue_per_node, queue)
        return self._send(node_id, now)

    def _send(self, node_id: str, now: float) -> list[TeacherCandidate]:
        queue = self._queues.get(node_id, [])
        out: list[TeacherCandidate] = []
        while queue:
            c = queue[0][3]
            still = c.reason == THUMBS_DOWN or (node_id, c.predicted) in self._drifting
            if not still or not self._new(c):
                heapq.heappop(queue)
                continue
            bucket = self._buckets.setdefault(node_id, TokenBucket(self.budget_per_minute, now))
            if not bucket.take(now):
                break
            heapq.heappop(queue)
            self._requested.add(c.turn_id)
            self._texts.add(_shape(c))
            out.append(c)
        return out

    def _new(self, c: TeacherCandidate) -> bool:
        """Neither this turn nor a near-duplicate text was requested before."""
        return c.turn_id not in self._requested and _shape(c) not in self._texts


def _shape(c: TeacherCandidate) -> tuple[str, str]:
    return c.node_id, _NOT_WORD.sub(" ", c.text.lower()).strip()
