"""Drift scoring per ``(node, intent)``: five signals, a state machine, one alarm per shift.

Each intent of each node watches, over the turns predicted as that intent:

``low_confidence``  share of its turns served below the confidence threshold (an emerging
                    intent that the model maps onto an old one shows up here first);
``confidence``      mean confidence, standardised by the reference spread (a fall);
``distance``        cosine distance of its turns' embeddings to the intent's centroid,
                    standardised by the reference spread (out-of-distribution turns);
``share``           its share of the node's traffic (an emerging intent mapped onto it);
``error``           share of its user feedback saying the prediction was wrong.

Every signal feeds a one-sided CUSUM (:mod:`learners.drift.cusum`) against the intent's
*reference*. Rates are learnt from the intent's first ``min_turns`` turns, shrunk toward
the node's pooled rates so an intent with few turns gets a sensible reference; the
centroid and the confidence and distance moments are learnt again for every adapter
version (LoRA moves the embedding space). While an intent is in control its reference
keeps following it slowly. A signal's score is its CUSUM over its decision level; the
intent's score, in [0, 1], is the largest, and the reason names the signals behind it.
States, with hysteresis so one shift raises one alarm::

    stable --score>=warn--> warning --score>=1--> drifting  (the alarm)
    warning --score<warn/2--> stable
    drifting --calm turns (after a new adapter)--> recovering --more calm turns--> stable
    recovering --score>=1--> drifting (a relapse: the new adapter did not fix it)

After an alarm the CUSUMs restart at the warning level, so a shift that goes on keeps the
intent drifting without new alarms, and "calm" means the signals are back to the reference.
Back in stable, the reference is learnt anew (the model serving it has changed).

Turns come in batches (an edge node's micro-batch, or several pooled): the intents that stay
in control through the batch are scored all together, each numpy pass covering every one
of them; an intent whose turns may change its state is scored with numpy up to the first
such turn, and stepped one turn at a time from there. The whole state is plain data
(:meth:`DriftMonitor.export_node`), so a stream worker checkpoints it and a restarted one
resumes.

>>> import numpy as np
>>> m = DriftMonitor(DriftConfig(min_turns=20))
>>> rng = np.random.default_rng(0)
>>> centre = np.eye(8)[0]
>>> def emb(spread, n):
...     v = centre + spread * rng.normal(size=(n, 8))
...     return v / np.linalg.norm(v, axis=1, keepdims=True)
>>> confidence = lambda mean, n: np.clip(rng.normal(mean, 0.05, n), 0, 1)
>>> m.observe_turns("n1", ["track"] * 60, confidence(0.9, 60), emb(0.1, 60), now=0.0)
[]
>>> alarms = m.observe_turns("n1", ["track"] * 60, confidence(0.6, 60), emb(0.3, 60), now=1.0)
>>> [(t.new.value, t.intent, t.turns) for t in alarms]
[('warning', 'track', 63), ('drifting', 'track', 66)]
>>> alarms[-1].reason
'mean confidence -1.6 sd; embedding distance +1.8 sd'
"""

from __future__ import annotations

import base64
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from enum import StrEnum
from typing import Any, cast

import numpy as np

from learners.drift.cusum import (
    bernoulli_log_ratios,
    binomial_step,
    cusum_path,
    gaussian_steps,
    segmented_cusum_paths,
)
from learners.drift.stats import Moments, Rate

