"""`ecc bench loop --quick` as a user runs it: the whole system and its three peers on one
generated stream (real broker, worker, webhook, packaged MiniLM).

The report must be complete and must agree with its own raw material: every accuracy is
recomputed here from the per-turn log (turns.csv) and the eval answers (eval.csv), the
peers' labels from the logged feedback, and the system's accuracy before the onset from
the demo's own summary (which counts from the topics, by another path).
"""

from __future__ import annotations

import csv
import json
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from harness.bench.loop import ARMS
from harness.bench.peers import recovery_turns
from tests.integration.conftest import quick_bench

pytestmark = pytest.mark.integration

FIGURES = (
    "accuracy",
    "before_onset",
    "after_onset",
    "last_20_percent",
    "new_intents_after_onset",
    "old_intents_after_onset",
    "recovery_turns",
    "recovery_turns_to_common_target",
    "eval_accuracy",
    "eval_new_intents_accuracy",
    "labels_used",
    "labels_share_of_turns",
    "teacher_requests",
    "cpu_seconds",
)


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    out = tmp_path_factory.mktemp("loop")
    _, printed = quick_bench("loop", out, "generated/loop.json")
    return out / "generated", printed


def _acc(rows: list[dict[str, str]], arm: str) -> float | None:
    return sum(r[arm] == r["label"] for r in rows) / len(rows) if rows else None


def test_report_structure_and_printed_table(run: tuple[Path, str]) -> None:
    folder, stdout = run
    report = json.loads((folder / "loop.json").read_text())
    assert report["benchmark"] == "loop"
    assert set(report["arms"]) == set(ARMS)
    for arm, figures in report["arms"].items():
        assert set(FIGURES) <= set(figures), arm
        for key in ("accuracy", "before_onset", "after_onset", "eval_accuracy"):
            assert 0.0 <= figures[key] <= 1.0, (arm, key)
        assert figures["cpu_seconds"] > 0, arm
    for key in (
        "final_accuracy_gap_to_periodic_points",
        "final_accuracy_gap_to_periodic_user_labels_points",
        "recovery_speedup_vs_river",
        "before_onset_gap_to_static_points",
        "rejected_share",
    ):
        assert key in report["goals"], key
    decided = [a["status"] for a in report["timeline"]["adapters"]]
    candidates = decided.count("published") + decided.count("rejected")
    assert report["goals"]["rejected_share"] == pytest.approx(
        decided.count("rejected") / candidates
    )
    assert report["turns"] == report["scenario"]["turns"] == 2000
    for name in ("accuracy.png", "per_intent.png", "teacher.png"):
        png = (folder / name).read_bytes()
        assert png.startswith(b"\x89PNG") and len(png) > 10_000, name
    assert "==== ecc bench loop" in stdout and str(folder / "loop.json") in stdout


def test_figures_agree_with_the_logged_predictions(run: tuple[Path, str]) -> None:
    folder, _ = run
    report = json.loads((folder / "loop.json").read_text())
    with (folder / "turns.csv").open() as f:
        rows = list(csv.DictReader(f))
    assert [int(r["index"]) for r in rows] == list(range(report["turns"]))
    onset = report["scenario"]["onset_index"]
    new = set(report["new_intents"])
    after = [r for r in rows if int(r["index"]) >= onset]
    for arm in ARMS:
        got = report["arms"][arm]
        assert got["accuracy"] == pytest.approx(_acc(rows, arm))
        assert got["before_onset"] == pytest.approx(_acc(rows[:onset], arm))
        assert got["after_onset"] == pytest.approx(_acc(after, arm))
        assert got["last_20_percent"] == pytest.approx(_acc(rows[-len(rows) // 5 :], arm))
        fresh = [r for r in after if r["label"] in new]
        assert got["new_intents_after_onset"] == pytest.approx(_acc(fresh, arm))
        window = max(10, min(200, len(fresh) // 4))
        assert got["recovery_turns"] == recovery_turns(
            [r["label"] for r in rows], [r[arm] for r in rows], new, onset, window=window
        )

    # The system's own account (summary.json, counted from chat.turns) agrees.
    summary = json.loads((folder / "summary.json").read_text())
    assert summary["stream_accuracy"]["before_drift"] == pytest.approx(_acc(rows[:onset], "system"))

    # The peers learnt exactly the labels the users gave: corrections and thumbs-up.
    given = [r for r in rows if r["feedback_label"]]
    assert {r["feedback"] for r in given} <= {"correction", "thumbs_up"}
    assert all(r["feedback_label"] == r["label"] for r in given)
    for arm in ("river", "periodic"):
        assert report["arms"][arm]["labels_used"] == {"user": len(given), "teacher": 0}
    # ... and the system got each of them into a training batch: none lost on the way.
    assert report["arms"]["system"]["labels_used"]["user"] == len(given)
    # The same-labels peers learnt the teacher's labels too: as many as the system did.
    for arm in ("river_same_labels", "periodic_same_labels"):
        assert report["arms"][arm]["labels_used"] == report["arms"]["system"]["labels_used"]
    assert report["user_feedback"] == dict(Counter(r["feedback"] for r in rows if r["feedback"]))


def test_eval_figures_agree_with_the_logged_answers(run: tuple[Path, str]) -> None:
    folder, _ = run
    report = json.loads((folder / "loop.json").read_text())
    with (folder / "eval.csv").open() as f:
        rows = list(csv.DictReader(f))
    nodes = sorted({r["node"] for r in rows})
    assert nodes == sorted(report["options"]["nodes"])
    for arm in ARMS:
        per_node = [_acc([r for r in rows if r["node"] == n], arm) for n in nodes]
        mean: Any = sum(a for a in per_node if a is not None) / len(nodes)
        assert report["arms"][arm]["eval_accuracy"] == pytest.approx(mean), arm
    # the static peer and the system's first version know no new intent; the final ones do
    new = set(report["new_intents"])
    assert not any(r["static"] in new for r in rows)
    assert not any(r["system_first"] in new for r in rows)
    assert any(r["system"] in new for r in rows)
