"""river's drift detectors as arms of ``ecc bench drift``, on the same signals per intent.

Each arm keeps one river detector per (node, predicted intent) and feeds it one signal,
as the project's monitor sees it: the **feedback error** (1 when a user said the answer
was wrong; river's binary detectors DDM, EDDM, HDDM_A, HDDM_W, FHDDM are made for that
stream) or the turn's **confidence** (ADWIN, PageHinkley: detectors of a change in a real
signal's mean). Every ``drift_detected`` is an alarm on that intent, counted as the
project's monitor's transitions into drifting are (river's detectors reset themselves
after a detection and go on). Defaults are river's, as its users start, except
PageHinkley's threshold: its default (50) is for signals of a larger scale than a
confidence in [0, 1], where it would never fire; 1.0 is used.

The arm exposes the two calls of :class:`learners.drift.DriftMonitor` the bench replays
(``observe_turns``, ``observe_feedback``), so the same replay scores both.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from river.drift import ADWIN, PageHinkley
from river.drift.binary import DDM, EDDM, FHDDM, HDDMA, HDDMW

from learners.drift import DriftState


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
    ``confidence``)."""

    name: str
    signal: str
    make: Callable[[], Any]
    detectors: dict[tuple[str, str], Any] = field(default_factory=dict)

    def _update(self, node: str, intent: str, value: float) -> list[Alarm]:
        detector = self.detectors.get((node, intent))
        if detector is None:
            detector = self.detectors[(node, intent)] = self.make()
        detector.update(value)
        if detector.drift_detected:
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


ARMS: dict[str, tuple[str, Callable[[], Any]]] = {
    "river DDM": ("feedback", DDM),
    "river EDDM": ("feedback", EDDM),
    "river HDDM_A": ("feedback", HDDMA),
    "river HDDM_W": ("feedback", HDDMW),
    "river FHDDM": ("feedback", FHDDM),
    "river ADWIN": ("confidence", ADWIN),
    "river PageHinkley": ("confidence", lambda: PageHinkley(threshold=1.0)),
}


def river_arm(name: str) -> RiverArm:
    """A fresh arm (no detector state) named as in :data:`ARMS`."""
    signal, make = ARMS[name]
    return RiverArm(name.removeprefix("river "), signal, make)
