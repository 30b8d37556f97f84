"""What the drift monitor is told and what it tells: its configuration, the states of an
intent, the transitions and statuses it reports, and the names of its signals.

Kept apart from the monitor so that the state machine (:mod:`.machine`), the batch scorer
(:mod:`.scorer`) and the stored state (:mod:`.state`) share these without importing the
monitor (which imports them all).
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Any

import numpy as np

SIGNALS = ("low_confidence", "confidence", "distance", "share", "error")
TURN_SIGNALS = ("low_confidence", "distance", "confidence")  # scored per turn
Vector = np.ndarray[Any, Any]


class DriftState(StrEnum):
    """An intent's state (:mod:`.machine` says how it moves)."""

    STABLE = "stable"
    WARNING = "warning"
    DRIFTING = "drifting"
    RECOVERING = "recovering"


@dataclass(frozen=True)
class DriftConfig:
    """Every knob of the monitor; frozen, so one instance is safely shared (and a default)."""

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
    detectors: tuple[tuple[str, str], ...] = ()
    """river's detector in place of the CUSUM of a signal, as ``(signal, detector)`` pairs
    (:func:`learners.drift.detectors.parse_detectors`); a signal not named keeps its
    CUSUM. ``ecc bench drift`` measures each against the CUSUMs (README)."""


@dataclass(frozen=True)
class DriftTransition:
    """A change of state, as published on ``drift.events`` (``signals`` and ``reason`` as
    they stood at that turn)."""

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
    """Where an intent stands now, for the periodic snapshot and the gauges."""

    node_id: str
    intent: str
    state: DriftState
    score: float
    signals: dict[str, float]
    turns: int
    since: float


def decision_levels(c: DriftConfig) -> dict[str, float]:
    """Each signal's CUSUM decision level: a signal's score is its CUSUM over this."""
    return {
        "low_confidence": c.threshold,
        "confidence": c.gaussian_threshold,
        "distance": c.gaussian_threshold,
        "share": c.threshold,
        "error": c.threshold,
    }
