"""One-sided CUSUM tests, vectorised over a batch of observations.

A CUSUM ``S_j = max(0, S_{j-1} + x_j)`` accumulates the log-likelihood ratio of "shifted"
against "in control"; it is the quickest detector of a shift of known minimal size for a
given false-alarm rate (Page, 1954), and its whole state is one float, so it checkpoints
into a table and updates a batch at a time with numpy.

>>> path = cusum_path(0.0, np.array([1.0, -3.0, 2.0, 2.0]))
>>> path.tolist()
[1.0, 0.0, 2.0, 4.0]
>>> steps = bernoulli_steps(np.array([0, 1, 1, 1], dtype=bool), p0=0.1, shift=0.3)
>>> [round(float(v), 2) for v in cusum_path(0.0, steps)]
[0.0, 1.39, 2.77, 4.16]
>>> gaussian_steps(np.array([0.0, 2.5]), shift=1.0).tolist()
[-0.5, 2.0]

Many CUSUMs at once (one per intent, several signals each), over their rows of one batch:

>>> steps = np.array([[1.0], [-3.0], [2.0], [-1.0], [5.0]])
>>> segmented_cusum_paths(np.array([[0.0], [0.5]]), steps, np.array([0, 3]))[:, 0].tolist()
[1.0, 0.0, 2.0, 0.0, 5.0]
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

Array = np.ndarray[Any, np.dtype[np.float64]]


def cusum_path(start: float, steps: Array) -> Array:
    """CUSUM values after each of ``steps``, starting from ``start`` (>= 0).

    With ``C_j = start + x_1 + ... + x_j``, ``S_j = C_j - min(0, min_{i<=j} C_i)``: the
    recursion without a Python loop.
    """
    if len(steps) == 0:
        return np.zeros(0)
    c = start + np.cumsum(steps)
    return c - np.minimum(np.minimum.accumulate(c), 0.0)


def segmented_cusum_paths(start: Array, steps: Array, seg_starts: Array) -> Array:
    """:func:`cusum_path` of many CUSUMs in one pass: rows ``seg_starts[g]`` up to the next
    start belong to segment ``g``, which starts from ``start[g]``; columns are independent.

    ``steps`` is ``rows x signals`` and ``start`` is ``segments x signals``. The segments
    are laid out as the rows of a zero-padded ``segments x longest x signals`` block, so
    each value is computed by exactly the operations :func:`cusum_path` would use on its
    segment alone: same floats, so the same decisions at a decision level.
    """
    n = len(steps)
    if n == 0:
        return np.zeros_like(steps)
    sizes = np.diff(np.append(seg_starts, n))
    row = np.repeat(np.arange(len(seg_starts)), sizes)
    col = np.arange(n) - np.repeat(seg_starts, sizes)
    padded = np.zeros((len(seg_starts), int(sizes.max()), steps.shape[1]))
    padded[row, col] = steps
    c = start[:, None, :] + np.cumsum(padded, axis=1)
    paths = c - np.minimum(np.minimum.accumulate(c, axis=1), 0.0)
    return np.asarray(paths[row, col])


def bernoulli_log_ratios(p0: float, shift: float) -> tuple[float, float]:
    """Log-likelihood ratio of an event and of a non-event, rate ``p0 + shift`` vs ``p0``."""
    p1 = min(0.99, p0 + shift)
    return math.log(p1 / p0), math.log((1 - p1) / (1 - p0))


def bernoulli_steps(hits: np.ndarray[Any, Any], p0: float, shift: float) -> Array:
    """CUSUM steps for 0/1 observations testing a rise of their rate from ``p0`` by ``shift``."""
    up, down = bernoulli_log_ratios(p0, shift)
    return np.where(hits, up, down)


def binomial_step(hits: float, trials: float, p0: float, p1: float) -> float:
    """One CUSUM step for ``hits`` out of ``trials`` testing a rate ``p1`` against ``p0``."""
    p1 = min(0.99, max(p1, p0 * 1.0001))
    return hits * math.log(p1 / p0) + (trials - hits) * math.log((1 - p1) / (1 - p0))


def gaussian_steps(z: Array, shift: float) -> Array:
    """CUSUM steps for standardised values testing a rise of their mean by ``shift``."""
    return np.asarray(z, dtype=np.float64) - shift / 2
