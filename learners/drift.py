"""Drift scoring per ``(node, intent)``: several signals, a state machine, one alarm per shift.

Each intent of each node watches three signals over the turns predicted as that intent:

``low_confidence``  share of its turns served below the confidence threshold (an emerging
                    intent that the model maps onto an old one shows up here first);
``error``           share of its user feedback saying the prediction was wrong;
``distance``        cosine distance of its turns' embeddings to the intent's centroid,
                    standardised by the reference spread.

Every signal feeds a one-sided CUSUM against the intent's *reference*, which is learnt from
its first ``min_turns`` turns, shrunk toward the node's pooled rates (so an intent with few
turns gets a sensible reference), and kept up to date while the intent is in control. The
score of a signal is its CUSUM over its decision level; the intent's score is the largest,
in [0, 1]. States, with hysteresis so one shift raises one alarm::

    stable --score>=warn--> warning --score>=1--> drifting  (the alarm)
    warning --score<warn/2--> stable
    drifting --recover_turns calm turns--> recovering --recover_turns more--> stable
    recovering --score>=1--> drifting (a relapse: the new adapter did not fix it)

After an alarm the CUSUMs restart, so "calm" means the signals are back to the reference.
Back in stable, the reference is learnt anew (the model serving it has changed).

>>> import numpy as np
>>> m = DriftMonitor(DriftConfig(min_turns=20))
>>> rng = np.random.default_rng(0)
>>> centre = np.eye(8)[0]
>>> def emb(spread):
...     v = centre + spread * rng.normal(size=8)
...     return v / np.linalg.norm(v)
>>> [m.observe_turn("n1", "track", 0.9, emb(0.1), now=i) for i in range(60)][-1]
[]
>>> alarms = [t for i in range(60) for t in m.observe_turn("n1", "track", 0.3, emb(1.0), 60 + i)]
>>> [t.new.value for t in alarms], alarms[0].reason
(['drifting'], 'embedding distance +2.3 sd')
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

import numpy as np


class DriftState(StrEnum):
    STABLE = "stable"
    WARNING = "warning"
    DRIFTING = "drifting"
    RECOVERING = "recovering"


@dataclass(frozen=True)
class DriftConfig:
    min_turns: int = 30
    """Turns an intent needs before its reference is set (and it can alarm)."""
    low_confidence: float = 0.5
    """A turn below this confidence counts as low-confidence."""
    threshold: float = 10.0
    """CUSUM decision level of the rate signals (higher: fewer false alarms, later alarms)."""
    distance_threshold: float = 10.0
    """CUSUM decision level of the distance signal (in standard deviations)."""
    warn_fraction: float = 0.5
    """Score from which an intent is in warning."""
    rate_shift: float = 0.3
    """Smallest rise of a rate (low-confidence, error) worth an alarm."""
    distance_shift: float = 2.0
    """Smallest rise of the mean distance worth an alarm, in reference standard deviations."""
    prior_weight: float = 20.0
    """Pseudo-count pulling an intent's reference rates toward its node's pooled rates."""
    min_rate: float = 0.03
    """Floor of reference rates (a rate of exactly 0 would make any error an alarm)."""
    min_distance_sd: float = 0.02
    """Floor of the reference spread of distances."""
    recover_turns: int = 20
    """Calm turns needed for drifting -> recovering, and again for recovering -> stable."""
    adapt: float = 0.01
    """Weight of an in-control turn in the slowly moving reference (centroid, distances)."""


@dataclass(frozen=True)
class DriftTransition:
    node_id: str
    intent: str
    old: DriftState
    new: DriftState
    score: float
    signals: dict[str, float]
    reason: str
    turns: int
    at: float


@dataclass(frozen=True)
class DriftStatus:
    node_id: str
    intent: str
    state: DriftState
    score: float
    signals: dict[str, float]
    turns: int


class BernoulliCusum:
    """One-sided CUSUM for a rise of a 0/1 rate from ``p0`` to ``p0 + shift``.

    >>> c = BernoulliCusum(shift=0.3)
    >>> [round(c.update(x, p0=0.1), 2) for x in (0, 1, 1, 1)]
    [0.0, 1.39, 2.77, 4.16]
    """

    def __init__(self, shift: float) -> None:
        self.shift = shift
        self.value = 0.0

    def update(self, x: bool, p0: float) -> float:
        p1 = min(0.99, p0 + self.shift)
        step = math.log(p1 / p0) if x else math.log((1 - p1) / (1 - p0))
        self.value = max(0.0, self.value + step)
        return self.value


class GaussianCusum:
    """One-sided CUSUM for a rise of the mean of standardised values by ``shift``.

    >>> c = GaussianCusum(shift=1.0)
    >>> [c.update(z) for z in (0.0, 2.5, 2.5)]
    [0.0, 2.0, 4.0]
    """

    def __init__(self, shift: float) -> None:
        self.k = shift / 2
        self.value = 0.0

    def update(self, z: float) -> float:
        self.value = max(0.0, self.value + z - self.k)
        return self.value


@dataclass
class _Rate:
    """Events out of trials, with decay so an old reference fades (bounded memory)."""

    hits: float = 0.0
    trials: float = 0.0

    def add(self, hit: bool, cap: float = 500.0) -> None:
        self.hits += float(hit)
        self.trials += 1.0
        if self.trials > cap:
            self.hits *= 0.5
            self.trials *= 0.5

    def shrunk(self, prior: float, weight: float, floor: float) -> float:
        return max(floor, (self.hits + weight * prior) / (self.trials + weight))


@dataclass
class _NodeStats:
    """Pooled in-control rates of a node: the prior of its intents' references."""

    low_conf: _Rate = field(default_factory=lambda: _Rate(2.0, 20.0))
    error: _Rate = field(default_factory=lambda: _Rate(2.0, 20.0))


