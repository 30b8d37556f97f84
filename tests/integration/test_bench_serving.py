"""`ecc bench serving --quick` as a user runs it: a real edge worker on the embedded broker
answers every turn offered at each load, also while a LoRA consolidation runs in the same
worker and head refits come every few seconds (a bounded wait: no turn times out)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.integration.conftest import quick_bench

pytestmark = pytest.mark.integration

KEYS = ("max_turns_per_s", "model_alone_utt_per_s", "broker_round_trip_ms_p50", "load_points")
POINT_KEYS = {
    "offered_share",
    "offered_turns_per_s",
    "achieved_turns_per_s",
    "learning",
    "latency_ms_p50",
    "latency_ms_p99",
}

STAGES = {"inbound", "queue", "inference", "redact", "encode", "publish"}


def test_quick_serving_bench_answers_every_turn_idle_and_learning(tmp_path: Path) -> None:
    out = tmp_path / "serving"
    report, printed = quick_bench("serving", out, "serving.json", timeout=900)
    for key in KEYS:
        assert report[key] is not None, key
    assert report["max_turns_per_s"] > 0 and report["broker_round_trip_ms_p50"] > 0
    points = report["load_points"]
    assert [(p["offered_share"], p["learning"]) for p in points] == [
        (share, learning) for learning in (False, True) for share in (0.25, 0.5, 0.9)
    ]
    for p in points:
        assert set(p) >= POINT_KEYS
        assert p["answered"] == p["turns"] > 0, p  # every turn answered, none timed out
        assert p["latency_ms_p50"] <= p["latency_ms_p99"]
        # the worker's own account of each point: every stage, inside the end-to-end time
        assert set(p["stage_ms_mean"]) == STAGES, p
        assert 0 < sum(p["stage_ms_mean"].values()) < p["latency_ms_mean"], p
    # the busy points ran beside a consolidation that had begun and never ended
    assert report["busy_learner"]["consolidation_began"]
    assert report["busy_learner"]["training_batches"] >= 2
    assert (out / "latency.png").read_bytes().startswith(b"\x89PNG")
    assert "==== ecc bench serving" in printed
