"""Per-node intent mixes: each store sees its own blend of intents, as real regions do.

Drift detection and local adaptation are per node, so a scenario where every node saw the
same mix would hide the cases that matter (an intent frequent at one node, rare at another).
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass
from itertools import accumulate

MIX_CONCENTRATION = 2.0  # Dirichlet alpha: lower = more skewed mixes per node


@dataclass(frozen=True)
class IntentMix:
    """Seeded Dirichlet-like weights over ``intents``, for weighted draws.

    >>> mix = IntentMix.draw(["a", "b", "c"], random.Random(0))
    >>> round(sum(mix.weights), 6), mix.pick(random.Random(1)) in {"a", "b", "c"}
    (1.0, True)
    """

    intents: tuple[str, ...]
    weights: tuple[float, ...]

    @classmethod
    def draw(
        cls, intents: Sequence[str], rng: random.Random, concentration: float = MIX_CONCENTRATION
    ) -> IntentMix:
        if not intents:
            raise ValueError("an intent mix needs at least one intent")
        raw = [rng.gammavariate(concentration, 1.0) for _ in intents]
        total = sum(raw)
        return cls(tuple(intents), tuple(w / total for w in raw))

    def pick(self, rng: random.Random) -> str:
        """One intent, drawn in proportion to the weights."""
        return rng.choices(self.intents, cum_weights=list(accumulate(self.weights)))[0]
