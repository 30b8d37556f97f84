"""`ecc bench nodes --quick` as a user runs it: nodes bootstrapped, loaded into one fresh
process and served in mixed micro-batches, with every figure the report promises."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.integration.conftest import quick_bench

pytestmark = pytest.mark.integration

KEYS = (
    "rss_mib",
    "marginal_mib_per_node",
    "turns_per_s",
    "single_node_turns_per_s",
    "mixed_throughput_ratio",
    "cold_load_ms_p50",
    "cold_load_ms_p99",
    "learning_node_mib",
)


def test_quick_nodes_bench_reports_every_figure(tmp_path: Path) -> None:
    report, printed = quick_bench("nodes", tmp_path, "nodes.json")
    assert [p["nodes"] for p in report["points"]] == report["options"]["counts"]
    for point in report["points"]:
        assert all(point[key] is not None and point[key] >= 0 for key in KEYS), point
        assert point["cold_load_ms_p50"] <= point["cold_load_ms_p99"]
        assert point["learning_status"] == "published"
    assert report["points"][-1]["distinct_nodes_per_batch"] > 1  # batches did mix nodes
    assert (tmp_path / "nodes.png").stat().st_size > 0
    assert "==== ecc bench nodes" in printed
