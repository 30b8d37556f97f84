"""Numpy scoring of a batch of turns against intents' references.

Two paths, both pure (they read intent state and return what to change):

:func:`score_in_control`, the common case: the intents that stay in control through the
batch, all scored together, each numpy pass covering every one of them (scored one intent
at a time, the cost was a few dozen small numpy calls per intent and batch).

:func:`score_turns`, for one intent whose turns may change its state: every signal's CUSUM
path and the score after each turn, which the monitor then walks turn by turn through the
state machine from the first turn that may change it.

Apart from the monitor so that the vectorised arithmetic (where a speed-up is tempting and
a bug is silent) sits in one place. Its contract: the all-intents path reaches the same
states, at the same turns, with the same state as the turn-by-turn one
(``tests/unit/test_drift.py``), and a batch scores like its turns one by one.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import cast

import numpy as np

from learners.drift.config import TURN_SIGNALS, DriftConfig, DriftState, Vector, decision_levels
from learners.drift.cusum import (
    bernoulli_log_ratios,
    cusum_path,
    gaussian_steps,
    segmented_cusum_paths,
)
from learners.drift.state import IntentRecord


@dataclass
class Calm:
    """Sufficient statistics of one intent's in-control turns of a batch."""

    n: int
    low: float  # low-confidence turns among them
    conf: tuple[float, float]  # mean and population variance of their confidences
    dist: tuple[float, float]  # ... and of their distances to the centroid
    emb_mean: Vector


@dataclass
class InControl:
    """What a batch does to an intent whose turns all stay in control."""

    turns: int
    cusum: dict[str, float]  # the turn-level signals' CUSUMs after the batch
    recent: tuple[float, float, float]  # means of low-confidence, confidence z, distance z
    calm: Calm | None  # the turns that move the reference (None: none of them)


def bulk_ready(it: IntentRecord, version: int, dim: int, config: DriftConfig) -> bool:
    """Stable, with a settled reference in this embedding space: may take the fast path."""
    return (
        it.state == DriftState.STABLE
        and it.centroid is not None
        and it.version == version
        and len(it.centroid) == dim
        and it.turns >= config.min_turns
    )


def score_in_control(
    members: dict[str, IntentRecord],
    groups: dict[str, list[int]],
    conf: Vector,
    emb: Vector,
    version: int,
    prior: float,
    config: DriftConfig,
) -> dict[str, InControl]:
    """The batch's effect on every intent whose turns all stay in control, computed for
    all of them together.

    This is the common case (most intents are stable most of the time), and its cost
    was per intent: a few dozen small numpy calls each. Here every intent's rows are a
    segment of one array and each step is one numpy pass over the whole batch. An
    intent that is not :func:`bulk_ready`, or that reaches warning inside the batch,
    is left out (untouched) for the monitor's turn-by-turn path (:func:`score_turns`).
    """
    c = config
    names = [n for n in groups if bulk_ready(members[n], version, emb.shape[1], c)]
    if not names:
        return {}
    its = [members[n] for n in names]
    sizes = np.array([len(groups[n]) for n in names])
    starts = np.concatenate([[0], np.cumsum(sizes)[:-1]])
    seg = np.repeat(np.arange(len(names)), sizes)
    rows = np.concatenate([groups[n] for n in names])
    cf, e = conf[rows], emb[rows]
    low = cf < c.low_confidence
    centroids = np.stack([cast(Vector, it.centroid) for it in its])  # all set: ready
    distances = 1.0 - np.einsum("ij,ij->i", e, centroids[seg])
    d_mean = np.array([it.distance.mean for it in its])
    d_sd = np.array([it.distance.sd(c.min_sd) for it in its])
    c_mean = np.array([it.confidence.mean for it in its])
    c_sd = np.array([it.confidence.sd(c.min_sd) for it in its])
    z_dist = np.clip((distances - d_mean[seg]) / d_sd[seg], -c.z_clip, c.z_clip)
    z_conf = np.clip((c_mean[seg] - cf) / c_sd[seg], -c.z_clip, c.z_clip)
    ratios = np.array(
        [
            bernoulli_log_ratios(
                it.low_conf.shrunk(prior, c.prior_weight, c.min_rate), c.rate_shift
            )
            for it in its
        ]
    )
    steps = np.column_stack(
        [
            np.where(low, ratios[seg, 0], ratios[seg, 1]),
            gaussian_steps(z_dist, c.distance_shift),
            gaussian_steps(z_conf, c.confidence_shift),
        ]
    )
    start = np.array([[it.cusum[k] for k in TURN_SIGNALS] for it in its])
    paths = segmented_cusum_paths(start, steps, starts)
    levels = decision_levels(c)
    others = np.array([max(it.cusum["share"], it.cusum["error"]) / c.threshold for it in its])
    score = np.maximum(
        (paths / np.array([levels[k] for k in TURN_SIGNALS])).max(axis=1), others[seg]
    )
    hot = np.add.reduceat((score >= c.warn_fraction).astype(np.intp), starts) > 0
    # The control level of the turns' reference update is the one after the batch.
    after = np.array([it.turns for it in its]) + sizes
    control = np.where(after < c.settle_turns, c.warn_fraction, c.warn_fraction / 2)
    w = (score < control[seg]).astype(np.float64)

    def sums(x: Vector) -> Vector:
        return np.add.reduceat(x, starts, axis=0)

    means = np.column_stack([sums(low.astype(np.float64)), sums(z_conf), sums(z_dist)])
    means /= sizes[:, None]
    n_calm, low_calm = sums(w), sums(low * w)
    c_sum, c_sq = sums(cf * w), sums(cf * cf * w)
    d_sum, d_sq = sums(distances * w), sums(distances * distances * w)
    e_sum = sums(e * w[:, None])
    ends = paths[starts + sizes - 1]
    out: dict[str, InControl] = {}
    for g, name in enumerate(names):
        if hot[g]:
            continue
        n = int(n_calm[g])
        calm = None
        if n:
            cm, dm = c_sum[g] / n, d_sum[g] / n
            calm = Calm(
                n=n,
                low=float(low_calm[g]),
                conf=(float(cm), max(0.0, float(c_sq[g] / n - cm * cm))),
                dist=(float(dm), max(0.0, float(d_sq[g] / n - dm * dm))),
                emb_mean=e_sum[g] / n,
            )
        out[name] = InControl(
            turns=int(sizes[g]),
            cusum=dict(zip(TURN_SIGNALS, ends[g].tolist(), strict=True)),
            recent=(float(means[g, 0]), float(means[g, 1]), float(means[g, 2])),
            calm=calm,
        )
    return out