@dataclass
class _Intent:
    node_id: str
    intent: str
    config: DriftConfig
    state: DriftState = DriftState.STABLE
    turns: int = 0
    calm: int = 0
    adapter: int | None = None
    ref_version: int | None = None
    ref_embeddings: list[np.ndarray[Any, Any]] = field(default_factory=list)
    centroid: np.ndarray[Any, Any] | None = None
    dist_mean: float = 0.0
    dist_var: float = 0.0
    low_conf: _Rate = field(default_factory=_Rate)
    error: _Rate = field(default_factory=_Rate)
    recent_low_conf: float = 0.0
    recent_error: float = 0.0
    recent_distance: float = 0.0

    def __post_init__(self) -> None:
        c = self.config
        self.cusum_low_conf = BernoulliCusum(c.rate_shift)
        self.cusum_error = BernoulliCusum(c.rate_shift)
        self.cusum_distance = GaussianCusum(c.distance_shift)

    @property
    def ready(self) -> bool:
        """The rate references have their first ``min_turns`` turns."""
        return self.turns > self.config.min_turns

    def score(self) -> float:
        c = self.config
        return min(
            1.0,
            max(
                self.cusum_low_conf.value / c.threshold,
                self.cusum_error.value / c.threshold,
                self.cusum_distance.value / c.distance_threshold,
            ),
        )

    def signals(self) -> dict[str, float]:
        c = self.config
        return {
            "low_confidence": round(min(1.0, self.cusum_low_conf.value / c.threshold), 4),
            "error": round(min(1.0, self.cusum_error.value / c.threshold), 4),
            "distance": round(min(1.0, self.cusum_distance.value / c.distance_threshold), 4),
            "low_confidence_rate": round(self.recent_low_conf, 4),
            "error_rate": round(self.recent_error, 4),
            "distance_z": round(self.recent_distance, 4),
        }

    def reset_cusums(self) -> None:
        self.cusum_low_conf.value = 0.0
        self.cusum_error.value = 0.0
        self.cusum_distance.value = 0.0

    def relearn_distance(self) -> None:
        self.centroid = None
        self.ref_embeddings = []
        self.cusum_distance.value = 0.0
        self.recent_distance = 0.0

    def relearn_reference(self) -> None:
        self.relearn_distance()
        self.reset_cusums()


