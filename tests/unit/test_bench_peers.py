"""The benchmarks' peers on frozen embeddings: prequential order, periodic refits, recovery."""

from __future__ import annotations

import numpy as np

from harness.bench.peers import (
    choose_c,
    fit_logistic,
    recovery_turns,
    replay,
    river_scores,
    tune_river,
)
from learners.options import EdgeOptions

A, B, C = np.eye(3)


def test_a_turn_is_predicted_before_its_own_label_is_learnt() -> None:
    seeds = np.stack([A, B])
    stream = np.stack([C] * 6)
    run = replay(seeds, ["a", "b"], stream, {i: "c" for i in range(6)}, period=3, eval_x=seeds)
    out = {name: peer.stream for name, peer in run.items()}
    assert out["static"] == [out["static"][0]] * 6 and "c" not in out["static"]
    assert out["river"][0] != "c", "turn 0 was predicted after learning its label"
    # periodic: refit at turns 3 (labels of 0-2 known), so turns 0-2 cannot say "c"
    assert "c" not in out["periodic"][:3] and out["periodic"][3:] == ["c"] * 3
    # the final states: the static peer never learnt "c"; each gives one answer per eval row
    assert run["static"].final_eval == ["a", "b"]
    assert all(len(peer.final_eval) == 2 and peer.cpu_s >= 0 for peer in run.values())


def test_a_late_label_is_learnt_when_it_arrives_not_at_its_turn() -> None:
    seeds = np.stack([A, B])
    stream = np.stack([C] * 6)
    run = replay(seeds, ["a", "b"], stream, {}, period=1, late={3: [(0, "c"), (1, "c")]})
    assert "c" not in run["river"].stream[:4] and "c" not in run["periodic"].stream[:4]
    assert run["periodic"].stream[4:] == ["c", "c"]


def test_without_feedback_the_periodic_peer_stays_the_static_one() -> None:
    seeds = np.stack([A, B])
    stream = np.stack([A, B, A, B])
    out = replay(seeds, ["a", "b"], stream, {}, period=1)
    assert out["periodic"].stream == out["static"].stream == ["a", "b", "a", "b"]


def test_logistic_regression_separates_what_it_was_given() -> None:
    rng = np.random.default_rng(0)
    x = np.concatenate([rng.normal(m, 0.1, size=(20, 3)) for m in (A, B, C)])
    y = ["a"] * 20 + ["b"] * 20 + ["c"] * 20
    assert (fit_logistic(x, y).predict(x) == np.array(y)).mean() == 1.0


def test_recovery_counts_turns_from_the_onset_and_none_without_new_turns() -> None:
    truth = ["old"] * 5 + ["new"] * 10
    preds = ["old"] * 5 + ["old"] * 4 + ["new"] * 6
    assert recovery_turns(truth, preds, {"new"}, onset=5, window=3) == 7
    assert recovery_turns(truth, preds, {"other"}, onset=5) is None
    assert recovery_turns(truth, ["old"] * 15, {"new"}, onset=5) is None


def test_c_is_chosen_by_cross_validation_on_the_labels_given() -> None:
    """A C so small that the unpenalised bias wins (everything is the majority class) loses
    the cross-validation to C=10 on separable data, whichever order the grid has; too few
    labels to fold give the service head's default."""
    rng = np.random.default_rng(1)
    sizes = {"a": 60, "b": 15, "c": 15}
    clean = np.concatenate(
        [rng.normal(m, 0.05, size=(n, 3)) for m, n in zip((A, B, C), sizes.values(), strict=True)]
    )
    y = [lab for lab, n in sizes.items() for _ in range(n)]
    assert choose_c(clean, y, grid=(1e-6, 10.0)) == choose_c(clean, y, grid=(10.0, 1e-6)) == 10.0
    few = choose_c(clean[[0, 60, 75]], ["a", "b", "c"], grid=(1e-6, 1.0))
    assert few == EdgeOptions.head_c
    assert fit_logistic(clean, y, c=1.0).c == 1.0


def test_river_learning_rate_is_the_best_on_held_out_labels() -> None:
    rng = np.random.default_rng(2)
    x = np.concatenate([rng.normal(m, 0.6, size=(16, 3)) for m in (A, B, C)])
    y = ["a"] * 16 + ["b"] * 16 + ["c"] * 16
    scores = river_scores(x, y, grid=(0.01, 0.5, 5.0))
    assert set(scores) == {0.01, 0.5, 5.0} and all(0 <= v <= 1 for v in scores.values())
    assert scores[tune_river(x, y, grid=(0.01, 0.5, 5.0))] == max(scores.values())