@dataclass
class TurnScores:
    """One intent's turns scored against its reference, turn by turn."""

    distances: Vector  # cosine distance of each turn to the centroid
    z_dist: Vector  # ... standardised and clipped
    z_conf: Vector  # fall of each confidence, standardised and clipped
    steps: dict[str, Vector]  # each turn-level CUSUM signal's increments
    paths: dict[str, Vector]  # ... and its CUSUM after each turn, from the intent's
    score: Vector  # the intent's score after each turn (share and error as they stand)


def score_turns(
    it: IntentRecord,
    low: Vector,
    conf: Vector,
    emb: Vector,
    prior: float,
    config: DriftConfig,
    fixed: dict[str, Vector] | None = None,
) -> TurnScores:
    """Score turns of ``it`` (with a settled centroid): ``low`` flags the low-confidence ones,
    ``prior`` is the node's pooled low-confidence rate. ``fixed`` gives the path of a
    signal watched by a river detector (:mod:`.detectors`): it has no CUSUM steps."""
    c = config
    up, down = bernoulli_log_ratios(
        it.low_conf.shrunk(prior, c.prior_weight, c.min_rate), c.rate_shift
    )
    steps = {"low_confidence": np.where(low, up, down)}
    assert it.centroid is not None
    distances = 1.0 - emb @ it.centroid
    # Clipped, so one outlier turn cannot raise an alarm on its own (a robust CUSUM).
    z_dist = np.clip((distances - it.distance.mean) / it.distance.sd(c.min_sd), -c.z_clip, c.z_clip)
    z_conf = np.clip((it.confidence.mean - conf) / it.confidence.sd(c.min_sd), -c.z_clip, c.z_clip)
    steps["distance"] = gaussian_steps(z_dist, c.distance_shift)
    steps["confidence"] = gaussian_steps(z_conf, c.confidence_shift)
    levels = decision_levels(c)
    for k in fixed or {}:
        del steps[k]
    paths = {k: cusum_path(it.cusum[k], s) for k, s in steps.items()}
    paths.update(fixed or {})
    others = max(it.cusum["share"] / c.threshold, it.cusum["error"] / c.threshold)
    score = np.maximum.reduce([paths[k] / levels[k] for k in paths] + [np.full(len(conf), others)])
    return TurnScores(distances, z_dist, z_conf, steps, paths, score)
