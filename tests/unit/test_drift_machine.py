"""The drift state machine, arrow by arrow, from a table (no turns, no CUSUMs)."""

from __future__ import annotations

import pytest

from learners.drift.config import DriftConfig, DriftState
from learners.drift.machine import count_calm, next_state, reason

S, W, D, R = DriftState.STABLE, DriftState.WARNING, DriftState.DRIFTING, DriftState.RECOVERING
CONFIG = DriftConfig(warn_fraction=0.5, recover_turns=20, recover_unaided_turns=200)

# state, score, calm before, a turn (not feedback), adapter since the alarm -> calm, state
TABLE = {
    # stable
    "stable stays below warning": (S, 0.49, 0, True, False, 0, S),
    "stable -> warning at warn": (S, 0.5, 0, True, False, 0, W),
    "stable -> drifting at once at 1": (S, 1.0, 0, True, False, 0, D),
    "stable leaves calm alone": (S, 0.1, 7, True, False, 7, S),
    # warning
    "warning stays above warn/2": (W, 0.25, 0, True, False, 0, W),
    "warning stays just below 1": (W, 0.99, 0, True, False, 0, W),
    "warning -> stable below warn/2": (W, 0.24, 0, True, False, 0, S),
    "warning -> drifting at 1 (the alarm)": (W, 1.0, 0, True, False, 0, D),
    # drifting
    "drifting stays while the shift goes on": (D, 1.0, 0, True, True, 0, D),
    "drifting: a warning-level score restarts the count": (D, 0.5, 19, True, True, 0, D),
    "drifting counts a calm turn": (D, 0.2, 5, True, True, 6, D),
    "drifting: feedback is no calm turn": (D, 0.2, 19, False, True, 19, D),
    "drifting -> recovering after a new adapter": (D, 0.2, 19, True, True, 20, R),
    "drifting stays: unaided needs more turns": (D, 0.2, 19, True, False, 20, D),
    "drifting stays just short of unaided": (D, 0.2, 198, True, False, 199, D),
    "drifting -> recovering unaided": (D, 0.2, 199, True, False, 200, R),
    # recovering
    "recovering counts a calm turn": (R, 0.2, 5, True, True, 6, R),
    "recovering -> stable after more calm turns": (R, 0.2, 19, True, True, 20, S),
    "recovering -> stable, adapter or not": (R, 0.2, 19, True, False, 20, S),
    "recovering: a warning-level score restarts the count": (R, 0.7, 19, True, True, 0, R),
    "recovering -> drifting (a relapse)": (R, 1.0, 19, True, True, 19, D),
}


@pytest.mark.parametrize(
    ("state", "score", "calm", "turn", "adapter", "want_calm", "want"),
    list(TABLE.values()),
    ids=list(TABLE),
)
def test_one_step(
    state: DriftState,
    score: float,
    calm: int,
    turn: bool,
    adapter: bool,
    want_calm: int,
    want: DriftState,
) -> None:
    got_calm = count_calm(state, score, calm, turn, CONFIG)
    assert got_calm == want_calm
    assert next_state(state, score, got_calm, adapter, CONFIG) == want


def test_every_arrow_of_the_diagram_is_in_the_table() -> None:
    arrows = {(row[0], row[6]) for row in TABLE.values()}
    assert arrows >= {(S, W), (W, S), (W, D), (D, R), (R, S), (R, D), (S, D)}
    assert {(s, s) for s in DriftState} <= arrows  # and staying put, in every state


SIGNALS = {"low_confidence": 0.1, "confidence": 0.9, "distance": 0.6, "share": 0.0, "error": 0.0}
RECENT = {"low_confidence": 0.3, "confidence": 1.6, "distance": -1.8, "share": 0.1, "error": 0.0}


@pytest.mark.parametrize(
    ("old", "new", "adapter", "want"),
    [
        (W, D, False, "mean confidence +1.6 sd; embedding distance -1.8 sd"),
        (R, D, True, "relapse after adapter: mean confidence +1.6 sd; embedding distance -1.8 sd"),
        (D, R, True, "signals back to reference for 20 turns with adapter v3"),
        (D, R, False, "signals back to reference for 20 turns with no new adapter"),
        (W, S, False, "signals back below the warning level"),
        (R, S, True, "signals back to reference; reference relearnt"),
    ],
)
def test_reasons_name_the_signals_or_what_calmed(
    old: DriftState, new: DriftState, adapter: bool, want: str
) -> None:
    assert reason(old, new, RECENT, SIGNALS, 20, 3, adapter, 0.5) == want


def test_a_weak_warning_names_its_strongest_signal() -> None:
    weak = dict.fromkeys(SIGNALS, 0.1) | {"share": 0.3}
    assert reason(S, W, RECENT, weak, 0, None, False, 0.5) == "share of traffic 0.10"
