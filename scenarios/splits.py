"""Seeded, per-label splits, so every label keeps examples on both sides of a split."""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence
from typing import TypeVar

T = TypeVar("T")


def split_count(n: int, fraction: float) -> int:
    """How many of ``n`` items go to the ``fraction`` side: rounded, but never all or none
    when ``n >= 2`` and the fraction is strictly between 0 and 1.

    >>> split_count(10, 0.2), split_count(2, 0.2), split_count(1, 0.2), split_count(5, 0.0)
    (2, 1, 0, 0)
    """
    if not 0.0 <= fraction <= 1.0:
        raise ValueError(f"fraction must be in [0, 1], got {fraction}")
    k = round(n * fraction)
    if n >= 2 and 0.0 < fraction < 1.0:
        k = min(max(k, 1), n - 1)
    return k


def stratified_split(
    items: Sequence[T], key: Callable[[T], str], fraction: float, seed: int | str
) -> tuple[list[T], list[T]]:
    """Split into (rest, held) with about ``fraction`` of each label held; order is kept.

    >>> rest, held = stratified_split(list("aaaaabbbbb"), lambda x: x, 0.2, seed=1)
    >>> len(rest), len(held), sorted(held)
    (8, 2, ['a', 'b'])
    """
    rng = random.Random(str(seed))
    by_label: dict[str, list[int]] = {}
    for i, item in enumerate(items):
        by_label.setdefault(key(item), []).append(i)
    held: set[int] = set()
    for label in sorted(by_label):
        positions = by_label[label]
        held.update(rng.sample(positions, split_count(len(positions), fraction)))
    return (
        [x for i, x in enumerate(items) if i not in held],
        [x for i, x in enumerate(items) if i in held],
    )
