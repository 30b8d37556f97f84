"""river's drift detectors as arms of ``ecc bench drift``, on the same signals per intent.

Each arm keeps one river detector per (node, predicted intent) and feeds it one signal,
as the project's monitor sees it: the **feedback error** (1 when a user said the answer
was wrong; river's binary detectors DDM, EDDM, HDDM_A, HDDM_W, FHDDM are made for that
stream) or the turn's **confidence** (ADWIN, PageHinkley: detectors of a change in a real
signal's mean). Every ``drift_detected`` is an alarm on that intent, counted as the
project's monitor's transitions into drifting are (river's detectors reset themselves
after a detection and go on). The detectors are made as the production setting makes them
(:class:`learners.drift.detectors.RiverWatch`: river's defaults, PageHinkley's threshold
1.0).

Beside river alone, the ``ecc + <signal>=<detector>`` arms are the project's monitor with
that signal's CUSUM replaced by river's detector (``ECC_DRIFT_DETECTORS``), the other
signals unchanged: what an operator choosing the setting would run.

The arm exposes the two calls of :class:`learners.drift.DriftMonitor` the bench replays
(``observe_turns``, ``observe_feedback``), so the same replay scores both.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from learners.drift import DriftConfig, DriftMonitor, DriftState
from learners.drift.detectors import DRIFT, RiverWatch, parse_detectors


@dataclass(frozen=True)
class Alarm:
    """What the replay reads of a transition: the intent, the new state, why."""

    intent: str
    reason: str
    score: float = 1.0
    new: DriftState = DriftState.DRIFTING


@dataclass
class RiverArm:
    """One river detector per (node, intent), on one signal (``feedback`` or
    ``confidence``): :class:`learners.drift.detectors.RiverWatch`, as the monitor holds
    them, but every detection an alarm of its own."""

    name: str
    signal: str
    detector: str  # as in learners.drift.detectors.DETECTORS
    watches: dict[tuple[str, str], RiverWatch] = field(default_factory=dict)

    def _update(self, node: str, intent: str, value: float) -> list[Alarm]:
        watch = self.watches.get((node, intent))
        if watch is None:
            watch = self.watches[(node, intent)] = RiverWatch(self.detector)
        if watch.update(value) == DRIFT:
            return [Alarm(intent, f"river {self.name} on {self.signal}")]
        return []

    def observe_turns(
        self,
        node_id: str,
        intents: Sequence[str],
        confidences: Any,
        embeddings: Any,
        now: float,
    ) -> list[Alarm]:
        if self.signal != "confidence":
            return []
        out: list[Alarm] = []
        for intent, confidence in zip(intents, np.asarray(confidences, float), strict=True):
            out += self._update(node_id, intent, float(confidence))
        return out

    def observe_feedback(self, node_id: str, intent: str, wrong: bool, now: float) -> list[Alarm]:
        if self.signal != "feedback":
            return []
        return self._update(node_id, intent, float(wrong))


RIVER_ALONE: dict[str, tuple[str, str]] = {
    "river DDM": ("feedback", "ddm"),
    "river EDDM": ("feedback", "eddm"),
    "river HDDM_A": ("feedback", "hddm_a"),
    "river HDDM_W": ("feedback", "hddm_w"),
    "river FHDDM": ("feedback", "fhddm"),
    "river ADWIN": ("confidence", "adwin"),
    "river PageHinkley": ("confidence", "page_hinkley"),
}
"""river's detectors alone, each on its one signal: arm name -> (signal, detector)."""
IN_MONITOR = {
    f"ecc + {spec}": spec
    for spec in ("error=ddm", "error=hddm_a", "low_confidence=ddm", "confidence=adwin")
}
"""The project's monitor with one signal's CUSUM replaced by river's detector, as the
``ECC_DRIFT_DETECTORS`` setting does in production: arm name -> the setting."""
ARMS = (*RIVER_ALONE, *IN_MONITOR)


def make_arm(name: str) -> Any:
    """A fresh arm (no detector state) named as in :data:`ARMS`."""
    if name in IN_MONITOR:
        return DriftMonitor(DriftConfig(detectors=parse_detectors(IN_MONITOR[name])))
    signal, detector = RIVER_ALONE[name]
    return RiverArm(name.removeprefix("river "), signal, detector)
