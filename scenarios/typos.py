"""Natural keyboard slips (swapped, dropped, doubled letters), shared by the generator and the
phrasing drift so both make the same kind of mistakes a hurried customer makes."""

from __future__ import annotations

import random
import re

_WORD = re.compile(r"[A-Za-z]{4,}")


def typo(word: str, rng: random.Random) -> str:
    """One slip inside ``word`` (first letter kept, so the word stays recognisable); words
    shorter than three letters are returned as they are.

    >>> typo("delivery", random.Random(3)) != "delivery"
    True
    """
    if len(word) < 3:
        return word
    i = rng.randrange(1, len(word) - 1)
    kind = rng.choice(("swap", "drop", "double"))
    if kind == "swap" and word[i] != word[i + 1]:
        return word[:i] + word[i + 1] + word[i] + word[i + 2 :]
    if kind == "drop":
        return word[:i] + word[i + 1 :]
    return word[:i] + word[i] + word[i:]


def add_typos(text: str, rng: random.Random, rate: float) -> str:
    """Put a slip into each word of four or more letters with probability ``rate``.

    >>> add_typos("where is my package", random.Random(0), 0.0)
    'where is my package'
    """
    if rate <= 0.0:
        return text
    return _WORD.sub(lambda m: typo(m.group(), rng) if rng.random() < rate else m.group(), text)


def add_one_typo(text: str, rng: random.Random) -> str:
    """Put exactly one slip into one word of four or more letters, if there is one."""
    words = list(_WORD.finditer(text))
    if not words:
        return text
    m = rng.choice(words)
    return text[: m.start()] + typo(m.group(), rng) + text[m.end() :]
