"""The built-in utterance generator and the phrasing drift."""

from __future__ import annotations

import doctest
import random
import re
from collections import Counter
from types import ModuleType

import pytest

import scenarios.datasets
import scenarios.generator
import scenarios.phrasing
import scenarios.scenario
import scenarios.splits
import scenarios.traffic
import scenarios.typos
from scenarios.generator import (
    ALL_INTENTS,
    BASE_INTENTS,
    EMERGING_INTENTS,
    generated_dataset,
    sample,
    shift_phrasing,
    utterance,
)
from scenarios.templates import TEMPLATES

MODULES = [
    scenarios.datasets,
    scenarios.generator,
    scenarios.phrasing,
    scenarios.scenario,
    scenarios.splits,
    scenarios.traffic,
    scenarios.typos,
]


@pytest.mark.parametrize("module", MODULES, ids=lambda m: m.__name__)
def test_doctests_pass(module: ModuleType) -> None:
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS)
    assert result.failed == 0 and result.attempted > 0


def test_intent_sets() -> None:
    assert len(BASE_INTENTS) == 14
    assert 2 <= len(EMERGING_INTENTS) <= 3
    assert not set(BASE_INTENTS) & set(EMERGING_INTENTS)
    assert ALL_INTENTS == BASE_INTENTS + EMERGING_INTENTS
    assert set(TEMPLATES) == set(ALL_INTENTS)
    assert all(8 <= len(TEMPLATES[i]) <= 15 for i in ALL_INTENTS)


def test_utterance_is_deterministic_given_the_rng() -> None:
    a = [utterance("track_order", random.Random(3)) for _ in range(3)]
    assert a == [utterance("track_order", random.Random(3)) for _ in range(3)]


def test_utterances_look_like_chat_messages() -> None:
    rng = random.Random(0)
    for intent in ALL_INTENTS:
        texts = [utterance(intent, rng) for _ in range(200)]
        assert all(4 <= len(t.split()) <= 30 for t in texts), intent
        assert not any("{" in t or "}" in t or "  " in t for t in texts), intent
        assert len(set(texts)) > 120, f"{intent}: too little variety"


def test_slots_are_filled_with_varied_values() -> None:
    rng = random.Random(1)
    texts = [utterance(i, rng) for i in BASE_INTENTS for _ in range(100)]
    assert any(re.search(r"#\d{5}\b", t) for t in texts)  # order numbers like "#48213"
    assert any(re.search(r"[$€£]\d+", t) for t in texts)  # amounts
    assert any(c in t for t in texts for c in ("UPS", "FedEx", "DHL", "USPS"))
    assert any(t.lower().startswith(("hi", "hello", "hey")) for t in texts)  # greetings
    assert any(t == t.lower() for t in texts) and any(t[0].isupper() for t in texts)


def test_unknown_intent_is_rejected() -> None:
    with pytest.raises(ValueError, match="unknown intent 'nope'"):
        utterance("nope", random.Random(0))


def test_sample_is_deterministic_unique_and_counted() -> None:
    examples = sample(ALL_INTENTS, 40, seed=11)
    assert examples == sample(ALL_INTENTS, 40, seed=11)
    assert examples != sample(ALL_INTENTS, 40, seed=12)
    assert Counter(e.label for e in examples) == {i: 40 for i in ALL_INTENTS}
    assert len({e.text for e in examples}) == len(examples)


def test_sample_of_one_intent_does_not_depend_on_the_others() -> None:
    alone = sample(["refund_status"], 20, seed=4)
    together = sample(["track_order", "refund_status"], 20, seed=4)
    assert alone == [e for e in together if e.label == "refund_status"]


def test_sample_rejects_negative_counts() -> None:
    with pytest.raises(ValueError, match="per_intent"):
        sample(BASE_INTENTS, -1, seed=0)


def test_generated_dataset() -> None:
    data = generated_dataset(seed=3, train_per_intent=20, test_per_intent=5)
    assert data.name == "generated"
    assert data.labels == sorted(ALL_INTENTS)
    assert Counter(e.label for e in data.train) == {i: 20 for i in ALL_INTENTS}
    assert Counter(e.label for e in data.test) == {i: 5 for i in ALL_INTENTS}
    assert not {e.text for e in data.train} & {e.text for e in data.test}
    assert data == generated_dataset(seed=3, train_per_intent=20, test_per_intent=5)


def _plain_texts(n: int) -> list[str]:
    rng = random.Random(9)
    return [utterance(i, rng) for i in BASE_INTENTS for _ in range(n)]


def test_shift_at_zero_strength_is_the_identity() -> None:
    rng = random.Random(0)
    assert all(shift_phrasing(t, rng, 0.0) == t for t in _plain_texts(5))


def test_shift_at_full_strength_always_changes_the_text() -> None:
    rng = random.Random(0)
    assert all(shift_phrasing(t, rng) != t for t in _plain_texts(15))


def test_shift_is_deterministic_given_the_rng() -> None:
    text = "Hello, where is my order #48213? I want to know today, thank you"
    assert shift_phrasing(text, random.Random(5)) == shift_phrasing(text, random.Random(5))


def test_shift_uses_abbreviations_typos_and_spanish() -> None:
    rng = random.Random(2)
    words = Counter(
        w.strip(",.?!") for t in _plain_texts(15) for w in shift_phrasing(t, rng).split()
    )
    assert {"pls", "u", "thx", "wanna"} & set(words)
    assert {"hola", "gracias", "pedido", "favor", "porfa"} & set(words)


def test_stronger_shift_changes_more() -> None:
    texts = _plain_texts(10)

    def changed_words(strength: float) -> int:
        rng = random.Random(7)
        return sum(
            len(set(t.split()) ^ set(shift_phrasing(t, rng, strength).split())) for t in texts
        )

    assert changed_words(0.2) < changed_words(0.6) < changed_words(1.0)


@pytest.mark.parametrize("strength", [-0.1, 1.5])
def test_shift_rejects_strength_out_of_range(strength: float) -> None:
    with pytest.raises(ValueError, match="strength"):
        shift_phrasing("where is my order", random.Random(0), strength)
