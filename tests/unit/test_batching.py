"""Batching policy: per node, by size or age, stable batch ids, exportable open batches."""

from __future__ import annotations

import json

import pytest

from learners.batching import FeedbackBatcher, LabelledExample, batch_id


def ex(i: int, node: str = "n1") -> LabelledExample:
    return LabelledExample(f"e{i}", node, f"t{i}", f"text {i}", "track", "feedback")


def test_batches_close_by_size_per_node() -> None:
    b = FeedbackBatcher(max_size=3, max_age_s=60)
    out = []
    for i in range(7):
        out += b.add(ex(i, node="n1" if i % 2 else "n2"), now=float(i))
    assert [(x.node_id, len(x.examples), x.reason) for x in out] == [
        ("n2", 3, "size"),
        ("n1", 3, "size"),
    ]
    assert b.pending() == 1


def test_batches_close_by_age() -> None:
    b = FeedbackBatcher(max_size=100, max_age_s=10)
    b.add(ex(1), now=0.0)
    b.add(ex(2), now=9.0)
    assert b.due(now=9.9) == []
    (late,) = b.due(now=10.0)
    assert late.reason == "age" and [e.example_id for e in late.examples] == ["e1", "e2"]
    assert b.due(now=100.0) == []


def test_an_open_batch_survives_export_and_restore() -> None:
    b = FeedbackBatcher(max_size=3, max_age_s=10)
    b.add(ex(1), 1.0)
    b.add(ex(2), 2.0)
    data = json.loads(json.dumps(b.export("n1")))  # as stored in a changelog
    other = FeedbackBatcher(max_size=3, max_age_s=10)
    other.restore("n1", data)
    (batch,) = other.add(ex(3), 3.0)
    assert [e.example_id for e in batch.examples] == ["e1", "e2", "e3"]
    assert batch.started == 1.0 and batch == b.add(ex(3), 3.0)[0]
    assert other.nodes() == [] and "n1" not in other  # a closed batch leaves no state
    with pytest.raises(KeyError):
        other.export("n1")


def test_batch_ids_depend_on_node_and_examples_only() -> None:
    assert batch_id("n1", ["a", "b"]) == batch_id("n1", ["a", "b"])
    assert batch_id("n1", ["a", "b"]) != batch_id("n2", ["a", "b"])
    assert batch_id("n1", ["a", "b"]) != batch_id("n1", ["a", "c"])
    assert batch_id("n1", ["a"]).startswith("n1-")
