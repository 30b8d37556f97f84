"""Per-intent reservoirs: a bounded, uniform sample of every intent's labelled texts.

The replay buffer and the held-out set are both made of one: each intent keeps at most
``per_class`` texts, and once it is full a new text replaces a kept one with probability
``per_class / seen`` (reservoir sampling), so the kept texts are a uniform sample of all
texts seen for the intent, in bounded memory.
"""

from __future__ import annotations

import random
from collections.abc import Iterable


class ClassReservoir:
    """At most ``per_class`` distinct texts per intent.

    >>> r = ClassReservoir(per_class=1, seed=0)
    >>> r.add("where is it", "track"); r.add("cancel it", "cancel")
    >>> r.items(), len(r)
    ([('cancel it', 'cancel'), ('where is it', 'track')], 2)
    """

    def __init__(self, per_class: int, seed: int = 0) -> None:
        if per_class < 1:
            raise ValueError("per_class must be >= 1")
        self.per_class = per_class
        self._rng = random.Random(seed)
        self._kept: dict[str, list[str]] = {}
        self._seen: dict[str, int] = {}

    def __len__(self) -> int:
        return sum(len(v) for v in self._kept.values())

    def labels(self) -> list[str]:
        return list(self._kept)

    def add(self, text: str, label: str) -> None:
        kept = self._kept.setdefault(label, [])
        if text in kept:
            return
        seen = self._seen.get(label, 0) + 1
        self._seen[label] = seen
        if len(kept) < self.per_class:
            kept.append(text)
            return
        slot = self._rng.randrange(seen)
        if slot < self.per_class:
            kept[slot] = text

    def extend(self, pairs: Iterable[tuple[str, str]]) -> None:
        for text, label in pairs:
            self.add(text, label)

    def items(self) -> list[tuple[str, str]]:
        """Every kept (text, label), in a stable order."""
        return sorted((t, lab) for lab, texts in self._kept.items() for t in texts)