SIGNALS = ("low_confidence", "confidence", "distance", "share", "error")
TURN_SIGNALS = ("low_confidence", "distance", "confidence")  # scored per turn
Vector = np.ndarray[Any, Any]


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
    threshold: float = 14.0
    """CUSUM decision level of the rate signals (log-likelihood ratio; higher: fewer false
    alarms, later alarms)."""
    gaussian_threshold: float = 20.0
    """CUSUM decision level of the confidence and distance signals (in standard deviations).
    With ``*_shift`` at 1 sd: a 1-sd shift alarms after about 40 of the intent's turns, a
    2-sd one after about 13 (measured by ``ecc bench drift``: 14 raised stationary false
    alarms to 15 per 120k turns on generated traffic; 20 keeps them at 1)."""
    warn_fraction: float = 0.5
    """Score from which an intent is in warning."""
    rate_shift: float = 0.3
    """Smallest rise of a rate (low-confidence, error) worth an alarm."""
    distance_shift: float = 1.0
    """Smallest rise of the mean distance worth an alarm, in reference standard deviations
    (2 missed most typo and abbreviation shifts of one intent)."""
    confidence_shift: float = 1.0
    """Smallest fall of the mean confidence worth an alarm, in reference standard deviations."""
    share_ratio: float = 1.5
    """An intent's share of its node's traffic this many times its reference is a shift..."""
    share_shift: float = 0.05
    """...and so is a rise by this much (whichever is larger)."""
    share_min_turns: int = 1000
    """Node turns an intent's share reference is learnt over before it can alarm."""
    prior_weight: float = 20.0
    """Pseudo-count pulling an intent's reference rates toward its node's pooled rates."""
    min_rate: float = 0.03
    """Floor of reference rates (a rate of exactly 0 would make any error an alarm)."""
    min_share: float = 0.002
    """Floor of reference shares."""
    min_sd: float = 0.02
    """Floor of the reference spread of distances and confidences."""
    z_clip: float = 4.0
    """Standardised values are clipped to +-this before their CUSUM (robust to outliers)."""
    recover_turns: int = 20
    """Calm turns needed for drifting -> recovering after a new adapter, and again for
    recovering -> stable."""
    recover_unaided_turns: int = 200
    """Calm turns needed for drifting -> recovering with no new adapter (the shift ended)."""
    adapt: float = 0.003
    """Weight of an in-control turn in the slowly moving reference (centroid, moments)."""
    settle_turns: int = 300
    """An intent's first turns, over which its reference is still being settled: they move
    it exactly (not by ``adapt``) and while the score is anywhere below warning."""
    reference_memory: float = 2000.0
    """Trials a reference rate remembers (older ones fade by halves)."""


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
    since: float


def _pack(v: Vector | None) -> str | None:
    return None if v is None else base64.b64encode(np.asarray(v, "<f4").tobytes()).decode()


def _unpack(s: str | None) -> Vector | None:
    return None if s is None else np.frombuffer(base64.b64decode(s), "<f4").astype(np.float64)


@dataclass
class _Intent:
    """State of one ``(node, intent)``: plain numbers and two vectors."""

    state: DriftState = DriftState.STABLE
    since: float = 0.0
    turns: int = 0
    calm: int = 0
    alarms: int = 0
    adapter: int | None = None
    adapter_since_alarm: bool = False
    version: int | None = None
    ref_sum: Vector | None = None  # embeddings summed while the centroid is learnt
    ref_n: int = 0
    centroid: Vector | None = None
    distance: Moments = field(default_factory=Moments)
    confidence: Moments = field(default_factory=Moments)
    low_conf: Rate = field(default_factory=Rate)
    error: Rate = field(default_factory=Rate)
    share: Rate = field(default_factory=Rate)
    share_from: int = 0  # node turn count when the intent was first seen
    cusum: dict[str, float] = field(default_factory=lambda: dict.fromkeys(SIGNALS, 0.0))
    recent: dict[str, float] = field(default_factory=lambda: dict.fromkeys(SIGNALS, 0.0))

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["state"] = self.state.value
        data["ref_sum"] = _pack(self.ref_sum)
        data["centroid"] = _pack(self.centroid)
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> _Intent:
        return cls(
            **{
                **data,
                "state": DriftState(data["state"]),
                "ref_sum": _unpack(data["ref_sum"]),
                "centroid": _unpack(data["centroid"]),
                "distance": Moments(**data["distance"]),
                "confidence": Moments(**data["confidence"]),
                "low_conf": Rate(**data["low_conf"]),
                "error": Rate(**data["error"]),
                "share": Rate(**data["share"]),
            }
        )


