"""The per-intent state machine, as pure functions of plain values.

    stable --score>=warn--> warning --score>=1--> drifting  (the alarm)
    warning --score<warn/2--> stable
    drifting --calm turns (after a new adapter)--> recovering --more calm turns--> stable
    recovering --score>=1--> drifting (a relapse: the new adapter did not fix it)

Apart from the monitor so that every arrow can be tested from a table
(``tests/unit/test_drift_machine.py``) without feeding turns until a CUSUM happens to cross
a level. The monitor keeps what a transition *does* (CUSUMs restart at an alarm, the
reference is relearnt back in stable); here is only which state comes next and why.

>>> c = DriftConfig()
>>> next_state(DriftState.STABLE, 0.6, calm=0, adapter_since_alarm=False, config=c).value
'warning'
>>> calm = count_calm(DriftState.DRIFTING, 0.1, calm=19, turn=True, config=c)
>>> calm, next_state(DriftState.DRIFTING, 0.1, calm, adapter_since_alarm=True, config=c).value
(20, 'recovering')
"""

from __future__ import annotations

from collections.abc import Mapping

from learners.drift.config import DriftConfig, DriftState


def count_calm(state: DriftState, score: float, calm: int, turn: bool, config: DriftConfig) -> int:
    """Calm turns toward recovery after one step at ``score`` (``turn``: a turn, not feedback
    or a share update). Only drifting and recovering count them; a score at warning or above
    starts the count again."""
    if score >= 1.0 or state in (DriftState.STABLE, DriftState.WARNING):
        return calm
    if score >= config.warn_fraction:
        return 0
    return calm + 1 if turn else calm


def next_state(
    state: DriftState, score: float, calm: int, adapter_since_alarm: bool, config: DriftConfig
) -> DriftState:
    """The state after a step at ``score`` with ``calm`` calm turns (:func:`count_calm`'s,
    this step included); ``adapter_since_alarm``: a new adapter serves the intent since it
    last became drifting (recovery then needs ``recover_turns``, else
    ``recover_unaided_turns``)."""
    c = config
    if score >= 1.0:
        return DriftState.DRIFTING
    if state == DriftState.STABLE:
        return DriftState.WARNING if score >= c.warn_fraction else state
    if state == DriftState.WARNING:
        return DriftState.STABLE if score < c.warn_fraction / 2 else state
    needed = c.recover_turns
    if state == DriftState.DRIFTING and not adapter_since_alarm:
        needed = c.recover_unaided_turns
    if calm < needed:
        return state
    return DriftState.RECOVERING if state == DriftState.DRIFTING else DriftState.STABLE


def reason(
    old: DriftState,
    new: DriftState,
    recent: Mapping[str, float],
    signals: Mapping[str, float],
    calm: int,
    adapter: int | None,
    adapter_since_alarm: bool,
    warn_fraction: float,
) -> str:
    """Why ``old -> new``, for people: the signals behind a warning or an alarm (strongest
    first; ``recent`` their raw values, ``signals`` their scores), or what calmed down."""
    if new in (DriftState.DRIFTING, DriftState.WARNING):
        r = recent
        parts = {
            "low_confidence": f"low-confidence share {r['low_confidence']:.2f}",
            "confidence": f"mean confidence {r['confidence']:+.1f} sd",
            "distance": f"embedding distance {r['distance']:+.1f} sd",
            "share": f"share of traffic {r['share']:.2f}",
            "error": f"feedback error rate {r['error']:.2f}",
        }
        ranked = sorted(parts, key=lambda k: -signals[k])
        lead = [parts[k] for k in ranked if signals[k] >= warn_fraction] or [parts[ranked[0]]]
        prefix = "relapse after adapter: " if old == DriftState.RECOVERING else ""
        return prefix + "; ".join(lead)
    if new == DriftState.RECOVERING:
        if adapter_since_alarm:
            return f"signals back to reference for {calm} turns with adapter v{adapter}"
        return f"signals back to reference for {calm} turns with no new adapter"
    if old == DriftState.WARNING:
        return "signals back below the warning level"
    return "signals back to reference; reference relearnt"
