"""Teacher-request policy: drifting intents only, budget per node, never twice, diverse."""

from __future__ import annotations

from learners.teacher_policy import TeacherRequestPolicy


def test_nothing_is_requested_while_no_intent_drifts() -> None:
    p = TeacherRequestPolicy(budget_per_minute=100, low_confidence=0.5)
    assert all(p.offer_turn("n1", f"t{i}", "track", 0.2, f"text {i}", i) == [] for i in range(50))


def test_an_alarm_offers_the_recent_turns_weakest_first() -> None:
    p = TeacherRequestPolicy(budget_per_minute=100, low_confidence=0.5, recent_per_intent=3)
    for i, conf in enumerate([0.9, 0.3, 0.6, 0.2]):
        p.offer_turn("n1", f"t{i}", "track", conf, f"where is parcel {chr(97 + i)}", i)
    got = p.set_drifting("n1", "track", True, 0.9, 10.0)
    assert [c.turn_id for c in got] == ["t3", "t1", "t2"]
    assert p.drifting("n1") == {"track": 0.9}
    assert p.set_drifting("n1", "track", False, 0.1, 11.0) == []
    assert p.offer_turn("n1", "t9", "track", 0.1, "new text", 12.0) == []


def test_budget_is_per_node_and_refills() -> None:
    p = TeacherRequestPolicy(budget_per_minute=6, low_confidence=0.5)
    for node in ("n1", "n2"):
        p.set_drifting(node, "track", True, 1.0, 0.0)
    sent = {"n1": 0, "n2": 0}
    for i in range(20):
        for node in ("n1", "n2"):
            sent[node] += len(
                p.offer_turn(node, f"{node}-{i}", "track", 0.3, "q " + "x" * (i + 1), 0)
            )
    assert sent == {"n1": 6, "n2": 6}
    assert p.budget_left("n1", 0.0) < 1
    # 10 s later one more token (6 a minute)
    assert len(p.offer_turn("n1", "late", "track", 0.3, "q late", 10.0)) == 1


def test_never_the_same_turn_or_near_duplicate_text_twice() -> None:
    p = TeacherRequestPolicy(budget_per_minute=100, low_confidence=0.5)
    p.set_drifting("n1", "track", True, 1.0, 0.0)
    assert len(p.offer_turn("n1", "t1", "track", 0.3, "Where is order 123?", 1)) == 1
    assert p.offer_turn("n1", "t1", "track", 0.3, "other text", 2) == []
    assert p.offer_turn("n1", "t2", "track", 0.3, "where is ORDER 456", 3) == []
    assert len(p.offer_thumbs_down("n1", "t3", "cancel", "stop it now", 4)) == 1
    assert p.offer_thumbs_down("n1", "t3", "cancel", "stop it now", 5) == []
