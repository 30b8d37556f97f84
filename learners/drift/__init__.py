"""Drift detection per ``(node, intent)``: CUSUM tests (:mod:`.cusum`), reference statistics
(:mod:`.stats`) and the monitor with its state machine (:mod:`.monitor`)."""

from learners.drift.monitor import (
    SIGNALS,
    DriftConfig,
    DriftMonitor,
    DriftState,
    DriftStatus,
    DriftTransition,
)

__all__ = ["SIGNALS", "DriftConfig", "DriftMonitor", "DriftState", "DriftStatus", "DriftTransition"]
