"""The simple alternatives the benchmarks set the edge learner beside, on frozen embeddings,
each set up as its own users would set it up.

- :func:`fit_logistic`: scikit-learn's ``LogisticRegression`` (multinomial, L-BFGS) with
  its ``C`` chosen by cross-validation on the training labels only (:func:`choose_c`), the
  "retrain on all labels so far" reference; the chosen ``C`` goes into the reports;
- :class:`RiverPeer`: river's online softmax regression, one example at a time, with its
  learning rate chosen on held-out training labels (:func:`tune_river`);
- :func:`replay` runs them prequentially over a stream in which some turns get a label
  (feedback) when they are served: each turn is predicted before its label is learnt.
  The static peer is the starting model, never updated; the periodic peer refits the
  logistic regression (C chosen anew by cross-validation) on the seeds and every label
  seen so far every ``period`` turns.

>>> import numpy as np
>>> x = np.array([[1.0, 0.0], [0.0, 1.0], [0.9, 0.1], [0.1, 0.9], [0.95, 0.0], [0.0, 0.95]])
>>> y = ["a", "b", "a", "b", "a", "b"]
>>> fit_logistic(x, y).predict(x[2:]).tolist()
['a', 'b', 'a', 'b']
"""

from __future__ import annotations

import time
import warnings
from collections import Counter
from collections.abc import Hashable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from learners.options import EdgeOptions

Vectors = np.ndarray[Any, Any]
C_GRID = (0.1, 1.0, 10.0, 100.0)
"""The C values cross-validated (scikit-learn's own grid spacing, a decade apart)."""
RIVER_GRID = (0.05, 0.2, 0.5, 1.0, 2.0, 5.0)
"""River's learning rates tried on held-out training labels."""
RIVER_SEED_PASSES = 3


@dataclass(frozen=True)
class Logistic:
    """A fitted logistic regression and the C it was fitted with."""

    model: Any
    c: float

    def predict(self, v: Vectors) -> np.ndarray[Any, Any]:
        v = np.asarray(v, dtype=np.float32)
        if not len(v):
            return np.array([], dtype=object)
        if isinstance(self.model, str):  # one class only: nothing to tell apart
            return np.array([self.model] * len(v), dtype=object)
        return np.asarray(self.model.predict(v), dtype=object)


def _folds(labels: Sequence[str], most: int = 5) -> int:
    """Stratified folds the labels allow (each class in every fold), at most ``most``."""
    return max(0, min(most, min(Counter(labels).values())))


def choose_c(x: Vectors, labels: Sequence[str], grid: Sequence[float] = C_GRID) -> float:
    """The C of ``grid`` with the best stratified cross-validated accuracy on ``(x,
    labels)`` (the service head's own default, ``EdgeOptions.head_c``, when the labels are
    too few to fold)."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import StratifiedKFold, cross_val_score

    folds = _folds(labels)
    if len(grid) == 1:
        return float(grid[0])
    if folds < 2:
        return EdgeOptions.head_c
    cv = StratifiedKFold(folds, shuffle=True, random_state=0)
    scores = []
    for c in grid:
        model = LogisticRegression(C=c, max_iter=2000)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            scores.append(cross_val_score(model, x, list(labels), cv=cv).mean())
    return float(grid[int(np.argmax(scores))])


def fit_logistic(x: Vectors, labels: Sequence[str], c: float | None = None) -> Logistic:
    """scikit-learn's multinomial logistic regression; ``c`` None: chosen by
    :func:`choose_c` on these labels."""
    from sklearn.linear_model import LogisticRegression

    x = np.asarray(x, dtype=np.float32)
    if len(set(labels)) == 1:
        return Logistic(str(labels[0]), EdgeOptions.head_c if c is None else c)
    chosen = choose_c(x, labels) if c is None else c
    model = LogisticRegression(C=chosen, max_iter=2000)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # convergence notes on tiny seed sets
        model.fit(x, list(labels))
    return Logistic(model, chosen)


class RiverPeer:
    """river's online softmax regression on frozen embeddings."""

    def __init__(self, learning_rate: float) -> None:
        from river import linear_model, optim

        self.learning_rate = learning_rate
        self.model = linear_model.SoftmaxRegression(optimizer=optim.SGD(learning_rate))

    @staticmethod
    def _feats(v: Vectors) -> dict[Hashable, Any]:
        return {i: float(x) for i, x in enumerate(v)}

    def predict(self, v: Vectors) -> str:
        return str(self.model.predict_one(self._feats(v)))

    def learn(self, v: Vectors, label: str) -> None:
        self.model.learn_one(self._feats(v), label)

    def bootstrap(self, x: Vectors, labels: Sequence[str], passes: int = RIVER_SEED_PASSES) -> None:
        """Learn the seeds ``passes`` times, shuffled (seeds come grouped by label)."""
        order = np.random.default_rng(0).permutation(len(labels))
        for _ in range(passes):
            for k in order:
                self.learn(x[k], labels[k])


