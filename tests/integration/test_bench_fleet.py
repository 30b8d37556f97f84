"""`ecc bench fleet-learning --quick` as a user runs it: both arms, the late nodes' figures
on the new intents, the new node's two bootstraps, and the goals the issue names."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.integration.conftest import quick_bench

pytestmark = pytest.mark.integration

PER_NODE = (
    "new_intent_accuracy_before_labels",
    "rounds_to_answer",
    "recovery_labels",
    "largest_own_accuracy_drop_through_adoption",
    "final_own_intent_accuracy",
)


def test_quick_fleet_bench_reports_every_figure(tmp_path: Path) -> None:
    report, printed = quick_bench("fleet-learning", tmp_path, "fleet_learning.json")
    alone, fleet = report["arms"]["alone"]["nodes"], report["arms"]["fleet"]["nodes"]
    assert len(alone) == len(fleet) == report["options"]["nodes"]
    for node in fleet:
        assert all(key in node for key in PER_NODE), node
    # alone, a node cannot answer an intent it has no label of
    assert all(n["new_intent_accuracy_before_labels"] == 0.0 for n in alone[1:])
    assert all(a["status"] in ("published", "rejected") for n in fleet for a in n["adoptions"])
    assert any(a["status"] == "published" for n in fleet[1:] for a in n["adoptions"])
    new = report["new_node"]
    assert new["from_fleet"]["intents"] > new["seed_only"]["intents"]
    for key in ("new_node_gain_points", "late_nodes_answering_before_labels"):
        assert report["goals"][key] is not None
    assert (tmp_path / "fleet_learning.png").stat().st_size > 0
    assert "==== ecc bench fleet-learning" in printed