class DriftMonitor:
    """Drift state of every ``(node, intent)`` seen; feed it turns, feedback and adapters."""

    def __init__(self, config: DriftConfig = DriftConfig()) -> None:
        self.config = config
        self._intents: dict[tuple[str, str], _Intent] = {}
        self._nodes: dict[str, _NodeStats] = {}

    def _get(self, node_id: str, intent: str) -> _Intent:
        key = (node_id, intent)
        item = self._intents.get(key)
        if item is None:
            item = self._intents[key] = _Intent(node_id, intent, self.config)
        return item

    # --- inputs ---------------------------------------------------------------------------
    def observe_turn(
        self,
        node_id: str,
        intent: str,
        confidence: float,
        embedding: np.ndarray[Any, Any],
        now: float,
        version: int = 0,
    ) -> list[DriftTransition]:
        """A turn predicted as ``intent`` by adapter ``version`` of ``node_id``."""
        c = self.config
        it = self._get(node_id, intent)
        node = self._nodes.setdefault(node_id, _NodeStats())
        it.turns += 1
        low = confidence < c.low_confidence
        embedding = np.asarray(embedding, dtype=np.float32)
        if it.ref_version != version:
            # Embeddings of another adapter version live in another space: the distance
            # reference is learnt again from this version's turns (rates stay comparable).
            it.ref_version = version
            it.relearn_distance()
        in_distance_reference = it.centroid is None
        if in_distance_reference:
            it.ref_embeddings.append(embedding)
            if len(it.ref_embeddings) >= c.min_turns:
                self._freeze_reference(it)
        if not it.ready:
            it.low_conf.add(low)
            node.low_conf.add(low)
            return []
        prior = node.low_conf.shrunk(0.1, 0, c.min_rate)
        it.cusum_low_conf.update(low, it.low_conf.shrunk(prior, c.prior_weight, c.min_rate))
        it.recent_low_conf += 0.1 * (float(low) - it.recent_low_conf)
        distance = 0.0
        if not in_distance_reference and it.centroid is not None:
            distance = 1.0 - float(np.dot(embedding, it.centroid))
            z = (distance - it.dist_mean) / max(math.sqrt(it.dist_var), c.min_distance_sd)
            it.cusum_distance.update(z)
            it.recent_distance += 0.1 * (z - it.recent_distance)
        if it.state == DriftState.STABLE and it.score() < c.warn_fraction:  # in control
            it.low_conf.add(low)
            node.low_conf.add(low)
            if not in_distance_reference:
                self._adapt_reference(it, embedding, distance)
        return self._step(it, now)

    def observe_feedback(
        self, node_id: str, intent: str, wrong: bool, now: float
    ) -> list[DriftTransition]:
        """User feedback on a turn predicted as ``intent`` (``wrong``: it was not)."""
        c = self.config
        it = self._get(node_id, intent)
        node = self._nodes.setdefault(node_id, _NodeStats())
        if not it.ready:
            it.error.add(wrong)
            node.error.add(wrong)
            return []
        prior = node.error.shrunk(0.1, 0, c.min_rate)
        p0 = it.error.shrunk(prior, c.prior_weight, c.min_rate)
        it.cusum_error.update(wrong, p0)
        it.recent_error += 0.1 * (float(wrong) - it.recent_error)
        if it.state == DriftState.STABLE and it.score() < c.warn_fraction:
            it.error.add(wrong)
            node.error.add(wrong)
        return self._step(it, now, turn=False)

    def adapter_published(self, node_id: str, version: int, now: float) -> list[DriftTransition]:
        """A new adapter serves ``node_id``: drifting intents start measuring it afresh."""
        for (n, _), it in self._intents.items():
            if n == node_id:
                it.adapter = version
                if it.state in (DriftState.DRIFTING, DriftState.RECOVERING):
                    it.reset_cusums()
                    it.calm = 0
        return []

    # --- outputs --------------------------------------------------------------------------
    def snapshot(self) -> list[DriftStatus]:
        return [
            DriftStatus(it.node_id, it.intent, it.state, it.score(), it.signals(), it.turns)
            for it in self._intents.values()
        ]

    def state(self, node_id: str, intent: str) -> DriftState:
        it = self._intents.get((node_id, intent))
        return it.state if it else DriftState.STABLE

    # --- internals ------------------------------------------------------------------------
    def _freeze_reference(self, it: _Intent) -> None:
        ref = np.stack(it.ref_embeddings)
        total = ref.sum(0)
        it.centroid = total / max(float(np.linalg.norm(total)), 1e-9)
        # Leave-one-out: a turn's distance to a centroid it helped make is biased low.
        others = total[None, :] - ref
        others /= np.maximum(np.linalg.norm(others, axis=1, keepdims=True), 1e-9)
        distances = 1.0 - (ref * others).sum(1)
        it.dist_mean = float(distances.mean())
        it.dist_var = float(distances.var())
        it.ref_embeddings = []

    def _adapt_reference(self, it: _Intent, embedding: np.ndarray[Any, Any], d: float) -> None:
        a = self.config.adapt
        assert it.centroid is not None
        centroid = (1 - a) * it.centroid + a * np.asarray(embedding, dtype=np.float32)
        it.centroid = centroid / max(float(np.linalg.norm(centroid)), 1e-9)
        delta = d - it.dist_mean
        it.dist_mean += a * delta
        it.dist_var = (1 - a) * (it.dist_var + a * delta * delta)

    def _step(self, it: _Intent, now: float, turn: bool = True) -> list[DriftTransition]:
        score = it.score()
        old = it.state
        new = self._next_state(it, score, turn)
        signals = it.signals()
        reason = self._reason(it, old, new) if new != old else ""
        if score >= 1.0:
            it.reset_cusums()  # from the alarm on, the CUSUMs measure whether the drift goes on
            it.calm = 0
        if new == old:
            return []
        it.state = new
        if new == DriftState.RECOVERING:
            it.calm = 0
        elif old == DriftState.RECOVERING and new == DriftState.STABLE:
            it.relearn_reference()
        return [
            DriftTransition(it.node_id, it.intent, old, new, score, signals, reason, it.turns, now)
        ]

    def _next_state(self, it: _Intent, score: float, turn: bool) -> DriftState:
        c = self.config
        old = it.state
        if score >= 1.0:
            return DriftState.DRIFTING
        if old == DriftState.STABLE:
            return DriftState.WARNING if score >= c.warn_fraction else old
        if old == DriftState.WARNING:
            return DriftState.STABLE if score < c.warn_fraction / 2 else old
        if score >= c.warn_fraction:
            it.calm = 0
        elif turn:
            it.calm += 1
        if it.calm < c.recover_turns:
            return old
        return DriftState.RECOVERING if old == DriftState.DRIFTING else DriftState.STABLE

    def _reason(self, it: _Intent, old: DriftState, new: DriftState) -> str:
        if new in (DriftState.DRIFTING, DriftState.WARNING):
            parts = {
                "low_confidence": f"low-confidence share {it.recent_low_conf:.2f}",
                "error": f"feedback error rate {it.recent_error:.2f}",
                "distance": f"embedding distance {it.recent_distance:+.1f} sd",
            }
            sig = it.signals()
            ranked = sorted(parts, key=lambda k: -sig[k])
            lead = [parts[k] for k in ranked if sig[k] >= self.config.warn_fraction] or [
                parts[ranked[0]]
            ]
            prefix = "relapse after adapter: " if old == DriftState.RECOVERING else ""
            return prefix + "; ".join(lead)
        if new == DriftState.RECOVERING:
            via = f" with adapter v{it.adapter}" if it.adapter is not None else ""
            return f"signals back to reference for {self.config.recover_turns} turns{via}"
        return "signals back to reference; reference relearnt"