def tune_river(
    x: Vectors, labels: Sequence[str], grid: Sequence[float] = RIVER_GRID, hold: float = 0.25
) -> float:
    """River's learning rate: the best of ``grid`` by :func:`river_scores`."""
    scores = river_scores(x, labels, grid, hold)
    return max(scores, key=lambda lr: scores[lr])


def river_scores(
    x: Vectors, labels: Sequence[str], grid: Sequence[float] = RIVER_GRID, hold: float = 0.25
) -> dict[float, float]:
    """Held-out accuracy per learning rate of ``grid``: bootstrapped on the training labels
    minus a stratified ``hold`` share, as the peer will be, then scored on that share."""
    rng = np.random.default_rng(0)
    by_label: dict[str, list[int]] = {}
    for i, y in enumerate(labels):
        by_label.setdefault(y, []).append(i)
    held = [i for idx in by_label.values() for i in rng.permutation(idx)[: int(len(idx) * hold)]]
    rest = sorted(set(range(len(labels))) - set(held))
    scores: dict[float, float] = {}
    for lr in grid:
        if not held:
            scores[lr] = float("nan")
            continue
        peer = RiverPeer(lr)
        peer.bootstrap(x[rest], [labels[i] for i in rest])
        scores[lr] = float(np.mean([peer.predict(x[i]) == labels[i] for i in held]))
    return scores


@dataclass
class PeerRun:
    """One peer over one stream: its prediction for every turn (made before the turn's own
    label was learnt), for every eval text at the end, and the CPU seconds it took."""

    stream: list[str]
    final_eval: list[str]
    cpu_s: float
    setup: dict[str, float]
    """How it was set up: the logistic regression's chosen C, river's learning rate."""


PEERS = ("static", "river", "periodic")
SAME_LABELS = "_same_labels"
"""The suffix of a peer arm that learns every label the system learnt (the users' and the
teacher's), beside the arm that learns the users' labels only."""


