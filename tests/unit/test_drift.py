"""Drift monitor: quiet on stationary traffic, one alarm per shift, recovery after adapters."""

from __future__ import annotations

import base64
import json
from typing import Any

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


def _batches(rng: np.random.Generator, n: int, shift_from: int) -> list[tuple[list[str], Any]]:
    """Turn batches over 4 intents; from batch ``shift_from`` on, intent-0 turns go astray."""
    out = []
    for b in range(n):
        intents = [f"intent-{k}" for k in rng.integers(0, 4, 25)]
        emb, conf = [], []
        for name in intents:
            off = b >= shift_from and name == "intent-0"
            emb.append(_stream(rng, np.eye(DIM)[9 if off else int(name[-1])], 0.3))
            conf.append(float(np.clip(rng.normal(0.4 if off else 0.85, 0.1), 0, 1)))
        out.append((intents, (np.array(conf), np.stack(emb))))
    return out


def _feed(monitor: DriftMonitor, batches: list[tuple[list[str], Any]], t0: int = 0) -> list[Any]:
    alarms = []
    for t, (intents, (conf, emb)) in enumerate(batches, start=t0):
        alarms += monitor.observe_turns("n1", intents, conf, emb, float(t))
    return alarms


def test_a_batch_scores_like_its_turns_one_by_one(rng: np.random.Generator) -> None:
    """The vectorised path and the turn-by-turn path reach the same states and scores."""
    batches = _batches(rng, 80, shift_from=60)
    whole, single = DriftMonitor(), DriftMonitor()
    got_whole = _feed(whole, batches)
    got_single = []
    for t, (intents, (conf, emb)) in enumerate(batches):
        for i, name in enumerate(intents):
            got_single += single.observe_turns("n1", [name], conf[i : i + 1], emb[i : i + 1], t)
    # Share is scored per batch, so only the turn-level signals are compared.
    assert [(a.intent, a.new) for a in got_whole if a.new == DriftState.DRIFTING] == [
        ("intent-0", DriftState.DRIFTING)
    ]
    assert [(a.intent, a.new) for a in got_single if a.new == DriftState.DRIFTING] == [
        ("intent-0", DriftState.DRIFTING)
    ]
    w = {s.intent: s for s in whole.snapshot()}
    o = {s.intent: s for s in single.snapshot()}
    for name in ("intent-1", "intent-2", "intent-3"):
        assert w[name].turns == o[name].turns
        assert w[name].signals["distance_z"] == pytest.approx(
            o[name].signals["distance_z"], abs=0.3
        )


class _GeneralPathOnly(DriftMonitor):
    """The monitor with its all-intents-at-once fast path turned off."""

    def _score_in_control(self, *args: Any, **kwargs: Any) -> dict[str, Any]:
        return {}


def test_the_all_intents_fast_path_matches_the_general_path(rng: np.random.Generator) -> None:
    """Scoring the in-control intents together changes nothing: same transitions at the same
    turns, same exported state (to rounding)."""
    batches = _batches(rng, 120, shift_from=80)
    fast, general = DriftMonitor(), _GeneralPathOnly()
    got_fast, got_general = _feed(fast, batches), _feed(general, batches)
    assert [(a.intent, a.new, a.turns) for a in got_fast] == [
        (a.intent, a.new, a.turns) for a in got_general
    ]
    assert any(a.new == DriftState.DRIFTING for a in got_fast)
    fast_intents, general_intents = fast.export("n1")["intents"], general.export("n1")["intents"]
    for s in general.snapshot():
        f, g = fast_intents[s.intent], general_intents[s.intent]
        assert f["turns"] == g["turns"] and f["state"] == g["state"]
        for k in ("cusum", "recent"):
            assert f[k] == pytest.approx(g[k], abs=1e-9)
        for k in ("distance", "confidence", "low_conf"):
            assert f[k] == pytest.approx(g[k], rel=1e-9)
        assert _unpack(f["centroid"]) == pytest.approx(_unpack(g["centroid"]), abs=1e-6)


def _unpack(packed: str | None) -> np.ndarray:
    assert packed is not None
    return np.frombuffer(base64.b64decode(packed), "<f4")


def test_exported_state_resumes_exactly(rng: np.random.Generator) -> None:
    """A monitor restored from its exported (JSON) state continues as if never stopped."""
    batches = _batches(rng, 90, shift_from=70)
    straight = DriftMonitor()
    expected = _feed(straight, batches)
    first = DriftMonitor()
    got = _feed(first, batches[:75])  # stop mid-shift
    exported = json.loads(json.dumps(first.export("n1")))
    second = DriftMonitor()
    second.restore("n1", exported)
    got += _feed(second, batches[75:], t0=75)
    assert [(a.intent, a.new, a.turns) for a in got] == [
        (a.intent, a.new, a.turns) for a in expected
    ]
    assert {(s.intent, s.state, s.turns) for s in second.snapshot()} == {
        (s.intent, s.state, s.turns) for s in straight.snapshot()
    }


def test_share_of_traffic_alone_raises_an_alarm(rng: np.random.Generator) -> None:
    """An emerging intent the model maps confidently onto an old one shows as its share."""
    monitor = DriftMonitor(DriftConfig(share_min_turns=500))
    alarms = []
    for t in range(200):
        shifted = t >= 100
        weights = [0.55, 0.15, 0.15, 0.15] if shifted else [0.25] * 4
        intents = [f"intent-{k}" for k in rng.choice(4, size=25, p=weights)]
        emb = np.stack([_stream(rng, np.eye(DIM)[int(n[-1])], 0.3) for n in intents])
        alarms += monitor.observe_turns("n1", intents, np.full(25, 0.85), emb, float(t))
    drifting = [a for a in alarms if a.new == DriftState.DRIFTING]
    assert [(a.intent, a.at >= 100) for a in drifting] == [("intent-0", True)]
    assert "share of traffic" in drifting[0].reason


def test_state_changes_are_reported_as_dirty() -> None:
    monitor = DriftMonitor()
    monitor.observe_turn("n1", "a", 0.9, np.eye(DIM)[0], 0.0)
    assert monitor.take_dirty() == {("n1", "a"), ("n1", None)}
    assert monitor.take_dirty() == set()
    monitor.set_offset("n1", "chat.turns", 41)
    assert monitor.offset("n1", "chat.turns") == 41
    assert monitor.offset("n1", "chat.feedback") == -1
