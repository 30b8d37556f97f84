"""The simple alternatives the benchmarks set the edge learner beside, on frozen embeddings.

- :class:`RiverPeer`: river's online softmax regression, one example at a time;
- :func:`fit_logistic`: multinomial logistic regression trained offline (LBFGS) on every
  example given, the "retrain on all labels so far" reference;
- :func:`replay` runs them prequentially over a stream in which some turns get a label
  (feedback) when they are served: each turn is predicted before its label is learnt.
  The static peer is the starting head, never updated; the periodic peer refits the
  logistic regression on the seeds and every label seen so far every ``period`` turns.

>>> import numpy as np
>>> x = np.array([[1.0, 0.0], [0.0, 1.0], [0.9, 0.1], [0.1, 0.9], [0.95, 0.0], [0.0, 0.95]])
>>> y = ["a", "b", "a", "b", "a", "b"]
>>> fit_logistic(x[:2], y[:2])(x[2:]).tolist()
['a', 'b', 'a', 'b']
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Sequence
from typing import Any

import numpy as np
import torch

Vectors = np.ndarray[Any, Any]


class RiverPeer:
    """river's online softmax regression on frozen embeddings."""

    def __init__(self, learning_rate: float = 0.05) -> None:
        from river import linear_model, optim

        self.model = linear_model.SoftmaxRegression(optimizer=optim.SGD(learning_rate))

    @staticmethod
    def _feats(v: Vectors) -> dict[Hashable, Any]:
        return {i: float(x) for i, x in enumerate(v)}

    def predict(self, v: Vectors) -> str:
        return str(self.model.predict_one(self._feats(v)))

    def learn(self, v: Vectors, label: str) -> None:
        self.model.learn_one(self._feats(v), label)


def fit_logistic(
    x: Vectors, labels: Sequence[str], max_iter: int = 300
) -> Callable[[Vectors], np.ndarray[Any, Any]]:
    """Multinomial logistic regression (L2 1e-4, LBFGS); returns a batch predictor."""
    classes = sorted(set(labels))
    index = {lab: i for i, lab in enumerate(classes)}
    xt = torch.from_numpy(np.asarray(x, dtype=np.float32))
    yt = torch.tensor([index[lab] for lab in labels])
    torch.manual_seed(0)
    w = torch.zeros(xt.shape[1], len(classes), requires_grad=True)
    b = torch.zeros(len(classes), requires_grad=True)
    opt = torch.optim.LBFGS([w, b], lr=1.0, max_iter=max_iter, line_search_fn="strong_wolfe")

    def closure() -> torch.Tensor:
        opt.zero_grad()
        loss = torch.nn.functional.cross_entropy(xt @ w + b, yt) + 1e-4 * (w * w).sum()
        loss.backward()
        return loss

    opt.step(closure)
    names = np.array(classes, dtype=object)

    def predict(v: Vectors) -> np.ndarray[Any, Any]:
        with torch.no_grad():
            scores = torch.from_numpy(np.asarray(v, dtype=np.float32)) @ w + b
        return np.asarray(names[scores.argmax(1).numpy()])

    return predict


def replay(
    seeds_x: Vectors,
    seed_labels: Sequence[str],
    stream_x: Vectors,
    labels_at: dict[int, str],
    period: int,
) -> dict[str, list[str]]:
    """Prequential predictions of the static, river and periodic-retraining peers.

    ``labels_at`` maps a stream index to the label its feedback gave; a peer predicts turn
    ``i`` first, then learns its label if it has one.

    >>> x = np.array([[1.0, 0.0], [0.0, 1.0]])
    >>> stream = np.array([[0.0, 1.0], [0.0, 1.0], [0.0, 1.0], [0.0, 1.0]])
    >>> out = replay(x, ["a", "a"], stream, {0: "b", 1: "b"}, period=2)
    >>> out["static"], out["periodic"]
    (['a', 'a', 'a', 'a'], ['a', 'a', 'b', 'b'])
    """
    static = fit_logistic(seeds_x, seed_labels)(stream_x).tolist()
    river = RiverPeer()
    for v, label in zip(seeds_x, seed_labels, strict=True):
        river.learn(v, label)
    river_out: list[str] = []
    periodic_out: list[str] = []
    seen_x, seen_y = list(seeds_x), list(seed_labels)
    current = fit_logistic(seeds_x, seed_labels)
    for i, v in enumerate(stream_x):
        if i and i % period == 0 and len(seen_y) > len(seed_labels):
            current = fit_logistic(np.stack(seen_x), seen_y)
        river_out.append(river.predict(v))
        periodic_out.append(str(current(v[None, :])[0]))
        given = labels_at.get(i)
        if given is not None:
            river.learn(v, given)
            seen_x.append(v)
            seen_y.append(given)
    return {"static": static, "river": river_out, "periodic": periodic_out}


def recovery_turns(
    truth: Sequence[str],
    predictions: Sequence[str],
    new_intents: set[str],
    onset: int,
    share: float = 0.8,
    window: int = 200,
) -> int | None:
    """Turns after ``onset`` until the new intents' accuracy over the last ``window`` of
    their turns first reaches ``share`` of its final value (None: it never does, or there
    is nothing to recover).

    >>> truth = ["n"] * 10
    >>> recovery_turns(truth, ["o"] * 5 + ["n"] * 5, {"n"}, onset=0, window=2)
    7
    """
    rows = [i for i in range(onset, len(truth)) if truth[i] in new_intents]
    if not rows:
        return None
    hits = [predictions[i] == truth[i] for i in rows]
    final = sum(hits[-window:]) / len(hits[-window:])
    if final == 0:
        return None
    for k in range(len(hits)):
        recent = hits[max(0, k + 1 - window) : k + 1]
        if k + 1 >= min(window, len(hits)) and sum(recent) / len(recent) >= share * final:
            return rows[k] - onset + 1
    return None
