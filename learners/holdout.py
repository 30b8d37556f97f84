"""The held-out side of the eval gate: which examples are never trained on.

``HoldoutRouter`` sends every ``every``-th example (by a hash of its id, so the choice is the
same after a restart or a redelivery) to the held-out set, which the edge node keeps as an
:class:`~learners.memory.ExampleMemory` of its own (bounded and class-balanced, with
embeddings, so the gate scores candidates without a forward pass).
"""

from __future__ import annotations

import zlib


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
