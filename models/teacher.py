"""Cloud teacher backends: label a redacted utterance with an intent and a confidence.

The embedded default needs no network. It stands for the cloud side of End-Cloud
Collaboration: its strength is the cloud's much larger labelled corpus, not a bigger model
(measured here: all-mpnet-base-v2 adds about one point over MiniLM on the same examples). It
answers by a similarity-weighted vote of the ``k`` nearest corpus examples; the confidence
is the winning label's share of the vote, so ambiguous texts get low confidence and are
not trained on.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np

from models.encoder import Encoder


@dataclass(frozen=True)
class Annotation:
    label: str | None  # None: the teacher abstains
    confidence: float


class Teacher(Protocol):
    name: str

    def annotate(self, texts: Sequence[str]) -> list[Annotation]: ...


class EmbeddedTeacher:
    """k-nearest-neighbour vote over an embedded labelled corpus.

    >>> texts = ["how much is left on my gift card", "gift card balance please",
    ...          "where is my parcel", "track my order"]
    >>> labels = ["gift_card_balance", "gift_card_balance", "track_order", "track_order"]
    >>> teacher = EmbeddedTeacher(Encoder(), texts, labels, k=2)
    >>> [a.label for a in teacher.annotate(["is my gift card still valid"])]
    ['gift_card_balance']
    """

    name = "embedded-knn"

    def __init__(
        self,
        encoder: Encoder,
        texts: Sequence[str],
        labels: Sequence[str],
        k: int = 10,
        temperature: float = 0.05,
    ) -> None:
        if len(texts) != len(labels) or not texts:
            raise ValueError("the teacher corpus needs texts with labels, and at least one")
        self.encoder = encoder
        self.k = min(k, len(texts))
        self.temperature = temperature
        self.labels = sorted(set(labels))
        index = {lab: i for i, lab in enumerate(self.labels)}
        self._y = np.array([index[lab] for lab in labels])
        self._x = encoder.embed(list(texts))

    def annotate(self, texts: Sequence[str]) -> list[Annotation]:
        if not texts:
            return []
        q = self.encoder.embed(list(texts))
        sims = q @ self._x.T
        top = np.argpartition(-sims, self.k - 1, axis=1)[:, : self.k]
        out = []
        for row, idx in enumerate(top):
            weights = _softmax(sims[row, idx] / self.temperature)
            votes = np.bincount(self._y[idx], weights=weights, minlength=len(self.labels))
            best = int(votes.argmax())
            out.append(Annotation(self.labels[best], float(votes[best])))
        return out


def _softmax(x: np.ndarray[Any, Any]) -> np.ndarray[Any, Any]:
    e = np.exp(x - x.max())
    return np.asarray(e / e.sum())
