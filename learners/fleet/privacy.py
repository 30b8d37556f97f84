"""Optional clipping and Gaussian noise of what the fleet averages (off by default).

What it means, honestly: each node's contribution (its head, and its LoRA update) is
clipped to L2 norm ``clip``, and Gaussian noise of standard deviation
``noise * clip * share`` is added to every averaged tensor, where ``share`` is the largest
weight one node has in that average (for equal weights, ``1 / nodes``): the Gaussian
mechanism, with the average's sensitivity to any one node. This is *central*
differential privacy per aggregation round, and it protects a node's data from what the
*other* nodes (and anyone reading the prior) can infer. It does not hide a node's weights
from the aggregator, which reads them unclipped from the registry, and the protection
weakens with every round (no privacy accounting is kept; ``noise`` of about 1 per round
is a weak guarantee over many rounds). Text never leaves a node either way.

>>> import numpy as np
>>> p = Privacy(clip=1.0)
>>> w, b = p.clipped((np.full((2, 2), 3.0), np.zeros(2)))
>>> round(float(np.sqrt((w ** 2).sum() + (b ** 2).sum())), 6)
1.0
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

Array = np.ndarray[Any, Any]


@dataclass(frozen=True)
class Privacy:
    clip: float = 0.0
    """L2 bound of one node's contribution (0: no clipping, and no noise)."""
    noise: float = 0.0
    """Noise multiplier: standard deviation in units of the average's sensitivity."""

    def __post_init__(self) -> None:
        if self.clip < 0 or self.noise < 0:
            raise ValueError("clip and noise are 0 (off) or more")
        if self.noise and not self.clip:
            raise ValueError("noise needs a clip bound: the sensitivity it is scaled to")

    @property
    def active(self) -> bool:
        return self.clip > 0

    def clipped(self, tensors: tuple[Array, ...]) -> tuple[Array, ...]:
        """``tensors`` scaled together to L2 norm ``clip`` at most."""
        if not self.clip:
            return tensors
        norm = float(np.sqrt(sum(float((np.asarray(t) ** 2).sum()) for t in tensors)))
        factor = min(1.0, self.clip / norm) if norm > 0 else 1.0
        return tuple(np.asarray(t) * factor for t in tensors)

    def clipped_factors(
        self, factors: dict[str, tuple[Array, Array]]
    ) -> dict[str, tuple[Array, Array]]:
        """LoRA factors whose updates ``B @ A``, together, have L2 norm ``clip`` at most."""
        if not self.clip:
            return factors
        norm = float(np.sqrt(sum(float(((b @ a) ** 2).sum()) for a, b in factors.values())))
        factor = np.sqrt(min(1.0, self.clip / norm)) if norm > 0 else 1.0
        return {k: (a * factor, b * factor) for k, (a, b) in factors.items()}

    def noised(
        self, tensors: tuple[Array, ...], share: float, rng: np.random.Generator
    ) -> tuple[Array, ...]:
        """``tensors`` (an average in which one node's weight is at most ``share``) with
        Gaussian noise added."""
        if not (self.clip and self.noise):
            return tensors
        std = self.noise * self.clip * share
        return tuple(np.asarray(t) + rng.normal(0.0, std, np.shape(t)) for t in tensors)
