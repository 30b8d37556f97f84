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

This module wires the parts, each in its own module so it can be read and tested alone:
:mod:`.config` (settings, states, what is reported), :mod:`.state` (the stored state, as
plain data), :mod:`.machine` (the state machine, pure), :mod:`.scorer` (the numpy scoring
of a batch) and :mod:`.cusum` and :mod:`.stats` (the tests and reference statistics).

Turns come in batches (an edge node's micro-batch, or several pooled): the intents that stay
in control through the batch are scored all together, each numpy pass covering every one
of them; an intent whose turns may change its state is scored with numpy up to the first
such turn, and stepped one turn at a time from there. The whole state is plain data
(:meth:`DriftMonitor.export`), so a stream worker checkpoints it and a restarted one
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

from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np

from learners.drift import machine
from learners.drift.config import (
    SIGNALS,
    DriftConfig,
    DriftState,
    DriftStatus,
    DriftTransition,
    Vector,
    decision_levels,
)
from learners.drift.cusum import bernoulli_log_ratios, binomial_step
from learners.drift.detectors import DRIFT, WARNING, RiverWatch, check_detectors
from learners.drift.scorer import Calm, InControl, score_in_control, score_turns
from learners.drift.state import IntentRecord, NodeRecord
from learners.drift.stats import Moments

__all__ = ["DriftMonitor"]


DEFAULT_CONFIG = DriftConfig()


class DriftMonitor:
    """Drift state of every ``(node, intent)`` seen; feed it turns, feedback and adapters."""

    def __init__(self, config: DriftConfig = DEFAULT_CONFIG) -> None:
        self.config = config
        self._levels = decision_levels(config)
        self._river = dict(check_detectors(config.detectors))  # signal -> river's detector
        self._river_turns = {k: v for k, v in self._river.items() if k != "error"}
        self._intents: dict[str, dict[str, IntentRecord]] = {}
        self._nodes: dict[str, NodeRecord] = {}
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
        river = self._river_path(it, "error", [wrong]) if "error" in self._river else None
        if it.turns <= c.min_turns:
            it.error.add(wrong, 1, cap=c.reference_memory)
            node.error.add(wrong, 1, cap=c.reference_memory)
            return []
        if river is not None:
            it.cusum["error"] = float(river[-1])
        else:
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

    # --- persistence (learners.state.NodeState) ------------------------------------------
    def nodes(self) -> list[str]:
        """The nodes seen (or restored) and not forgotten."""
        return list(self._nodes)

    def export(self, node_id: str) -> dict[str, Any]:
        """``node_id``'s whole state as JSON-able data: ``{"node": ..., "intents": {intent:
        ...}}`` (KeyError if it has none)."""
        return self.export_part(node_id, self.intents(node_id))

    def export_part(self, node_id: str, intents: Iterable[str]) -> dict[str, Any]:
        """:meth:`export` with only some of the node's intents (none: the node's own record).
        The drift agent stores a node's intents in shards and writes only those that changed;
        :meth:`restore` takes the parts' intents gathered into one dict."""
        known = self._intents[node_id]
        return {
            "node": self._nodes[node_id].to_dict(),
            "intents": {intent: known[intent].to_dict() for intent in intents},
        }

    def intents(self, node_id: str) -> list[str]:
        """The intents of ``node_id`` seen so far."""
        return list(self._intents.get(node_id, {}))

    def restore(self, node_id: str, data: dict[str, Any]) -> None:
        """Replace ``node_id``'s state with what :meth:`export` gave (or its node record and
        every intent, gathered from several :meth:`export_part` calls)."""
        self._nodes[node_id] = NodeRecord.from_dict(data["node"])
        self._intents[node_id] = {k: IntentRecord.from_dict(v) for k, v in data["intents"].items()}

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
    def _node(self, node_id: str) -> NodeRecord:
        node = self._nodes.get(node_id)
        if node is None:
            node = self._nodes[node_id] = NodeRecord()
            self._intents.setdefault(node_id, {})
        return node

    def _intent(self, node_id: str, intent: str) -> IntentRecord:
        intents = self._intents.setdefault(node_id, {})
        it = intents.get(intent)
        if it is None:
            it = intents[intent] = IntentRecord(share_from=self._node(node_id).turns)
        self._dirty.add((node_id, intent))
        return it

    def _observe_group(
        self,
        node_id: str,
        intent: str,
        it: IntentRecord,
        node: NodeRecord,
        conf: Vector,
        emb: Vector,
        now: float,
        version: int,
        prior: float,
        river: dict[str, Vector] | None = None,
    ) -> list[DriftTransition]:
        """Turns of one intent, stepped through the state machine where they may change it
        (the general path; :meth:`_score_in_control` is the fast one). ``river``: the paths
        of the signals river's detectors watch, if they have seen these turns already."""
        c = self.config
        low = conf < c.low_confidence
        if river is None:  # every turn feeds them, reference-learning ones included
            river = {
                k: self._river_path(it, k, low if k == "low_confidence" else conf)
                for k in self._river_turns
            }
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
        river = {k: path[start:] for k, path in river.items()}
        m = len(conf)
        if m == 0:
            return []
        # 2. Every signal's CUSUM path over the rest of the batch.
        scored = score_turns(it, low, conf, emb, prior, c, fixed=river)
        steps, paths, score = scored.steps, scored.paths, scored.score
        distances, z_dist, z_conf = scored.distances, scored.z_dist, scored.z_conf
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
            for k, path in river.items():
                it.cusum[k] = float(path[j])
            self._follow_recent(it, 1, low[j], z_conf[j], z_dist[j])
            it.turns += 1
            if self._in_control(it):
                sl = slice(j, j + 1)
                self._adapt_reference(it, node, low[sl], conf[sl], emb[sl], distances[sl])
            out += self._step(node_id, intent, it, now)
            if it.centroid is None:  # back to stable: the rest learns the new reference
                rest = slice(j + 1, m)  # (and feeds the fresh detectors, river=None)
                return out + self._observe_group(
                    node_id, intent, it, node, conf[rest], emb[rest], now, version, prior
                )
        return out

    def _score_in_control(
        self,
        members: dict[str, IntentRecord],
        groups: dict[str, list[int]],
        conf: Vector,
        emb: Vector,
        version: int,
        prior: float,
    ) -> dict[str, InControl]:
        """The fast path (:func:`.scorer.score_in_control`), a method so that a test can
        turn it off and compare with the general path. A river detector on a turn signal
        takes one value at a time: then every intent takes the general path."""
        if self._river_turns:
            return {}
        return score_in_control(members, groups, conf, emb, version, prior, self.config)

    def _apply_in_control(self, it: IntentRecord, node: NodeRecord, update: InControl) -> None:
        it.cusum.update(update.cusum)
        self._follow_recent(it, update.turns, *update.recent)
        it.turns += update.turns
        if update.calm is not None:
            self._adapt_reference_stats(it, node, update.calm)

    def _observe_shares(
        self, node_id: str, node: NodeRecord, groups: dict[str, list[int]], n: int, now: float
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

    def _learn_reference(self, it: IntentRecord, conf: Vector, emb: Vector) -> None:
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
        self,
        it: IntentRecord,
        node: NodeRecord,
        low: Vector,
        conf: Vector,
        emb: Vector,
        dist: Vector,
    ) -> None:
        """In-control turns move the reference slowly (it follows benign change)."""
        if len(low):
            self._adapt_reference_stats(
                it,
                node,
                Calm(
                    n=len(low),
                    low=float(low.sum()),
                    conf=(float(conf.mean()), float(conf.var())),
                    dist=(float(dist.mean()), float(dist.var())),
                    emb_mean=emb.mean(0),
                ),
            )

    def _adapt_reference_stats(self, it: IntentRecord, node: NodeRecord, calm: Calm) -> None:
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
    def _follow_recent(it: IntentRecord, m: int, low: float, z_conf: float, z_dist: float) -> None:
        """Exponential averages of the raw signals over ``m`` turns (their means given), for
        reasons and dashboards."""
        w = 1.0 - 0.9**m
        it.recent["low_confidence"] += w * (float(low) - it.recent["low_confidence"])
        it.recent["confidence"] += w * (float(-z_conf) - it.recent["confidence"])
        it.recent["distance"] += w * (float(z_dist) - it.recent["distance"])

    def _in_control(self, it: IntentRecord) -> bool:
        """Stable and below warning (well below, once the reference is settled): the turn
        may move the reference."""
        return it.state == DriftState.STABLE and self._score(it) < self._control_level(it)

    def _control_level(self, it: IntentRecord) -> float:
        c = self.config
        return c.warn_fraction if it.turns < c.settle_turns else c.warn_fraction / 2

    def _score(self, it: IntentRecord) -> float:
        return min(1.0, max(it.cusum[k] / v for k, v in self._levels.items()))

    def _signals(self, it: IntentRecord) -> dict[str, float]:
        out = {k: round(min(1.0, it.cusum[k] / v), 4) for k, v in self._levels.items()}
        out.update(
            low_confidence_rate=round(it.recent["low_confidence"], 4),
            confidence_z=round(it.recent["confidence"], 4),
            distance_z=round(it.recent["distance"], 4),
            share_rate=round(it.recent["share"], 4),
            error_rate=round(it.recent["error"], 4),
        )
        return out

    @staticmethod
    def _reset_cusums(it: IntentRecord) -> None:
        it.cusum = dict.fromkeys(SIGNALS, 0.0)
        it.river.clear()  # river's detectors start afresh too

    def _river_path(self, it: IntentRecord, signal: str, values: Iterable[Any]) -> Vector:
        """Feed ``values`` to the intent's river detector on ``signal``; the signal's value
        after each, in CUSUM units: its decision level on a drift, the warning fraction of
        it on a warning, else 0 (so the score, the state machine and the reasons read a
        river signal as they read a CUSUM)."""
        name = self._river[signal]
        watch = it.river.get(signal)
        if watch is None or watch.name != name:  # none yet, or the setting changed
            watch = it.river[signal] = RiverWatch(name)
        level = self._levels[signal]
        value = {DRIFT: level, WARNING: self.config.warn_fraction * level}
        return np.array([value.get(watch.update(float(v)), 0.0) for v in values])

    def _relearn_reference(self, it: IntentRecord) -> None:
        it.centroid = None
        it.ref_sum = None
        it.ref_n = 0
        it.distance = Moments()
        it.confidence = Moments()
        for k in ("distance", "confidence"):
            it.cusum[k] = 0.0
            it.recent[k] = 0.0

    def _step(
        self, node_id: str, intent: str, it: IntentRecord, now: float, turn: bool = True
    ) -> list[DriftTransition]:
        score = self._score(it)
        old = it.state
        it.calm = machine.count_calm(old, score, it.calm, turn, self.config)
        new = machine.next_state(old, score, it.calm, it.adapter_since_alarm, self.config)
        # Named at the moment of the transition (before the CUSUMs restart below).
        signals = self._signals(it) if new != old else {}
        reason = self._reason(it, old, new, signals) if new != old else ""
        if score >= 1.0:
            # From the alarm on, the CUSUMs measure whether the shift goes on: they restart
            # at the warning level, so a shift that persists keeps the intent drifting (one
            # alarm) and one that ends lets them fall back below it within a few turns.
            levels = self._levels
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

    def _reason(
        self, it: IntentRecord, old: DriftState, new: DriftState, signals: dict[str, float]
    ) -> str:
        return machine.reason(
            old,
            new,
            it.recent,
            signals,
            it.calm,
            it.adapter,
            it.adapter_since_alarm,
            self.config.warn_fraction,
        )