@dataclass
class _Calm:
    """Sufficient statistics of one intent's in-control turns of a batch."""

    n: int
    low: float  # low-confidence turns among them
    conf: tuple[float, float]  # mean and population variance of their confidences
    dist: tuple[float, float]  # ... and of their distances to the centroid
    emb_mean: Vector


@dataclass
class _InControl:
    """What a batch does to an intent whose turns all stay in control."""

    turns: int
    cusum: dict[str, float]  # the turn-level signals' CUSUMs after the batch
    recent: tuple[float, float, float]  # means of low-confidence, confidence z, distance z
    calm: _Calm | None  # the turns that move the reference (None: none of them)


@dataclass
class _Node:
    """Pooled in-control rates of a node (the prior of its intents' references)."""

    turns: int = 0
    low_conf: Rate = field(default_factory=lambda: Rate(2.0, 20.0))
    error: Rate = field(default_factory=lambda: Rate(2.0, 20.0))
    offsets: dict[str, int] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> _Node:
        return cls(
            turns=data["turns"],
            low_conf=Rate(**data["low_conf"]),
            error=Rate(**data["error"]),
            offsets=dict(data["offsets"]),
        )


class DriftMonitor:
    """Drift state of every ``(node, intent)`` seen; feed it turns, feedback and adapters."""

    def __init__(self, config: DriftConfig = DriftConfig()) -> None:
        self.config = config
        self._intents: dict[str, dict[str, _Intent]] = {}
        self._nodes: dict[str, _Node] = {}
        self._dirty: set[tuple[str, str | None]] = set()

    # --- inputs ---------------------------------------------------------------------------
    def observe_turns(
        self,
        node_id: str,
        intents: Sequence[str],
        confidences: Vector,
        embeddings: Vector,
        now: float,
        version: int = 0,
    ) -> list[DriftTransition]:
        """A batch of turns of ``node_id`` served by adapter ``version``: the predicted
        intent, its confidence and the unit-norm embedding of each."""
        node = self._node(node_id)
        confidences = np.asarray(confidences, dtype=np.float64)
        embeddings = np.asarray(embeddings, dtype=np.float64)
        groups: dict[str, list[int]] = {}
        for i, intent in enumerate(intents):
            groups.setdefault(intent, []).append(i)
        c = self.config
        prior = node.low_conf.shrunk(0.1, 0, c.min_rate)  # the node's pooled rate, per call
        members = {intent: self._intent(node_id, intent) for intent in groups}
        in_control = self._score_in_control(
            members, groups, confidences, embeddings, version, prior
        )
        out: list[DriftTransition] = []
        for intent, rows in groups.items():
            it = members[intent]
            update = in_control.get(intent)
            if update is not None:
                self._apply_in_control(it, node, update)
                continue
            idx = np.asarray(rows)
            out += self._observe_group(
                node_id, intent, it, node, confidences[idx], embeddings[idx], now, version, prior
            )
        node.turns += len(intents)
        out += self._observe_shares(node_id, node, groups, len(intents), now)
        self._dirty.add((node_id, None))
        return out

    def observe_turn(
        self,
        node_id: str,
        intent: str,
        confidence: float,
        embedding: Vector,
        now: float,
        version: int = 0,
    ) -> list[DriftTransition]:
        """One turn (a batch of one)."""
        return self.observe_turns(
            node_id, [intent], np.array([confidence]), np.asarray(embedding)[None, :], now, version
        )

    def observe_feedback(
        self, node_id: str, intent: str, wrong: bool, now: float
    ) -> list[DriftTransition]:
        """User feedback on a turn predicted as ``intent`` (``wrong``: it was not)."""
        c = self.config
        it = self._intent(node_id, intent)
        node = self._node(node_id)
        if it.turns <= c.min_turns:
            it.error.add(wrong, 1, cap=c.reference_memory)
            node.error.add(wrong, 1, cap=c.reference_memory)
            return []
        prior = node.error.shrunk(0.1, 0, c.min_rate)
        up, down = bernoulli_log_ratios(
            it.error.shrunk(prior, c.prior_weight, c.min_rate), c.rate_shift
        )
        it.cusum["error"] = max(0.0, it.cusum["error"] + (up if wrong else down))
        it.recent["error"] += 0.1 * (float(wrong) - it.recent["error"])
        if self._in_control(it):
            it.error.add(wrong, 1, cap=c.reference_memory)
            node.error.add(wrong, 1, cap=c.reference_memory)
        return self._step(node_id, intent, it, now, turn=False)

    def adapter_published(self, node_id: str, version: int, now: float) -> list[DriftTransition]:
        """A new adapter serves ``node_id``: drifting intents start measuring it afresh."""
        for intent, it in self._intents.get(node_id, {}).items():
            it.adapter = version
            if it.state in (DriftState.DRIFTING, DriftState.RECOVERING):
                self._reset_cusums(it)
                it.calm = 0
                it.adapter_since_alarm = True
            self._dirty.add((node_id, intent))
        return []

    # --- outputs --------------------------------------------------------------------------
    def snapshot(self) -> list[DriftStatus]:
        return [
            DriftStatus(n, i, it.state, self._score(it), self._signals(it), it.turns, it.since)
            for n, intents in self._intents.items()
            for i, it in intents.items()
        ]

    def state(self, node_id: str, intent: str) -> DriftState:
        it = self._intents.get(node_id, {}).get(intent)
        return it.state if it else DriftState.STABLE

    # --- persistence ----------------------------------------------------------------------
    def nodes(self) -> list[str]:
        return list(self._nodes)

    def export_node(self, node_id: str) -> dict[str, Any]:
        """Plain-data state of one node (JSON-serialisable)."""
        return self._node(node_id).to_dict()

    def intents(self, node_id: str) -> list[str]:
        """The intents of ``node_id`` seen so far."""
        return list(self._intents.get(node_id, {}))

    def export_intent(self, node_id: str, intent: str) -> dict[str, Any]:
        return self._intent(node_id, intent).to_dict()

    def restore(
        self, node_id: str, node: dict[str, Any], intents: dict[str, dict[str, Any]]
    ) -> None:
        """Load a node's state exported by :meth:`export_node` and :meth:`export_intent`."""
        self._nodes[node_id] = _Node.from_dict(node)
        self._intents[node_id] = {k: _Intent.from_dict(v) for k, v in intents.items()}

    def forget(self, node_id: str) -> None:
        """Drop a node's in-memory state (its partitions moved to another worker)."""
        self._nodes.pop(node_id, None)
        self._intents.pop(node_id, None)
        self._dirty = {d for d in self._dirty if d[0] != node_id}

    def take_dirty(self) -> set[tuple[str, str | None]]:
        """What changed since the last call: ``(node, intent)``, or ``(node, None)`` for the
        node's own state."""
        dirty, self._dirty = self._dirty, set()
        return dirty

    def offset(self, node_id: str, source: str) -> int:
        """Last offset of ``source`` this node's state includes (-1: none)."""
        return self._node(node_id).offsets.get(source, -1)

    def set_offset(self, node_id: str, source: str, offset: int) -> None:
        self._node(node_id).offsets[source] = offset
        self._dirty.add((node_id, None))

    # --- internals ------------------------------------------------------------------------
    def _node(self, node_id: str) -> _Node:
        node = self._nodes.get(node_id)
        if node is None:
            node = self._nodes[node_id] = _Node()
            self._intents.setdefault(node_id, {})
        return node

    def _intent(self, node_id: str, intent: str) -> _Intent:
        intents = self._intents.setdefault(node_id, {})
        it = intents.get(intent)
        if it is None:
            it = intents[intent] = _Intent(share_from=self._node(node_id).turns)
        self._dirty.add((node_id, intent))
        return it

    def _observe_group(
        self,
        node_id: str,
        intent: str,
        it: _Intent,
        node: _Node,
        conf: Vector,
        emb: Vector,
        now: float,
        version: int,
        prior: float,
    ) -> list[DriftTransition]:
        """Turns of one intent, stepped through the state machine where they may change it
        (the general path; :meth:`_score_in_control` is the fast one)."""
        c = self.config
        low = conf < c.low_confidence
        reference = it.centroid if it.centroid is not None else it.ref_sum
        if it.version != version or (reference is not None and len(reference) != emb.shape[1]):
            # Embeddings of another adapter version (or base model) live in another space:
            # centroid and moments are learnt again from its turns (rates stay comparable).
            it.version = version
            self._relearn_reference(it)
        # 1. Turns that complete the reference.
        learn = 0
        if it.centroid is None:
            learn = min(len(conf), c.min_turns - it.ref_n)
            self._learn_reference(it, conf[:learn], emb[:learn])
        rate_learn = max(0, min(len(conf), c.min_turns - it.turns))
        it.low_conf.add(float(low[:rate_learn].sum()), rate_learn, cap=c.reference_memory)
        node.low_conf.add(float(low[:rate_learn].sum()), rate_learn, cap=c.reference_memory)
        start = max(learn, rate_learn)
        it.turns += start
        conf, emb, low = conf[start:], emb[start:], low[start:]
        m = len(conf)
        if m == 0:
            return []
        # 2. Every signal's CUSUM path over the rest of the batch.
        up, down = bernoulli_log_ratios(
            it.low_conf.shrunk(prior, c.prior_weight, c.min_rate), c.rate_shift
        )
        steps = {"low_confidence": np.where(low, up, down)}
        assert it.centroid is not None
        distances = 1.0 - emb @ it.centroid
        # Clipped, so one outlier turn cannot raise an alarm on its own (a robust CUSUM).
        z_dist = np.clip(
            (distances - it.distance.mean) / it.distance.sd(c.min_sd), -c.z_clip, c.z_clip
        )
        z_conf = np.clip(
            (it.confidence.mean - conf) / it.confidence.sd(c.min_sd), -c.z_clip, c.z_clip
        )
        steps["distance"] = gaussian_steps(z_dist, c.distance_shift)
        steps["confidence"] = gaussian_steps(z_conf, c.confidence_shift)
        levels = self._levels()
        paths = {k: cusum_path(it.cusum[k], s) for k, s in steps.items()}
        others = max(it.cusum["share"] / c.threshold, it.cusum["error"] / c.threshold)
        score = np.maximum.reduce([paths[k] / levels[k] for k in paths] + [np.full(m, others)])
        # 3. The in-control prefix in one go; turns from the first that may change the
        #    state (or all, outside stable) one by one.
        if it.state == DriftState.STABLE:
            hot = np.flatnonzero(score >= c.warn_fraction)
            bulk = int(hot[0]) if len(hot) else m
        else:
            bulk = 0
        if bulk:
            for k in paths:
                it.cusum[k] = float(paths[k][bulk - 1])
            self._follow_recent(
                it, bulk, low[:bulk].mean(), z_conf[:bulk].mean(), z_dist[:bulk].mean()
            )
            it.turns += bulk
            calm = np.flatnonzero(score[:bulk] < self._control_level(it))  # in control
            self._adapt_reference(it, node, low[calm], conf[calm], emb[calm], distances[calm])
        out: list[DriftTransition] = []
        for j in range(bulk, m):
            for k in steps:
                it.cusum[k] = max(0.0, it.cusum[k] + float(steps[k][j]))
            self._follow_recent(it, 1, low[j], z_conf[j], z_dist[j])
            it.turns += 1
            if self._in_control(it):
                sl = slice(j, j + 1)
                self._adapt_reference(it, node, low[sl], conf[sl], emb[sl], distances[sl])
            out += self._step(node_id, intent, it, now)
            if it.centroid is None:  # back to stable: the rest learns the new reference
                rest = slice(j + 1, m)
                return out + self._observe_group(
                    node_id, intent, it, node, conf[rest], emb[rest], now, version, prior
                )
        return out

    def _bulk_ready(self, it: _Intent, version: int, dim: int) -> bool:
        """Stable, with a settled reference in this embedding space: may take the fast path."""
        return (
            it.state == DriftState.STABLE
            and it.centroid is not None
            and it.version == version
            and len(it.centroid) == dim
            and it.turns >= self.config.min_turns
        )

    def _score_in_control(
        self,
        members: dict[str, _Intent],
        groups: dict[str, list[int]],
        conf: Vector,
        emb: Vector,
        version: int,
        prior: float,
    ) -> dict[str, _InControl]:
        """The batch's effect on every intent whose turns all stay in control, computed for
        all of them together.

        This is the common case (most intents are stable most of the time), and its cost
        was per intent: a few dozen small numpy calls each. Here every intent's rows are a
        segment of one array and each step is one numpy pass over the whole batch. An
        intent that is not :meth:`_bulk_ready`, or that reaches warning inside the batch,
        is left out (untouched) for :meth:`_observe_group`.
        """
        c = self.config
        names = [n for n in groups if self._bulk_ready(members[n], version, emb.shape[1])]
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
        levels = self._levels()
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
        out: dict[str, _InControl] = {}
        for g, name in enumerate(names):
            if hot[g]:
                continue
            n = int(n_calm[g])
            calm = None
            if n:
                cm, dm = c_sum[g] / n, d_sum[g] / n
                calm = _Calm(
                    n=n,
                    low=float(low_calm[g]),
                    conf=(float(cm), max(0.0, float(c_sq[g] / n - cm * cm))),
                    dist=(float(dm), max(0.0, float(d_sq[g] / n - dm * dm))),
                    emb_mean=e_sum[g] / n,
                )
            out[name] = _InControl(
                turns=int(sizes[g]),
                cusum=dict(zip(TURN_SIGNALS, ends[g].tolist(), strict=True)),
                recent=(float(means[g, 0]), float(means[g, 1]), float(means[g, 2])),
                calm=calm,
            )
        return out

    def _apply_in_control(self, it: _Intent, node: _Node, update: _InControl) -> None:
        it.cusum.update(update.cusum)
        self._follow_recent(it, update.turns, *update.recent)
        it.turns += update.turns
        if update.calm is not None:
            self._adapt_reference_stats(it, node, update.calm)

    def _observe_shares(
        self, node_id: str, node: _Node, groups: dict[str, list[int]], n: int, now: float
    ) -> list[DriftTransition]:
        """The share of the batch predicted as each intent, against its reference share."""
        c = self.config
        out: list[DriftTransition] = []
        intents = self._intents[node_id]
        prior = 1.0 / max(len(intents), 1)
        for intent, it in intents.items():
            k = len(groups.get(intent, ()))
            if k == 0 and it.cusum["share"] == 0.0:
                if it.state == DriftState.STABLE:
                    it.share.add(0, n, cap=20 * c.share_min_turns)
                continue
            if node.turns - it.share_from < c.share_min_turns:
                it.share.add(k, n, cap=20 * c.share_min_turns)
                continue
            p0 = it.share.shrunk(prior, 100.0, c.min_share)
            p1 = max(p0 * c.share_ratio, p0 + c.share_shift)
            it.cusum["share"] = max(0.0, it.cusum["share"] + binomial_step(k, n, p0, p1))
            it.recent["share"] += 0.1 * (k / n - it.recent["share"])
            if self._in_control(it):
                it.share.add(k, n, cap=20 * c.share_min_turns)
            if k:
                self._dirty.add((node_id, intent))
                out += self._step(node_id, intent, it, now, turn=False)
        return out

    def _learn_reference(self, it: _Intent, conf: Vector, emb: Vector) -> None:
        """Absorb turns into the centroid being learnt; each turn's distance is measured
        against the centroid of the turns before it (an unbiased, leave-one-out-like
        estimate of the spread without keeping the embeddings)."""
        if len(conf) == 0:
            return
        dim = emb.shape[1]
        base = it.ref_sum if it.ref_sum is not None else np.zeros(dim)
        sums = base + np.cumsum(emb, axis=0)
        before = np.vstack([base[None, :], sums[:-1]])
        usable = np.arange(it.ref_n, it.ref_n + len(conf)) >= 3  # a centroid of >= 3 turns
        if usable.any():
            b = before[usable]
            b = b / np.maximum(np.linalg.norm(b, axis=1, keepdims=True), 1e-9)
            it.distance.merge(1.0 - (emb[usable] * b).sum(1))
        it.confidence.merge(conf)
        it.ref_sum = sums[-1]
        it.ref_n += len(conf)
        if it.ref_n >= self.config.min_turns:
            it.centroid = it.ref_sum / max(float(np.linalg.norm(it.ref_sum)), 1e-9)
            it.ref_sum = None

    def _adapt_reference(
        self, it: _Intent, node: _Node, low: Vector, conf: Vector, emb: Vector, dist: Vector
    ) -> None:
        """In-control turns move the reference slowly (it follows benign change)."""
        if len(low):
            self._adapt_reference_stats(
                it,
                node,
                _Calm(
                    n=len(low),
                    low=float(low.sum()),
                    conf=(float(conf.mean()), float(conf.var())),
                    dist=(float(dist.mean()), float(dist.var())),
                    emb_mean=emb.mean(0),
                ),
            )

    def _adapt_reference_stats(self, it: _Intent, node: _Node, calm: _Calm) -> None:
        a = self.config.adapt
        it.low_conf.add(calm.low, calm.n, cap=self.config.reference_memory)
        node.low_conf.add(calm.low, calm.n, cap=self.config.reference_memory)
        assert it.centroid is not None
        w = 1.0 - (1.0 - a) ** calm.n
        if it.distance.n < self.config.settle_turns:
            w = max(w, calm.n / (it.distance.n + calm.n))
            it.distance.merge_stats(calm.n, *calm.dist)
            it.confidence.merge_stats(calm.n, *calm.conf)
        else:
            it.distance.follow_stats(calm.n, *calm.dist, a)
            it.confidence.follow_stats(calm.n, *calm.conf, a)
        centroid = (1 - w) * it.centroid + w * calm.emb_mean
        it.centroid = centroid / max(float(np.linalg.norm(centroid)), 1e-9)

    @staticmethod
    def _follow_recent(it: _Intent, m: int, low: float, z_conf: float, z_dist: float) -> None:
        """Exponential averages of the raw signals over ``m`` turns (their means given), for
        reasons and dashboards."""
        w = 1.0 - 0.9**m
        it.recent["low_confidence"] += w * (float(low) - it.recent["low_confidence"])
        it.recent["confidence"] += w * (float(-z_conf) - it.recent["confidence"])
        it.recent["distance"] += w * (float(z_dist) - it.recent["distance"])

    def _in_control(self, it: _Intent) -> bool:
        """Stable and below warning (well below, once the reference is settled): the turn
        may move the reference."""
        return it.state == DriftState.STABLE and self._score(it) < self._control_level(it)

    def _control_level(self, it: _Intent) -> float:
        c = self.config
        return c.warn_fraction if it.turns < c.settle_turns else c.warn_fraction / 2

    def _levels(self) -> dict[str, float]:
        c = self.config
        return {
            "low_confidence": c.threshold,
            "confidence": c.gaussian_threshold,
            "distance": c.gaussian_threshold,
            "share": c.threshold,
            "error": c.threshold,
        }

    def _score(self, it: _Intent) -> float:
        return min(1.0, max(it.cusum[k] / v for k, v in self._levels().items()))

    def _signals(self, it: _Intent) -> dict[str, float]:
        out = {k: round(min(1.0, it.cusum[k] / v), 4) for k, v in self._levels().items()}
        out.update(
            low_confidence_rate=round(it.recent["low_confidence"], 4),
            confidence_z=round(it.recent["confidence"], 4),
            distance_z=round(it.recent["distance"], 4),
            share_rate=round(it.recent["share"], 4),
            error_rate=round(it.recent["error"], 4),
        )
        return out

    @staticmethod
    def _reset_cusums(it: _Intent) -> None:
        it.cusum = dict.fromkeys(SIGNALS, 0.0)

    def _relearn_reference(self, it: _Intent) -> None:
        it.centroid = None
        it.ref_sum = None
        it.ref_n = 0
        it.distance = Moments()
        it.confidence = Moments()
        for k in ("distance", "confidence"):
            it.cusum[k] = 0.0
            it.recent[k] = 0.0

    def _step(
        self, node_id: str, intent: str, it: _Intent, now: float, turn: bool = True
    ) -> list[DriftTransition]:
        score = self._score(it)
        old = it.state
        new = self._next_state(it, score, turn)
        # Named at the moment of the transition (before the CUSUMs restart below).
        signals = self._signals(it) if new != old else {}
        reason = self._reason(it, old, new) if new != old else ""
        if score >= 1.0:
            # From the alarm on, the CUSUMs measure whether the shift goes on: they restart
            # at the warning level, so a shift that persists keeps the intent drifting (one
            # alarm) and one that ends lets them fall back below it within a few turns.
            levels = self._levels()
            for k, level in levels.items():
                it.cusum[k] = min(it.cusum[k], self.config.warn_fraction * level)
            it.calm = 0
        if new == old:
            return []
        it.state = new
        it.since = now
        self._dirty.add((node_id, intent))
        if new == DriftState.DRIFTING:
            it.alarms += 1
            it.adapter_since_alarm = False
        if new == DriftState.RECOVERING:
            it.calm = 0
        elif old == DriftState.RECOVERING and new == DriftState.STABLE:
            self._relearn_reference(it)
            self._reset_cusums(it)
        return [DriftTransition(node_id, intent, old, new, score, signals, reason, it.turns, now)]

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
        needed = c.recover_turns
        if old == DriftState.DRIFTING and not it.adapter_since_alarm:
            needed = c.recover_unaided_turns
        if it.calm < needed:
            return old
        return DriftState.RECOVERING if old == DriftState.DRIFTING else DriftState.STABLE

    def _reason(self, it: _Intent, old: DriftState, new: DriftState) -> str:
        if new in (DriftState.DRIFTING, DriftState.WARNING):
            r = it.recent
            parts = {
                "low_confidence": f"low-confidence share {r['low_confidence']:.2f}",
                "confidence": f"mean confidence {r['confidence']:+.1f} sd",
                "distance": f"embedding distance {r['distance']:+.1f} sd",
                "share": f"share of traffic {r['share']:.2f}",
                "error": f"feedback error rate {r['error']:.2f}",
            }
            sig = self._signals(it)
            ranked = sorted(parts, key=lambda k: -sig[k])
            lead = [parts[k] for k in ranked if sig[k] >= self.config.warn_fraction] or [
                parts[ranked[0]]
            ]
            prefix = "relapse after adapter: " if old == DriftState.RECOVERING else ""
            return prefix + "; ".join(lead)
        if new == DriftState.RECOVERING:
            if it.adapter_since_alarm:
                return f"signals back to reference for {it.calm} turns with adapter v{it.adapter}"
            return f"signals back to reference for {it.calm} turns with no new adapter"
        if old == DriftState.WARNING:
            return "signals back below the warning level"
        return "signals back to reference; reference relearnt"
