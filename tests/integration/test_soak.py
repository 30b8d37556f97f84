"""`ecc soak --quick` as a user runs it: one kill -9 of each worker kind (edge, drift,
feedback, teacher) while turns and feedback flow, a minute of load, then the audit. Nothing
the webhook accepted may be lost or learnt twice, no adapter may be corrupt, the drift
state must resume, and no dead letter may appear (the soak sends no bad input)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration


def test_quick_soak_loses_nothing(tmp_path: Path) -> None:
    out = tmp_path / "soak"
    done = subprocess.run(
        [sys.executable, "-m", "streams.cli", "soak", "--quick", "--out", str(out)],
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert done.returncode == 0, (done.stdout + done.stderr)[-5000:]
    r = json.loads((out / "soak.json").read_text())
    assert r["kills"]["total"] == 4
    assert r["kills"]["by_kind"] == {"edge": 1, "drift": 1, "feedback": 1, "teacher": 1}
    f = r["feedback"]
    assert f["accepted_labelling"] > 50, "too little feedback to say anything"
    assert f["lost"] == f["in_two_batch_ids"] == f["in_another_nodes_batch"] == 0
    assert f["in_batches"] == f["accepted_labelling"]
    assert f["batches"] > 0 and f["batches_not_applied"] == 0
    assert r["adapters"]["versions"] >= 2 and r["adapters"]["corrupt"] == 0
    assert r["drift"]["snapshots"] > 0 and r["drift"]["turn_count_regressions"] == 0
    assert r["dead_letters"] == {}
    assert r["turns"]["served"] == r["turns"]["sent"] > 0
    assert all(v for v in r["rss_mb_peak"].values()), r["rss_mb_peak"]
    assert "==== ecc soak" in done.stdout and (out / "soak.png").stat().st_size > 10_000
