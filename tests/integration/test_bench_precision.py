"""`ecc bench precision --quick` as a user runs it: both number formats embed the same
data through the production path on the packaged MiniLM, and the report says what each
costs and what it changes."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.integration.conftest import quick_bench

pytestmark = pytest.mark.integration


def test_quick_precision_bench_reports_both_formats(tmp_path: Path) -> None:
    report, printed = quick_bench("precision", tmp_path, "precision.json")
    assert set(report["formats"]) == {"float32", "bfloat16"}
    for arm in report["formats"].values():
        assert 0.5 < arm["test_accuracy"] <= 1.0  # generated intents are easy to tell apart
        assert arm["embed_utt_per_s"] > 0 and arm["single_utterance_ms_p50"] > 0
    assert report["cosine_to_float32"]["min"] > 0.99  # the same model, rounded differently
    assert report["C"] in (0.1, 1.0, 10.0, 100.0)
    assert "==== ecc bench precision" in printed
