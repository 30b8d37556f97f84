"""End to end: `ecc demo` as a user runs it (real broker, real worker, packaged MiniLM).

The drift in the replayed stream, not a timer, must drive the loop: an alarm, a teacher
request, a training batch and a new adapter version, and the new version must know the
emerging intents.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration


def test_demo_closes_the_loop(tmp_path: Path) -> None:
    out = tmp_path / "demo"
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "streams.cli",
            "demo",
            "--turns",
            "4000",
            "--rate",
            "80",
            "--out",
            str(out),
        ],
        capture_output=True,
        text=True,
        timeout=900,
        env={**os.environ, "ECC_METRICS_PORT": "0"},  # a demo elsewhere may hold 9464
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    summary = json.loads((out / "summary.json").read_text())
    assert summary["turns_served"] == summary["turns_sent"] == 4000
    assert summary["drift_alarms"], "no drift alarm"
    onset = summary["drift_onset_turn"]
    assert all(a["after_turns"] > onset * 0.9 for a in summary["drift_alarms"]), (
        "an alarm came before the drift"
    )
    assert summary["teacher_requests"] >= 1
    assert summary["training_batches"] >= 1
    assert summary["adapter_events"].get("published", 0) >= 1
    assert summary["dead_letters"] == {}
    for node, ev in summary["eval_set"].items():
        first, final = ev["first"], ev["final"]
        assert final["intents"] > first["intents"], f"{node} never learned the new intents"
        assert final["drifted_intents_accuracy"] > first["drifted_intents_accuracy"]
    assert "what happened" in proc.stdout
