"""river's detectors on the monitor's signals (``ECC_DRIFT_DETECTORS``): they alarm on the
shift they are made for, through the monitor's state machine; their state survives a
restart; a batch scores like its turns one by one; a bad setting is refused clearly."""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import pytest

from learners.drift import DriftConfig, DriftMonitor, DriftState
from learners.drift.detectors import parse_detectors
from streams.settings import Settings
from tests.unit.test_drift import _feed

DIM = 16


def _unit(rng: np.random.Generator, centre: int, spread: float = 0.3) -> np.ndarray:
    v = np.eye(DIM)[centre] + spread * rng.normal(size=DIM)
    return v / np.linalg.norm(v)


def _monitor(spec: str) -> DriftMonitor:
    return DriftMonitor(DriftConfig(min_turns=30, detectors=parse_detectors(spec)))


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("confidence=ddm", "ddm is a detector of 0/1 streams"),
        ("distance=adwin", "distance and share keep their CUSUMs"),
        ("error=kswin", "kswin is not a detector here"),
        ("error", "write signal=detector"),
        ("error=ddm,error=eddm", "error: given twice"),
    ],
)
def test_a_bad_spec_is_refused_with_what_is_allowed(spec: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        parse_detectors(spec)


def test_cusum_is_the_default_and_may_be_named() -> None:
    assert parse_detectors("") == parse_detectors("error=cusum") == ()
    assert Settings().drift_config().detectors == ()


def test_the_setting_reaches_the_monitor_and_a_bad_one_names_the_variable() -> None:
    s = Settings.from_env({"ECC_DRIFT_DETECTORS": "Error = DDM, confidence=adwin"})
    assert s.drift_config().detectors == (("confidence", "adwin"), ("error", "ddm"))
    with pytest.raises(ValueError, match="ECC_DRIFT_DETECTORS='confidence=ddm'"):
        Settings.from_env({"ECC_DRIFT_DETECTORS": "confidence=ddm"})


@pytest.mark.parametrize("detector", ["ddm", "hddm_a", "adwin"])
def test_a_river_detector_on_feedback_errors_alarms_on_their_rise(detector: str) -> None:
    rng = np.random.default_rng(3)
    monitor = _monitor(f"error={detector}")
    for t in range(300):
        monitor.observe_turn("n1", "refund", 0.9, _unit(rng, 0), t)
        monitor.observe_feedback("n1", "refund", bool(rng.random() < 0.05), t)
    assert monitor.state("n1", "refund") == DriftState.STABLE
    alarms = []
    for t in range(300, 500):
        alarms += monitor.observe_feedback("n1", "refund", bool(rng.random() < 0.6), t)
    drifting = [a for a in alarms if a.new == DriftState.DRIFTING]
    assert len(drifting) == 1, "one alarm for one shift (the monitor's hysteresis)"
    assert "error rate" in drifting[0].reason
    assert monitor.export("n1")["intents"]["refund"]["river"]["error"][0] == detector


def test_adwin_on_confidence_alarms_on_the_intent_that_shifted() -> None:
    """A fall of confidence that stays above the low-confidence threshold: only the
    confidence signal (ADWIN here, not a CUSUM) can see it."""
    rng = np.random.default_rng(5)
    monitor = _monitor("confidence=adwin")
    for t in range(300):
        monitor.observe_turn("n1", "track", float(rng.normal(0.85, 0.05)), _unit(rng, 0), t)
        monitor.observe_turn("n1", "cancel", float(rng.normal(0.85, 0.05)), _unit(rng, 1), t)
    alarms = []
    for t in range(300, 600):
        alarms += monitor.observe_turn(
            "n1", "track", float(rng.normal(0.7, 0.05)), _unit(rng, 0), t
        )
        alarms += monitor.observe_turn(
            "n1", "cancel", float(rng.normal(0.85, 0.05)), _unit(rng, 1), t
        )
    drifting = [a for a in alarms if a.new == DriftState.DRIFTING]
    assert [a.intent for a in drifting] == ["track"]
    assert drifting[0].at - 300 < 100 and "mean confidence" in drifting[0].reason
    assert monitor.state("n1", "cancel") == DriftState.STABLE


def _batches(rng: np.random.Generator, n: int, shift_from: int) -> list[tuple[list[str], Any]]:
    """Turn batches over 3 intents; from ``shift_from`` on, intent-0 is served less sure."""
    out = []
    for b in range(n):
        intents = [f"intent-{k}" for k in rng.integers(0, 3, 20)]
        conf = [
            float(
                np.clip(
                    rng.normal(0.35 if b >= shift_from and x == "intent-0" else 0.85, 0.1), 0, 1
                )
            )
            for x in intents
        ]
        emb = np.stack([_unit(rng, int(x[-1])) for x in intents])
        out.append((intents, (np.array(conf), emb)))
    return out


SPEC = "low_confidence=ddm,confidence=page_hinkley,error=eddm"


def test_a_batch_scores_like_its_turns_one_by_one() -> None:
    """river's detectors see turns one at a time whatever the batching: same alarms."""
    batches = _batches(np.random.default_rng(7), 60, shift_from=40)
    whole, single = _monitor(SPEC), _monitor(SPEC)
    got_whole = _feed(whole, batches)
    got_single = []
    for t, (intents, (conf, emb)) in enumerate(batches):
        for i, name in enumerate(intents):
            got_single += single.observe_turns("n1", [name], conf[i : i + 1], emb[i : i + 1], t)
    turn_level = lambda alarms: [  # noqa: E731  (share is scored per batch)
        (a.intent, a.new, a.turns) for a in alarms if "share" not in a.reason
    ]
    assert turn_level(got_whole) == turn_level(got_single)
    assert ("intent-0", DriftState.DRIFTING) in {(a.intent, a.new) for a in got_whole}


def test_exported_state_resumes_exactly() -> None:
    """The detectors' state is in the export: a restored monitor goes on as if never stopped."""
    batches = _batches(np.random.default_rng(11), 70, shift_from=50)
    straight = _monitor(SPEC)
    expected = _feed(straight, batches)
    first = _monitor(SPEC)
    got = _feed(first, batches[:55])  # stop mid-shift
    second = _monitor(SPEC)
    second.restore("n1", json.loads(json.dumps(first.export("n1"))))
    got += _feed(second, batches[55:], t0=55)
    assert [(a.intent, a.new, a.turns) for a in got] == [
        (a.intent, a.new, a.turns) for a in expected
    ]
    assert any(a.new == DriftState.DRIFTING for a in expected)


def test_a_checkpoint_from_before_river_loads() -> None:
    batches = _batches(np.random.default_rng(13), 10, shift_from=99)
    m = DriftMonitor()
    _feed(m, batches)
    old = json.loads(json.dumps(m.export("n1")))
    for record in old["intents"].values():
        del record["river"]
    restored = _monitor("confidence=adwin")
    restored.restore("n1", old)
    _feed(restored, batches, t0=10)
    assert "confidence" in restored.export("n1")["intents"]["intent-0"]["river"]
