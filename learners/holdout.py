"""The held-out side of the eval gate: which examples are never trained on, and where they go.

``HoldoutRouter`` sends every ``every``-th example (by a hash of its id, so the choice is the
same after a restart or a redelivery) to the held-out set; ``HoldoutSet`` keeps a bounded,
class-balanced sample of them to score candidate versions on.
"""

from __future__ import annotations

import zlib

from learners.reservoir import ClassReservoir


class HoldoutRouter:
    """Deterministic 1-in-``every`` choice of held-out examples.

    >>> router = HoldoutRouter(every=5)
    >>> router.is_holdout("feedback:fb-1") == router.is_holdout("feedback:fb-1")
    True
    >>> sum(router.is_holdout(f"ex-{i}") for i in range(1000)) in range(150, 250)
    True
    """

    def __init__(self, every: int) -> None:
        if every < 0:
            raise ValueError("every must be >= 0 (0: hold nothing out)")
        self.every = every

    def is_holdout(self, example_id: str) -> bool:
        return self.every > 0 and zlib.crc32(example_id.encode()) % self.every == 0


class HoldoutSet(ClassReservoir):
    """At most ``per_class`` held-out examples per intent, never trained on.

    >>> ho = HoldoutSet(per_class=3)
    >>> for i in range(3):
    ...     ho.add(f"track {i}", "track"); ho.add(f"cancel {i}", "cancel")
    >>> ho.sample(4)
    [('cancel 0', 'cancel'), ('cancel 1', 'cancel'), ('track 0', 'track'), ('track 1', 'track')]
    """

    def sample(self, limit: int) -> list[tuple[str, str]]:
        """At most ``limit`` examples, the same number per intent, the same every call
        (so that the gate's cost stays bounded however many intents a node has)."""
        if not self._kept:
            return []
        per = max(1, limit // len(self._kept))
        return sorted((t, lab) for lab, texts in self._kept.items() for t in texts[:per])
