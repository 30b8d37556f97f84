"""Node versions in, one fleet prior out: the arithmetic of fleet learning, nothing else.

**Heads** are aligned by intent name over the union of the contributors' intents. Each
intent's row (weights and bias) is the average of the rows of the nodes that know it,
weighted by how many labelled examples of it each node learnt from; a node that never saw
an intent has no say in its row. Every node fits its head the same way on the same frozen
encoder (a multinomial logistic regression, :mod:`learners.head_fit`), so rows of
different nodes are on one scale. A softmax head is unchanged by a shift of all its
biases, so each node's biases are centred first: the shift is then the same everywhere.

**LoRA** is averaged as the update it makes, not factor by factor. A node's update of a
target module is ``dW_i = B_i @ A_i`` (scaling folded into ``B``); the mean of the ``A``s
times the mean of the ``B``s is not the mean of the products (the cross terms ``B_i A_j``
are updates no node made; FedIT's plain averaging has this error, which FLoRA and
FedEx-LoRA set out to remove). So the prior's update is the weighted mean of the products,
``sum_i w_i dW_i / sum_i w_i``, brought back to rank ``r`` by a truncated SVD: the best
rank-``r`` approximation (Eckart-Young), exact whenever the mean has rank ``r`` or less
(identical adapters, or one). Only nodes that consolidated have a say (a head-only node's
update is not a vote for "no change"), weighted by their labelled examples.

>>> import numpy as np
>>> one = Contribution("n1", 2, ["a", "b"], np.eye(2, 3), np.array([1.0, -1.0]), {"a": 3, "b": 1})
>>> two = Contribution("n2", 5, ["b", "c"], np.eye(2, 3), np.zeros(2), {"b": 3, "c": 4})
>>> prior = aggregate([one, two])
>>> prior.labels, prior.counts, prior.contributors
(['a', 'b', 'c'], {'a': 3, 'b': 4, 'c': 4}, {'n1': 2, 'n2': 5})
>>> prior.weight[1].round(2).tolist()  # b: n1's row (weight 1) and n2's (weight 3)
[0.75, 0.25, 0.0]
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from learners.fleet.prior import FleetPrior
from learners.fleet.privacy import Privacy

Array = np.ndarray[Any, Any]
Factors = dict[str, tuple[Array, Array]]
"""Per target module, ``(A, B)`` with the LoRA scaling folded into ``B``."""


@dataclass(frozen=True)
class Contribution:
    """One node version as the fleet sees it: weights and counts, no text."""

    node_id: str
    version: int
    labels: list[str]
    weight: Array
    """The head as logit weights, one row per label."""
    bias: Array
    counts: dict[str, int]
    """Labelled examples behind each intent's row (an intent missing here counts 1)."""
    lora: Factors | None = None

    @property
    def examples(self) -> int:
        return sum(max(1, self.counts.get(label, 1)) for label in self.labels)


def aggregate(
    contributions: Sequence[Contribution],
    rank: int = 8,
    privacy: Privacy | None = None,
    seed: int = 0,
    excluded: dict[str, str] | None = None,
) -> FleetPrior:
    """The fleet prior of ``contributions`` (at least one); LoRA merged to ``rank``."""
    if not contributions:
        raise ValueError("a fleet prior needs at least one contribution")
    rng = np.random.default_rng(seed)
    privacy = privacy or Privacy()
    heads = [privacy.clipped(_centred(c)) for c in contributions]
    labels = list(dict.fromkeys(label for c in contributions for label in c.labels))
    dim = contributions[0].weight.shape[1]
    weight = np.zeros((len(labels), dim))
    bias = np.zeros(len(labels))
    counts: dict[str, int] = {}
    shares = []
    for row, label in enumerate(labels):
        votes = [
            (max(1, c.counts.get(label, 1)), head[0][i], head[1][i])
            for c, head in zip(contributions, heads, strict=True)
            if label in c.labels
            for i in [c.labels.index(label)]
        ]
        total = sum(n for n, _, _ in votes)
        weight[row] = sum(n * w for n, w, _ in votes) / total
        bias[row] = sum(n * b for n, _, b in votes) / total
        counts[label] = total
        shares.append(max(n for n, _, _ in votes) / total)
    weight, bias = privacy.noised((weight, bias), max(shares), rng)
    adapted = [(c, c.lora) for c in contributions if c.lora]
    lora = merge_lora(
        [privacy.clipped_factors(factors) for _, factors in adapted],
        [c.examples for c, _ in adapted],
        rank,
        privacy,
        rng,
    )
    return FleetPrior(
        labels=labels,
        weight=weight.astype(np.float32),
        bias=bias.astype(np.float32),
        counts=counts,
        contributors={c.node_id: c.version for c in contributions},
        lora=lora,
        excluded=dict(excluded or {}),
    )


def merge_lora(
    adapters: Sequence[Factors],
    weights: Sequence[float],
    rank: int,
    privacy: Privacy | None = None,
    rng: np.random.Generator | None = None,
) -> Factors | None:
    """The weighted mean of the adapters' updates, per module, as rank-``rank`` factors
    (None without adapters). With ``privacy``, noise is added to the mean before the
    factorisation (post-processing keeps the noise's guarantee)."""
    if not adapters:
        return None
    if len(adapters) != len(weights) or min(weights) <= 0:
        raise ValueError("one positive weight per adapter")
    total = float(sum(weights))
    share = max(weights) / total
    out: Factors = {}
    for name in sorted(adapters[0]):
        mean = sum(w * (ad[name][1] @ ad[name][0]) for ad, w in zip(adapters, weights, strict=True))
        mean = np.asarray(mean, np.float64) / total
        if privacy is not None and rng is not None:
            (mean,) = privacy.noised((mean,), share, rng)
        out[name] = _factor(mean, rank)
    return out


def update_of(factors: Factors, name: str) -> Array:
    """The update ``B @ A`` the factors make to module ``name``."""
    a, b = factors[name]
    return np.asarray(b, np.float64) @ np.asarray(a, np.float64)


def _factor(update: Array, rank: int) -> tuple[Array, Array]:
    """``(A, B)`` of shapes ``(rank, in)`` and ``(out, rank)`` with ``B @ A`` the best
    rank-``rank`` approximation of ``update``; the singular values are split evenly."""
    u, s, vt = np.linalg.svd(update, full_matrices=False)
    k = min(rank, len(s))
    root = np.sqrt(s[:k])
    a = np.zeros((rank, update.shape[1]))
    b = np.zeros((update.shape[0], rank))
    a[:k] = root[:, None] * vt[:k]
    b[:, :k] = u[:, :k] * root[None, :]
    return a.astype(np.float32), b.astype(np.float32)


def _centred(c: Contribution) -> tuple[Array, Array]:
    bias = np.asarray(c.bias, np.float64)
    return np.asarray(c.weight, np.float64), bias - bias.mean()