def replay(
    seeds_x: Vectors,
    seed_labels: Sequence[str],
    stream_x: Vectors,
    labels_at: dict[int, str],
    period: int,
    eval_x: Vectors | None = None,
    river_lr: float | None = None,
    late: dict[int, list[tuple[int, str]]] | None = None,
) -> dict[str, PeerRun]:
    """Prequential predictions of the static, river and periodic-retraining peers.

    ``labels_at`` maps a stream index to the label its feedback gave; a peer predicts turn
    ``i`` first, then learns its label if it has one. ``late`` maps a stream index ``i``
    to labels of earlier turns that arrive then, ``(j, label)`` (the teacher's, say): they
    are learnt after turn ``i`` is predicted. ``eval_x`` is predicted by each peer's final
    state. ``river_lr`` None: river's learning rate is tuned on the seeds.

    >>> x = np.array([[1.0, 0.0], [0.0, 1.0]])
    >>> stream = np.array([[0.0, 1.0], [0.0, 1.0], [0.0, 1.0], [0.0, 1.0]])
    >>> out = replay(x, ["a", "a"], stream, {0: "b", 1: "b"}, period=2, eval_x=x)
    >>> out["static"].stream, out["periodic"].stream, out["periodic"].final_eval
    (['a', 'a', 'a', 'a'], ['a', 'a', 'b', 'b'], ['a', 'b'])
    """
    eval_x = np.zeros((0, stream_x.shape[1])) if eval_x is None else eval_x
    learn_at: dict[int, list[tuple[int, str]]] = {i: [(i, y)] for i, y in labels_at.items()}
    for i, arrived in (late or {}).items():
        learn_at.setdefault(min(i, len(stream_x) - 1), []).extend(arrived)
    out: dict[str, PeerRun] = {}

    started = time.process_time()
    static = fit_logistic(seeds_x, seed_labels)
    out["static"] = PeerRun(
        static.predict(stream_x).tolist(),
        static.predict(eval_x).tolist(),
        time.process_time() - started,
        {"C": static.c},
    )

    started = time.process_time()
    river = RiverPeer(river_lr if river_lr is not None else tune_river(seeds_x, seed_labels))
    river.bootstrap(seeds_x, seed_labels)
    river_out: list[str] = []
    for i, v in enumerate(stream_x):
        river_out.append(river.predict(v))
        for j, given in learn_at.get(i, ()):
            river.learn(stream_x[j], given)
    river_eval = [river.predict(v) for v in eval_x]
    out["river"] = PeerRun(
        river_out, river_eval, time.process_time() - started, {"learning_rate": river.learning_rate}
    )

    started = time.process_time()
    seen_x, seen_y = list(seeds_x), list(seed_labels)
    current = static
    periodic_out: list[str] = []
    for i, v in enumerate(stream_x):
        if i and i % period == 0 and len(seen_y) > len(seed_labels):
            current = fit_logistic(np.stack(seen_x), seen_y)
        periodic_out.append(str(current.predict(v[None, :])[0]))
        for j, given in learn_at.get(i, ()):
            seen_x.append(stream_x[j])
            seen_y.append(given)
    if len(seen_y) > len(seed_labels):  # the final state knows every label of the stream
        current = fit_logistic(np.stack(seen_x), seen_y)
    out["periodic"] = PeerRun(
        periodic_out,
        current.predict(eval_x).tolist(),
        time.process_time() - started,
        {"C": current.c},
    )
    return out


def recovery_turns(
    truth: Sequence[str],
    predictions: Sequence[str],
    new_intents: set[str],
    onset: int,
    share: float = 0.8,
    window: int = 200,
    target: float | None = None,
) -> int | None:
    """Turns after ``onset`` until the new intents' accuracy over the last ``window`` of
    their turns first reaches ``share`` of its final value, or ``target`` when given (None:
    it never does, or there is nothing to recover).

    >>> truth = ["n"] * 10
    >>> recovery_turns(truth, ["o"] * 5 + ["n"] * 5, {"n"}, onset=0, window=2)
    7
    >>> recovery_turns(truth, ["o"] * 5 + ["n"] * 5, {"n"}, onset=0, window=2, target=0.5)
    6
    """
    rows = [i for i in range(onset, len(truth)) if truth[i] in new_intents]
    if not rows:
        return None
    hits = [predictions[i] == truth[i] for i in rows]
    goal = target if target is not None else share * sum(hits[-window:]) / len(hits[-window:])
    if goal <= 0:
        return None
    for k in range(len(hits)):
        recent = hits[max(0, k + 1 - window) : k + 1]
        if k + 1 >= min(window, len(hits)) and sum(recent) / len(recent) >= goal:
            return rows[k] - onset + 1
    return None
