from __future__ import annotations

from learners.gate import EvalGate, Scores


def test_scores() -> None:
    s = Scores.of(["a", "a", "b", "b"], ["a", "b", "b", "b"])
    assert s.accuracy == 0.75
    assert s.per_intent == {"a": 0.5, "b": 1.0}


def test_overall_regression_is_rejected() -> None:
    gate = EvalGate(tolerance=0.02)
    before = Scores.of(["a"] * 10, ["a"] * 10)
    after = Scores.of(["a"] * 10, ["a"] * 8 + ["b"] * 2)
    decision = gate.decide(before, after)
    assert not decision.accept
    assert "fell 1.000 -> 0.800" in decision.reason


def test_one_example_answered_differently_is_noise() -> None:
    """A young node holds out a handful of examples; a gate that refused a candidate for
    one of them would hold the node at whichever version happened to be right on it."""
    gate = EvalGate(tolerance=0.02)
    truth = ["a"] * 3 + ["b"] * 2
    decision = gate.decide(Scores.of(truth, truth), Scores.of(truth, ["a"] * 2 + ["b"] * 3))
    assert decision.accept and "within noise" in decision.reason


def test_intent_regression_is_rejected_even_if_overall_improves() -> None:
    gate = EvalGate(tolerance=0.05, intent_tolerance=0.2, min_support=5)
    truth = ["a"] * 5 + ["b"] * 20
    before = Scores.of(truth, ["a"] * 5 + ["a"] * 10 + ["b"] * 10)
    after = Scores.of(truth, ["b"] * 5 + ["b"] * 20)
    assert after.accuracy > before.accuracy
    decision = gate.decide(before, after)
    assert not decision.accept and "'a'" in decision.reason


def test_no_holdout_accepts_unchecked() -> None:
    decision = EvalGate().decide(Scores(float("nan")), Scores(float("nan")))
    assert decision.accept and "unchecked" in decision.reason


def test_an_old_intent_eroded_a_little_per_update_is_stopped() -> None:
    """Each update loses 3 points on one intent, within every per-update tolerance; against
    the first version the losses add up, and the cumulative bound stops the erosion."""
    gate = EvalGate()
    support = {"old": 100, "other": 100}
    first = Scores(1.0, {"old": 1.0, "other": 1.0}, support)
    serving, stopped = first, None
    for step in range(1, 30):
        old = 1.0 - 0.03 * step
        candidate = Scores((old + 1.0) / 2, {"old": old, "other": 1.0}, support)
        assert gate.decide(serving, candidate).accept, "each step alone is acceptable"
        decision = gate.decide(serving, candidate, first)
        if not decision.accept:
            stopped = decision
            break
        serving = candidate
    assert stopped is not None and "since the first version" in stopped.reason
    lost = first.per_intent["old"] - serving.per_intent["old"]
    assert lost <= 2 * gate.cumulative_tolerance + 1e-9, f"the old intent lost {lost:.2f}"


def test_new_intents_do_not_count_against_the_first_version() -> None:
    support = {"old": 10, "new": 10}
    first = Scores(0.5, {"old": 1.0, "new": 0.0}, support)
    after = Scores(1.0, {"old": 1.0, "new": 1.0}, support)
    assert EvalGate().decide(first, after, first).accept


def test_a_drop_of_exactly_the_tolerance_is_accepted() -> None:
    """0.9 - 0.7 is above 0.2 in floats; losing exactly the tolerance is within it."""
    gate = EvalGate(
        tolerance=0.05, intent_tolerance=0.2, cumulative_intent_tolerance=0.2, min_support=10
    )
    truth = ["a"] * 10 + ["b"] * 90
    first = Scores.of(truth, ["a"] * 9 + ["b"] + ["b"] * 90)
    after = Scores.of(truth, ["a"] * 7 + ["b"] * 3 + ["b"] * 90)
    assert gate.decide(first, after, first).accept
    worse = Scores.of(truth, ["a"] * 6 + ["b"] * 4 + ["b"] * 90)
    decision = gate.decide(first, worse, first)
    assert not decision.accept and "'a' fell 0.90 -> 0.60" in decision.reason
