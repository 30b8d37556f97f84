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


def test_a_drift_storm_gets_the_budget_and_no_more_strongest_drift_first() -> None:
    """3 nodes, 20 intents drifting on each (distinct scores), 50 candidate turns a second
    per node for 6 minutes, a budget of 30 a minute: the budget holds, no turn twice, and
    the requests go to the most strongly drifting intent."""
    budget, minutes = 30, 6
    p = TeacherRequestPolicy(budget_per_minute=budget, low_confidence=0.5)
    nodes = ("n1", "n2", "n3")
    scores = {f"intent{k}": 0.3 + 0.03 * k for k in range(20)}  # intent19 drifts the most
    for node in nodes:
        for intent, score in scores.items():
            p.set_drifting(node, intent, True, score, 0.0)
    sent: list[tuple[float, str, str, str]] = []  # (time, node, turn, intent)
    turn = 0
    for second in range(minutes * 60):
        now = float(second)
        for node in nodes:
            for k in range(50):
                turn += 1
                intent = f"intent{(turn + k) % 20}"
                words = "".join(chr(97 + int(d)) for d in str(turn))  # a distinct text
                for c in p.offer_turn(node, f"t{turn}", intent, 0.4, f"msg {words}", now):
                    sent.append((now, c.node_id, c.turn_id, c.predicted))
        for c in p.due(now):
            sent.append((now, c.node_id, c.turn_id, c.predicted))
    for node in nodes:
        mine = [s for s in sent if s[1] == node]
        assert len(mine) <= budget * (minutes + 1)  # the bucket starts full, then refills
        for start in range(60, minutes * 60 - 60, 60):  # steady state: any minute
            in_window = [s for s in mine if start <= s[0] < start + 60]
            assert len(in_window) <= budget + 1, (node, start, len(in_window))
        # The full bucket's first burst goes to whatever comes first; from then on the
        # budget goes to the most strongly drifting intent.
        later = [s for s in mine if s[0] >= 60]
        top = sum(1 for s in later if s[3] == "intent19")
        assert top / len(later) > 0.95, (node, top, len(later))
        assert p.queued(node) <= 2 * p.queue_per_node
    turns = [s[2] for s in sent]
    assert len(turns) == len(set(turns)), "a turn was requested twice"
