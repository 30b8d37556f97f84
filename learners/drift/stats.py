"""Online statistics of a drift reference: rates and moments, batch-updatable and plain data.

>>> m = Moments()
>>> m.merge(np.array([1.0, 2.0, 3.0]))
>>> (m.n, m.mean, round(m.var, 4))
(3, 2.0, 0.6667)
>>> m.follow_stats(1, 10.0, 0.0, adapt=0.5)
>>> (m.mean, round(m.var, 2))
(6.0, 16.33)
>>> r = Rate()
>>> r.add(3, 10)
>>> round(r.shrunk(prior=0.1, weight=10, floor=0.01), 2)
0.2
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np


@dataclass
class Rate:
    """Events out of trials; halves both past ``cap`` trials, so old data fades."""

    hits: float = 0.0
    trials: float = 0.0

    def add(self, hits: float, trials: float, cap: float = 500.0) -> None:
        self.hits += hits
        self.trials += trials
        while self.trials > cap:
            self.hits *= 0.5
            self.trials *= 0.5

    def shrunk(self, prior: float, weight: float, floor: float) -> float:
        """The rate pulled toward ``prior`` by ``weight`` pseudo-trials, at least ``floor``."""
        return max(floor, (self.hits + weight * prior) / (self.trials + weight))


@dataclass
class Moments:
    """Mean and variance of a real signal: exact while a reference is learnt (:meth:`merge`),
    then exponentially weighted while in control (:meth:`follow`)."""

    n: int = 0
    mean: float = 0.0
    var: float = 0.0

    def merge(self, values: np.ndarray[Any, Any]) -> None:
        """Add ``values`` exactly (Chan et al.'s parallel update)."""
        if len(values):
            self.merge_stats(len(values), float(values.mean()), float(values.var()))

    def merge_stats(self, m: int, mean_b: float, var_b: float) -> None:
        """:meth:`merge` of ``m`` values given by their mean and (population) variance."""
        total = self.n + m
        delta = mean_b - self.mean
        self.var = (self.n * self.var + m * var_b + delta * delta * self.n * m / total) / total
        self.mean += delta * m / total
        self.n = total

    def follow_stats(self, m: int, mean_b: float, var_b: float, adapt: float) -> None:
        """Move toward ``m`` values (given by their mean and population variance) as ``m``
        steps of weight ``adapt`` would."""
        w = 1.0 - (1.0 - adapt) ** m
        delta = mean_b - self.mean
        self.mean += w * delta
        self.var = (1 - w) * (self.var + w * delta * delta) + w * var_b
        self.n += m

    def sd(self, floor: float) -> float:
        return max(float(np.sqrt(self.var)), floor)
