"""Batching policy: per node, by size or age, each example once, stable batch ids."""

from __future__ import annotations

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


def test_a_redelivered_example_is_learnt_once() -> None:
    b = FeedbackBatcher(max_size=2, max_age_s=10)
    assert b.add(ex(1), 0.0) == []
    assert b.add(ex(1), 0.1) == []
    (batch,) = b.add(ex(2), 0.2)
    assert [e.example_id for e in batch.examples] == ["e1", "e2"]


def test_batch_ids_depend_on_node_and_examples_only() -> None:
    assert batch_id("n1", ["a", "b"]) == batch_id("n1", ["a", "b"])
    assert batch_id("n1", ["a", "b"]) != batch_id("n2", ["a", "b"])
    assert batch_id("n1", ["a", "b"]) != batch_id("n1", ["a", "c"])
    assert batch_id("n1", ["a"]).startswith("n1-")
