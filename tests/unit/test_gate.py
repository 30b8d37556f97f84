from __future__ import annotations

from learners.gate import EvalGate, Scores


def test_scores() -> None:
    s = Scores.of(["a", "a", "b", "b"], ["a", "b", "b", "b"])
    assert s.accuracy == 0.75
    assert s.per_intent == {"a": 0.5, "b": 1.0}


def test_overall_regression_is_rejected() -> None:
    gate = EvalGate(tolerance=0.02)
    before = Scores.of(["a"] * 10, ["a"] * 10)
    after = Scores.of(["a"] * 10, ["a"] * 9 + ["b"])
    decision = gate.decide(before, after)
    assert not decision.accept
    assert "fell 1.000 -> 0.900" in decision.reason


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
