"""river's drift detectors as the detector of a signal, in place of its CUSUM.

The monitor's own detector on every signal is a one-sided CUSUM (:mod:`.cusum`): one float
of state, updated a whole batch at a time with numpy. A deployment may instead put one of
river's detectors on a signal, one detector per ``(node, intent)``, fed the signal's raw
values one at a time:

``error``           1 when a user said the answer was wrong, else 0 (one per feedback);
``low_confidence``  1 when a turn was served below the confidence threshold (one per turn);
``confidence``      the turn's confidence (one per turn).

river's binary detectors (``ddm``, ``eddm``, ``hddm_a``, ``hddm_w``, ``fhddm``) are made for
0/1 streams, so they may watch ``error`` and ``low_confidence`` only; ``adwin`` and
``page_hinkley`` watch the mean of any of the three. ``distance`` and ``share`` keep their
CUSUMs: one is measured against the monitor's own centroid, the other per batch.

A river detector's verdict becomes the signal's score: 1 on ``drift_detected`` (the alarm),
the warning fraction on ``warning_detected`` (where a detector has one), else 0. The state
machine, its hysteresis and the reasons are the monitor's, whatever the detector. Defaults
are river's, as its users start, except PageHinkley's threshold: its default (50) is for
signals of a larger scale than one in [0, 1], where it would never fire; 1.0 is used.
``ecc bench drift`` measures each of them against the CUSUMs on the same replay.

>>> spec = parse_detectors("error=ddm, confidence=adwin")
>>> spec
(('confidence', 'adwin'), ('error', 'ddm'))
>>> parse_detectors("confidence=ddm")
Traceback (most recent call last):
...
ValueError: confidence=ddm: ddm is a detector of 0/1 streams; confidence takes adwin, page_hinkley

A feedback stream wrong 5 % of the time, then half of the time:

>>> watch = RiverWatch("ddm")
>>> calm = [watch.update(float(i % 20 == 0)) for i in range(400)]
>>> shifted = [watch.update(float(i % 2 == 0)) for i in range(200)]
>>> max(calm), shifted.index(DRIFT)
(0, 18)
"""

from __future__ import annotations

import base64
import pickle
from collections.abc import Callable, Iterable
from typing import Any

CUSUM = "cusum"
BINARY_DETECTORS = ("ddm", "eddm", "hddm_a", "hddm_w", "fhddm")
"""river's detectors of 0/1 streams, by the name a setting gives them."""
MEAN_DETECTORS = ("adwin", "page_hinkley")
"""river's detectors of a change in a real signal's mean."""
DETECTORS = (*BINARY_DETECTORS, *MEAN_DETECTORS)
RIVER_SIGNALS: dict[str, tuple[str, ...]] = {
    "error": DETECTORS,
    "low_confidence": DETECTORS,
    "confidence": MEAN_DETECTORS,
}
"""The signals a river detector may watch, and which ones."""


def make_detector(name: str) -> Any:
    """A fresh river detector named as in :data:`DETECTORS`. river is imported here, not
    at the top: it takes about a second, which a monitor of CUSUMs only need not pay."""
    from river.drift import ADWIN, PageHinkley
    from river.drift.binary import DDM, EDDM, FHDDM, HDDMA, HDDMW

    makers: dict[str, Callable[[], Any]] = {
        "ddm": DDM,
        "eddm": EDDM,
        "hddm_a": HDDMA,
        "hddm_w": HDDMW,
        "fhddm": FHDDM,
        "adwin": ADWIN,
        "page_hinkley": lambda: PageHinkley(threshold=1.0),
    }
    return makers[name]()


DetectorSpec = tuple[tuple[str, str], ...]
CALM, WARNING, DRIFT = 0, 1, 2
"""What a detector says after a value."""


def parse_detectors(spec: str) -> DetectorSpec:
    """``"signal=detector,..."`` as sorted pairs; ``cusum`` (the default) pairs are dropped,
    anything else unknown is refused with what is allowed (:func:`check_detectors`)."""
    pairs: list[tuple[str, str]] = []
    for part in filter(None, (p.strip() for p in spec.split(","))):
        signal, sep, name = (s.strip().lower() for s in part.partition("="))
        if not sep or not signal or not name:
            raise ValueError(f"{part!r}: write signal=detector, e.g. error=ddm")
        pairs.append((signal, name))
    return check_detectors(pairs)


def check_detectors(pairs: Iterable[tuple[str, str]]) -> DetectorSpec:
    """``(signal, detector)`` pairs checked and sorted, ``cusum`` ones dropped; a signal
    given twice, one a river detector may not watch, or a detector it does not take is
    refused with what is allowed."""
    out: dict[str, str] = {}
    for signal, name in pairs:
        if signal in out:
            raise ValueError(f"{signal}: given twice")
        if name == CUSUM:
            continue
        allowed = RIVER_SIGNALS.get(signal)
        if allowed is None:
            raise ValueError(
                f"{signal}={name}: a river detector may watch {', '.join(RIVER_SIGNALS)} "
                "(distance and share keep their CUSUMs)"
            )
        if name not in allowed:
            why = (
                f"{name} is a detector of 0/1 streams; "
                if name in BINARY_DETECTORS
                else f"{name} is not a detector here; "
            )
            raise ValueError(f"{signal}={name}: {why}{signal} takes {', '.join(allowed)}")
        out[signal] = name
    return tuple(sorted(out.items()))


def describe_detectors() -> str:
    """The signals and the detectors each takes, for the setting's help text."""
    return "; ".join(f"{signal}: {', '.join(names)}" for signal, names in RIVER_SIGNALS.items())


class RiverWatch:
    """One river detector on one signal of one intent, as a score the monitor reads."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.detector = make_detector(name)

    def update(self, value: float) -> int:
        """Feed one value; what the detector says after it (:data:`DRIFT`, :data:`WARNING`
        or :data:`CALM`). river's detectors reset themselves after a detection."""
        self.detector.update(value)
        if self.detector.drift_detected:
            return DRIFT
        return WARNING if getattr(self.detector, "warning_detected", False) else CALM

    def pack(self) -> str:
        """The detector's whole state as text, for the drift table (river's objects are
        not plain data; the table is the service's own, read by no one else)."""
        return base64.b64encode(pickle.dumps(self.detector)).decode()

    @classmethod
    def unpack(cls, name: str, text: str) -> RiverWatch:
        watch = cls(name)
        watch.detector = pickle.loads(base64.b64decode(text))  # the service's own table
        return watch
