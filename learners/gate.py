"""The evaluation gate: a candidate version serves only if it does not regress.

Both versions are scored on the same held-out examples (never trained on). A candidate is
rejected if its overall accuracy drops by more than ``tolerance``, or if any intent with at
least ``min_support`` held-out examples drops by more than ``intent_tolerance``.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field


@dataclass(frozen=True)
class Scores:
    """Accuracy overall and per intent on a held-out set.

    >>> s = Scores.of(["a", "a", "b"], ["a", "b", "b"])
    >>> round(s.accuracy, 3), s.per_intent, s.support
    (0.667, {'a': 0.5, 'b': 1.0}, {'a': 2, 'b': 1})
    """

    accuracy: float
    per_intent: dict[str, float] = field(default_factory=dict)
    support: dict[str, int] = field(default_factory=dict)

    @classmethod
    def of(cls, truth: Sequence[str], predicted: Sequence[str]) -> Scores:
        if len(truth) != len(predicted):
            raise ValueError("truth and predictions differ in length")
        if not truth:
            return cls(accuracy=float("nan"))
        support = Counter(truth)
        hits = Counter(t for t, p in zip(truth, predicted, strict=True) if t == p)
        per = {lab: hits[lab] / n for lab, n in sorted(support.items())}
        return cls(sum(hits.values()) / len(truth), per, dict(sorted(support.items())))


@dataclass(frozen=True)
class GateDecision:
    accept: bool
    reason: str
    before: Scores
    after: Scores


@dataclass(frozen=True)
class EvalGate:
    """Decides on a candidate from its held-out scores and the serving version's.

    >>> gate = EvalGate(tolerance=0.02)
    >>> gate.decide(Scores(0.90), Scores(0.80)).accept
    False
    >>> gate.decide(Scores(0.90), Scores(0.89)).accept
    True
    """

    tolerance: float = 0.02
    intent_tolerance: float = 0.25
    min_support: int = 8
    min_holdout: int = 1

    def decide(self, before: Scores, after: Scores) -> GateDecision:
        n = sum(after.support.values())
        if after.support and n < self.min_holdout:
            return GateDecision(
                True, f"only {n} held-out examples: accepted unchecked", before, after
            )
        if before.accuracy != before.accuracy or after.accuracy != after.accuracy:  # NaN: no data
            return GateDecision(True, "no held-out examples yet: accepted unchecked", before, after)
        drop = before.accuracy - after.accuracy
        if drop > self.tolerance:
            return GateDecision(
                False,
                f"held-out accuracy fell {before.accuracy:.3f} -> {after.accuracy:.3f} "
                f"(tolerance {self.tolerance:.3f})",
                before,
                after,
            )
        for intent, acc in after.per_intent.items():
            old = before.per_intent.get(intent)
            if old is None or after.support.get(intent, 0) < self.min_support:
                continue
            if old - acc > self.intent_tolerance:
                return GateDecision(
                    False,
                    f"intent {intent!r} fell {old:.2f} -> {acc:.2f} "
                    f"(tolerance {self.intent_tolerance:.2f})",
                    before,
                    after,
                )
        return GateDecision(
            True, f"held-out accuracy {before.accuracy:.3f} -> {after.accuracy:.3f}", before, after
        )
