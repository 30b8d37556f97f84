"""The feedback agent's ledger: replays skipped by offset, ids claimed by one record, the
outbox and the join wait list surviving an export/restore (a restart)."""

from __future__ import annotations

import json

import pytest

from learners.batching import FeedbackBatcher, LabelledExample
from learners.feedback_ledger import FeedbackLedger, SeenIds, WaitingFeedback


def ledger(size: int = 3) -> FeedbackLedger:
    return FeedbackLedger(FeedbackBatcher(max_size=size, max_age_s=10))


def ex(i: int, node: str = "n1") -> LabelledExample:
    return LabelledExample(f"e{i}", node, f"t{i}", f"text {i}", "track", "feedback")


def roundtrip(led: FeedbackLedger, node: str) -> FeedbackLedger:
    """A restarted worker's ledger, from the record as stored (JSON)."""
    copy = ledger(led.batcher.max_size)
    copy.restore(node, json.loads(json.dumps(led.export(node))))
    return copy


def test_records_at_or_below_the_stored_offset_are_replays() -> None:
    led = ledger()
    assert led.fresh("n1", 2, "chat.feedback", 5)
    assert led.fresh("n1", 2, "teacher.annotations", 1)  # offsets are per topic
    restarted = roundtrip(led, "n1")
    assert not restarted.fresh("n1", 2, "chat.feedback", 4)
    assert not restarted.fresh("n1", 2, "chat.feedback", 5)
    assert restarted.fresh("n1", 2, "chat.feedback", 6)
    assert restarted.partition("n1") == 2


def test_an_open_batch_and_the_outbox_survive_a_restart() -> None:
    led = ledger(size=2)
    led.fresh("n1", 0, "chat.feedback", 0)
    for i in range(3):
        led.add(ex(i), now=float(i))
    (closed,) = led.outbox()
    restarted = roundtrip(led, "n1")
    assert restarted.outbox() == [closed], "a closed batch not confirmed sent is sent again"
    restarted.sent([closed])
    assert restarted.outbox() == []
    restarted.add(ex(3), now=4.0)
    (second,) = restarted.outbox()
    assert [e.example_id for e in second.examples] == ["e2", "e3"]


def test_sent_batches_leave_the_outbox_and_mark_the_node_dirty() -> None:
    led = ledger(size=1)
    led.fresh("n1", 0, "chat.feedback", 0)
    led.add(ex(1), now=0.0)
    assert led.take_dirty() == {"n1"}
    led.sent(led.outbox())
    assert led.outbox() == [] and led.take_dirty() == {"n1"}


def test_waiting_feedback_joins_or_times_out_also_after_a_restart() -> None:
    led = ledger()
    led.fresh("n1", 0, "chat.feedback", 7)
    for turn, deadline in (("t-late", 20.0), ("t-never", 15.0), ("t-later", 30.0)):
        item = WaitingFeedback({"turn_id": turn}, ("chat.feedback", 0, 7), deadline)
        led.wait("n1", item)
    restarted = roundtrip(led, "n1")
    out = list(restarted.take_waiting(now=16.0, known=lambda t: t == "t-late"))
    assert [(item.turn_id, joined) for _, item, joined in out] == [
        ("t-late", True),
        ("t-never", False),
    ]
    assert out[0][1].origin == ("chat.feedback", 0, 7)
    assert [w.turn_id for _, w, _ in restarted.take_waiting(31.0, lambda t: False)] == ["t-later"]


def test_feedback_of_a_node_whose_turns_are_behind_waits_longer() -> None:
    led = ledger()
    led.fresh("n1", 0, "chat.feedback", 1)
    led.wait("n1", WaitingFeedback({"turn_id": "t1"}, ("chat.feedback", 0, 1), 15.0))
    assert list(led.take_waiting(16.0, lambda t: False, behind={"n1"}, grace_s=60)) == []
    out = list(led.take_waiting(20.0, lambda t: t == "t1", behind={"n1"}, grace_s=60))
    assert [(item.turn_id, joined) for _, item, joined in out] == [("t1", True)]
    led.wait("n1", WaitingFeedback({"turn_id": "t2"}, ("chat.feedback", 0, 2), 15.0))
    out = list(led.take_waiting(76.0, lambda t: False, behind={"n1"}, grace_s=60))
    assert [(item.turn_id, joined) for _, item, joined in out] == [("t2", False)]


def test_an_example_of_an_unknown_node_is_a_bug_not_a_silent_default() -> None:
    with pytest.raises(KeyError, match="fresh"):
        ledger().add(ex(1), now=0.0)


def test_seen_ids_expire_in_time_order_whatever_the_restore_order() -> None:
    seen = SeenIds(ttl_s=10)
    seen.restore("b", ("chat.feedback", 0, 2), 20.0)
    seen.restore("a", ("chat.feedback", 0, 1), 12.0)
    assert seen.claim("c", ("chat.feedback", 1, 0), now=5.0)  # expires at 15
    assert [k for k, _ in seen.expire(14.0)] == ["a"]
    assert [k for k, _ in seen.expire(20.0)] == ["c", "b"]
    assert len(seen) == 0
    assert seen.claim("a", ("chat.feedback", 0, 9), now=21.0), "an expired id is free again"
