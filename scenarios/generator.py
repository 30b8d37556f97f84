"""The built-in generator of e-commerce customer-service chat messages.

It is the project's embedded default data: the demo, the tests and the benchmarks run with no
external dataset. Utterances come from several templates per intent, filled with products,
order numbers, dates, carriers, amounts and payment methods, with optional greetings and
sign-offs, chat-style casing and the odd typo, so they read like real chat messages.

>>> import random
>>> text = utterance("track_order", random.Random(1))
>>> 4 <= len(text.split()) <= 30
True
>>> sample(["refund_status"], 3, seed=5) == sample(["refund_status"], 3, seed=5)
True
"""

from __future__ import annotations

import random
import re
from collections.abc import Sequence

from scenarios.datasets import Example, LabelledData
from scenarios.phrasing import shift_phrasing
from scenarios.templates import PREFIXES, SLOTS, SUFFIXES, TEMPLATES
from scenarios.typos import add_one_typo

__all__ = [
    "ALL_INTENTS",
    "BASE_INTENTS",
    "EMERGING_INTENTS",
    "generated_dataset",
    "sample",
    "shift_phrasing",
    "utterance",
]

BASE_INTENTS: tuple[str, ...] = (
    "track_order",
    "cancel_order",
    "return_item",
    "refund_status",
    "payment_failed",
    "change_address",
    "apply_coupon",
    "account_login",
    "delivery_delay",
    "damaged_item",
    "product_availability",
    "change_payment_method",
    "invoice_request",
    "talk_to_agent",
)
# Intents that appear only with a later promotion; their phrasing overlaps older intents.
EMERGING_INTENTS: tuple[str, ...] = ("price_match", "gift_card_balance", "preorder_status")
ALL_INTENTS: tuple[str, ...] = BASE_INTENTS + EMERGING_INTENTS

_SLOT = re.compile(r"\{([a-z]+)(\d?)\}")
_PREFIX_P, _SUFFIX_P, _LOWER_P, _TYPO_P = 0.35, 0.25, 0.3, 0.07


def utterance(intent: str, rng: random.Random) -> str:
    """One chat message for ``intent``, drawn with ``rng``."""
    templates = TEMPLATES.get(intent)
    if templates is None:
        raise ValueError(f"unknown intent {intent!r}; known: {', '.join(ALL_INTENTS)}")
    text = _fill(rng.choice(templates), rng)
    if rng.random() < _PREFIX_P:
        text = f"{rng.choice(PREFIXES)} {text}"
    if rng.random() < _SUFFIX_P:
        sep = " " if text[-1] in "?!." else rng.choice((", ", " - ", ". "))
        text = f"{text}{sep}{rng.choice(SUFFIXES)}"
    text = text.lower() if rng.random() < _LOWER_P else text[0].upper() + text[1:]
    if rng.random() < _TYPO_P:
        text = add_one_typo(text, rng)
    return " ".join(text.split())


def sample(intents: Sequence[str], per_intent: int, seed: int) -> list[Example]:
    """``per_intent`` examples of each intent, grouped by intent in the given order.

    Each intent draws from its own seeded stream, so adding an intent does not change the
    others' texts. Texts are unique within the result unless an intent runs out of variety.
    """
    if per_intent < 0:
        raise ValueError(f"per_intent must be >= 0, got {per_intent}")
    seen: set[str] = set()
    out: list[Example] = []
    for intent in dict.fromkeys(intents):
        rng = random.Random(f"{seed}:{intent}")
        texts: list[str] = []
        for _ in range(per_intent * 30 + 100):
            if len(texts) == per_intent:
                break
            text = utterance(intent, rng)
            if text not in seen:
                seen.add(text)
                texts.append(text)
        while len(texts) < per_intent:  # variety exhausted: allow repeats
            texts.append(utterance(intent, rng))
        out.extend(Example(t, intent) for t in texts)
    return out


def generated_dataset(
    seed: int = 0, train_per_intent: int = 150, test_per_intent: int = 40
) -> LabelledData:
    """All intents, with train and test texts disjoint (both cut from one unique sample)."""
    examples = sample(ALL_INTENTS, train_per_intent + test_per_intent, seed)
    train: list[Example] = []
    test: list[Example] = []
    seen: dict[str, int] = {}
    for e in examples:
        n = seen[e.label] = seen.get(e.label, 0) + 1
        (train if n <= train_per_intent else test).append(e)
    return LabelledData("generated", train, test)


def _fill(template: str, rng: random.Random) -> str:
    used: dict[str, set[str]] = {}

    def value(m: re.Match[str]) -> str:
        kind = m.group(1)
        taken = used.setdefault(kind, set())
        for _ in range(10):
            v = _slot_value(kind, rng)
            if v not in taken:
                break
        taken.add(v)
        return v

    return _SLOT.sub(value, template)


def _slot_value(kind: str, rng: random.Random) -> str:
    if kind == "order":
        number = str(rng.randint(10000, 99999))
        return number if rng.random() < 0.25 else f"#{number}"
    if kind == "amount":
        currency = rng.choice(("$", "$", "€", "£"))
        whole = rng.randint(5, 300)
        return (
            f"{currency}{whole}"
            if rng.random() < 0.5
            else f"{currency}{whole}.{rng.randint(0, 99):02d}"
        )
    if kind == "gift":
        return f"GC-{rng.randint(1000, 9999)}-{rng.randint(1000, 9999)}"
    return rng.choice(SLOTS[kind])
