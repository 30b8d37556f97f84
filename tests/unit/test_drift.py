"""Drift monitor: quiet on stationary traffic, one alarm per shift, recovery after adapters."""

from __future__ import annotations

import numpy as np
import pytest

from learners.drift import DriftConfig, DriftMonitor, DriftState

DIM = 16


def _stream(rng: np.random.Generator, centre: np.ndarray, spread: float) -> np.ndarray:
    v = centre + spread * rng.normal(size=DIM)
    return v / np.linalg.norm(v)


@pytest.fixture()
def rng() -> np.random.Generator:
    return np.random.default_rng(42)


def test_stationary_traffic_raises_no_alarm(rng: np.random.Generator) -> None:
    monitor = DriftMonitor(DriftConfig(min_turns=30))
    centres = {f"intent-{i}": np.eye(DIM)[i] for i in range(5)}
    alarms = []
    for t in range(10_000):
        intent = f"intent-{t % 5}"
        conf = float(np.clip(rng.normal(0.8, 0.15), 0, 1))
        alarms += monitor.observe_turn("n1", intent, conf, _stream(rng, centres[intent], 0.3), t)
        if t % 4 == 0:
            alarms += monitor.observe_feedback("n1", intent, bool(rng.random() < 0.1), t)
    assert [a for a in alarms if a.new == DriftState.DRIFTING] == []


def test_a_shift_raises_one_alarm_naming_the_intent(rng: np.random.Generator) -> None:
    monitor = DriftMonitor(DriftConfig(min_turns=30))
    a, b = np.eye(DIM)[0], np.eye(DIM)[1]
    for t in range(200):
        monitor.observe_turn("n1", "track", 0.85, _stream(rng, a, 0.3), t)
        monitor.observe_turn("n1", "cancel", 0.85, _stream(rng, b, 0.3), t)
    onset = 200
    alarms = []
    for t in range(onset, onset + 400):
        # half of "track" turns now come from an intent the model does not know
        new = rng.random() < 0.5
        emb = _stream(rng, np.eye(DIM)[5] if new else a, 0.3)
        alarms += monitor.observe_turn("n1", "track", 0.35 if new else 0.85, emb, t)
        alarms += monitor.observe_turn("n1", "cancel", 0.85, _stream(rng, b, 0.3), t)
    drifting = [x for x in alarms if x.new == DriftState.DRIFTING]
    assert len(drifting) == 1
    assert (drifting[0].node_id, drifting[0].intent) == ("n1", "track")
    assert drifting[0].at - onset < 50, "detection took too long"
    assert drifting[0].reason
    assert monitor.state("n1", "cancel") == DriftState.STABLE


def test_error_feedback_alone_raises_an_alarm(rng: np.random.Generator) -> None:
    monitor = DriftMonitor(DriftConfig(min_turns=20))
    c = np.eye(DIM)[0]
    for t in range(100):
        monitor.observe_turn("n1", "refund", 0.9, _stream(rng, c, 0.3), t)
        monitor.observe_feedback("n1", "refund", bool(rng.random() < 0.05), t)
    alarms = []
    for t in range(100, 200):
        alarms += monitor.observe_feedback("n1", "refund", bool(rng.random() < 0.7), t)
    assert [x.new for x in alarms][-1] == DriftState.DRIFTING
    assert "error rate" in alarms[-1].reason


def test_recovery_after_an_adapter_then_stable_with_a_new_reference(
    rng: np.random.Generator,
) -> None:
    cfg = DriftConfig(min_turns=20, recover_turns=15)
    monitor = DriftMonitor(cfg)
    c = np.eye(DIM)[0]
    for t in range(100):
        monitor.observe_turn("n1", "track", 0.9, _stream(rng, c, 0.3), t)
    for t in range(100, 200):
        monitor.observe_turn("n1", "track", 0.2, _stream(rng, np.eye(DIM)[3], 0.3), t)
    assert monitor.state("n1", "track") == DriftState.DRIFTING
    monitor.adapter_published("n1", 2, 200)
    states = []
    for t in range(200, 300):
        for tr in monitor.observe_turn("n1", "track", 0.9, _stream(rng, c, 0.3), t):
            states.append(tr.new)
    assert states == [DriftState.RECOVERING, DriftState.STABLE]
    status = {(s.node_id, s.intent): s for s in monitor.snapshot()}[("n1", "track")]
    assert status.state == DriftState.STABLE and 0.0 <= status.score <= 1.0
    assert set(status.signals) >= {"low_confidence", "error", "distance"}


def test_nodes_are_independent(rng: np.random.Generator) -> None:
    monitor = DriftMonitor(DriftConfig(min_turns=20))
    c = np.eye(DIM)[0]
    for t in range(100):
        for node in ("n1", "n2"):
            monitor.observe_turn(node, "track", 0.9, _stream(rng, c, 0.3), t)
    for t in range(100, 200):
        monitor.observe_turn("n1", "track", 0.2, _stream(rng, np.eye(DIM)[3], 0.3), t)
        monitor.observe_turn("n2", "track", 0.9, _stream(rng, c, 0.3), t)
    assert monitor.state("n1", "track") == DriftState.DRIFTING
    assert monitor.state("n2", "track") == DriftState.STABLE


def test_a_new_adapter_version_moving_embeddings_is_not_drift(rng: np.random.Generator) -> None:
    """LoRA updates move the embedding space; the distance reference follows the version."""
    monitor = DriftMonitor(DriftConfig(min_turns=20))
    alarms = []
    for version in range(1, 6):
        centre = np.eye(DIM)[0] + 0.6 * version * np.eye(DIM)[1]  # the space rotates
        for t in range(100):
            emb = _stream(rng, centre / np.linalg.norm(centre), 0.3)
            alarms += monitor.observe_turn("n1", "track", 0.9, emb, version * 100 + t, version)
        monitor.adapter_published("n1", version + 1, version * 100 + 100)
    assert alarms == []
