"""A class-balanced replay buffer: old intents stay in every training step.

Each intent keeps a bounded uniform sample of its examples (:class:`ClassReservoir`); a
sample draws round-robin over intents, so a batch full of one drifting intent is mixed with
every other intent and the model does not forget them.
"""

from __future__ import annotations

from learners.reservoir import ClassReservoir


class ClassBalancedReplay(ClassReservoir):
    """Bounded per-intent memory of labelled texts, sampled class-balanced.

    >>> replay = ClassBalancedReplay(per_class=2, seed=1)
    >>> for i in range(5):
    ...     replay.add(f"track {i}", "track")
    >>> replay.add("cancel it", "cancel")
    >>> len(replay), sorted(replay.labels())
    (3, ['cancel', 'track'])
    >>> sorted(label for _, label in replay.sample(2))
    ['cancel', 'track']
    """

    def sample(self, n: int) -> list[tuple[str, str]]:
        """Up to ``n`` examples, round-robin over intents in random order, no repeats."""
        pools = {lab: self._rng.sample(texts, len(texts)) for lab, texts in self._kept.items()}
        order = list(pools)
        self._rng.shuffle(order)
        out: list[tuple[str, str]] = []
        while len(out) < n and any(pools.values()):
            for lab in order:
                if pools[lab] and len(out) < n:
                    out.append((pools[lab].pop(), lab))
        return out
