"""Drift detection per ``(node, intent)``: the monitor (:mod:`.monitor`) wiring CUSUM tests
(:mod:`.cusum`), reference statistics (:mod:`.stats`), the state machine (:mod:`.machine`),
the batch scorer (:mod:`.scorer`) and the stored state (:mod:`.state`); what it is told and
tells is in :mod:`.config`."""

from learners.drift.config import SIGNALS, DriftConfig, DriftState, DriftStatus, DriftTransition
from learners.drift.monitor import DriftMonitor

__all__ = ["SIGNALS", "DriftConfig", "DriftMonitor", "DriftState", "DriftStatus", "DriftTransition"]
