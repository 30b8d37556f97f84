"""Replayable traffic scenarios: determinism, disjoint data, and the drift where it belongs."""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import replace
from functools import cache

import pytest

from scenarios.datasets import Example, LabelledData
from scenarios.generator import BASE_INTENTS, EMERGING_INTENTS
from scenarios.scenario import Kind, Scenario, ScenarioConfig, build_scenario

SMALL = ScenarioConfig(turns=1200, seed_per_intent=5, eval_per_intent=10)


@cache
def built(kind: Kind, seed: int = 7) -> Scenario:
    return build_scenario(replace(SMALL, kind=kind, seed=seed))


def _tiny_dataset() -> LabelledData:
    labels = ("alpha", "beta", "gamma", "delta", "epsilon")
    train = [Example(f"{label} train {i}", label) for label in labels for i in range(30)]
    test = [Example(f"{label} test {i}", label) for label in labels for i in range(8)]
    return LabelledData("tiny", train, test)


@pytest.mark.parametrize("kind", ["emerging", "phrasing", "gradual", "split", "stationary"])
def test_same_config_same_scenario(kind: Kind) -> None:
    assert build_scenario(replace(SMALL, kind=kind)) == built(kind)


def test_different_seeds_give_different_traffic() -> None:
    texts = [t.text for t in built("emerging").stream]
    assert texts != [t.text for t in built("emerging", seed=8).stream]


def test_turns_ids_and_nodes() -> None:
    s = built("emerging")
    assert [t.index for t in s.stream] == list(range(SMALL.turns))
    assert len({t.turn_id for t in s.stream}) == SMALL.turns
    assert all(re.fullmatch(rf"{t.node_id}-\d{{7}}", t.turn_id) for t in s.stream)
    per_node = Counter(t.node_id for t in s.stream)
    assert set(per_node) == set(SMALL.nodes)
    assert all(n > SMALL.turns * 0.4 for n in per_node.values())
    assert s.onset_index == int(SMALL.onset * SMALL.turns)


def test_nodes_see_different_intent_mixes() -> None:
    s = build_scenario(replace(SMALL, kind="stationary", turns=4000))
    shares = {node: Counter(t.label for t in s.stream if t.node_id == node) for node in SMALL.nodes}
    eu, us = (shares[n] for n in SMALL.nodes)
    n_eu, n_us = sum(eu.values()), sum(us.values())
    distance = sum(abs(eu[i] / n_eu - us[i] / n_us) for i in BASE_INTENTS) / 2
    assert distance > 0.1


def test_emerging_intents_appear_only_after_onset_at_the_configured_share() -> None:
    s = built("emerging")
    assert s.emerging_intents == list(EMERGING_INTENTS[:2])
    assert s.initial_intents == list(BASE_INTENTS)
    before, after = s.stream[: s.onset_index], s.stream[s.onset_index :]
    assert not any(t.label in s.emerging_intents for t in before)
    share = sum(t.label in s.emerging_intents for t in after) / len(after)
    assert share == pytest.approx(SMALL.emerging_share, abs=0.05)
    assert {t.label for t in after} >= set(s.emerging_intents)
    assert all(t.drifted == (t.label in s.emerging_intents) for t in s.stream)


def test_emerging_count_for_the_generator() -> None:
    s = build_scenario(replace(SMALL, turns=200, emerging=3))
    assert s.emerging_intents == list(EMERGING_INTENTS)
    with pytest.raises(ValueError, match="emerging=4"):
        build_scenario(replace(SMALL, emerging=len(EMERGING_INTENTS) + 1))


def test_seed_examples_cover_only_initial_intents() -> None:
    s = built("emerging")
    assert Counter(e.label for e in s.seed_examples) == {
        i: SMALL.seed_per_intent for i in s.initial_intents
    }


def test_teacher_knows_every_intent_and_never_saw_stream_seed_or_eval_texts() -> None:
    s = built("emerging")
    teacher = {e.text for e in s.teacher_corpus}
    assert {e.label for e in s.teacher_corpus} == set(s.intents)
    assert len(s.teacher_corpus) > 10 * len(s.seed_examples)
    assert not teacher & {t.text for t in s.stream}
    assert not teacher & {e.text for e in s.eval_examples}
    assert not teacher & {e.text for e in s.seed_examples}
    assert not {e.text for e in s.eval_examples} & {t.text for t in s.stream}


def test_eval_covers_every_post_onset_intent() -> None:
    s = built("emerging")
    counts = Counter(e.label for e in s.eval_examples)
    assert counts == {i: SMALL.eval_per_intent for i in s.intents}


def test_phrasing_shift_changes_only_the_shifted_intent_after_onset() -> None:
    s, plain = built("phrasing"), built("stationary")
    assert s.shifted_intent in s.initial_intents and s.emerging_intents == []
    # Same traffic, only the shifted texts differ.
    assert [(t.turn_id, t.label) for t in s.stream] == [(t.turn_id, t.label) for t in plain.stream]
    for t, p in zip(s.stream, plain.stream, strict=True):
        shifted = t.index >= s.onset_index and t.label == s.shifted_intent
        assert t.drifted == shifted
        assert (t.text != p.text) == shifted
    assert sum(t.drifted for t in s.stream) > 0


def test_phrasing_eval_is_the_post_drift_distribution() -> None:
    s, plain = built("phrasing"), built("stationary")
    assert [e.label for e in s.eval_examples] == [e.label for e in plain.eval_examples]
    for e, p in zip(s.eval_examples, plain.eval_examples, strict=True):
        assert (e.text != p.text) == (e.label == s.shifted_intent)


def test_gradual_shift_ramps_up() -> None:
    s = build_scenario(replace(SMALL, kind="gradual", turns=4000))
    post = [t for t in s.stream[s.onset_index :] if t.label == s.shifted_intent]
    third = len(post) // 3
    early = sum(t.drifted for t in post[:third]) / third
    late = sum(t.drifted for t in post[-third:]) / third
    assert early < late and late > 0.9
    assert not any(t.drifted for t in s.stream[: s.onset_index])


def test_explicit_shifted_intent() -> None:
    s = build_scenario(replace(SMALL, kind="phrasing", turns=100, shifted_intent="track_order"))
    assert s.shifted_intent == "track_order"
    with pytest.raises(ValueError, match="not an initial intent"):
        build_scenario(replace(SMALL, kind="phrasing", shifted_intent="price_match"))


def test_split_relabels_one_known_intent_from_the_onset() -> None:
    s = built("split")
    old, (new,) = s.split_from, s.emerging_intents
    assert old in s.initial_intents and new not in s.initial_intents
    assert {old, new} <= set(BASE_INTENTS)
    before, after = s.stream[: s.onset_index], s.stream[s.onset_index :]
    assert all(t.label != new and not t.drifted for t in before)
    new_turns = [t for t in after if t.label == new]
    assert new_turns and all(t.drifted for t in new_turns)
    assert not any(t.drifted for t in after if t.label != new)
    # the nodes' seeds call both halves `old`; the teacher and the eval set tell them apart
    assert new not in {e.label for e in s.seed_examples}
    assert Counter(e.label for e in s.seed_examples)[old] == SMALL.seed_per_intent
    assert {new, old} <= {e.label for e in s.teacher_corpus}
    assert {new, old} <= {e.label for e in s.eval_examples}
    # the old intent's texts keep coming after the onset
    assert any(t.label == old for t in after)


def test_split_picks_intents_whose_names_share_words() -> None:
    s = build_scenario(replace(SMALL, kind="split"), _tiny_dataset())
    assert s.split_from in {"alpha", "beta", "gamma", "delta", "epsilon"}
    labels = ["order_status", "order_cancel", "refund"]
    data = LabelledData(
        "names",
        [Example(f"{label} train {i}", label) for label in labels for i in range(30)],
        [Example(f"{label} test {i}", label) for label in labels for i in range(8)],
    )
    s = build_scenario(replace(SMALL, kind="split"), data)
    assert {s.split_from, *s.emerging_intents} == {"order_status", "order_cancel"}


def test_stationary_has_no_drift() -> None:
    s = built("stationary")
    assert s.onset_index == int(SMALL.onset * SMALL.turns)
    assert not any(t.drifted for t in s.stream)
    assert {t.label for t in s.stream} <= set(BASE_INTENTS)
    assert s.shifted_intent is None and s.emerging_intents == []


def test_summary_counts() -> None:
    s = built("emerging")
    summary = s.summary()
    assert summary["turns"] == SMALL.turns
    assert summary["turns_per_node"] == dict(Counter(t.node_id for t in s.stream))
    assert summary["drifted_turns"] == sum(t.drifted for t in s.stream)
    assert summary["emerging_intents"] == s.emerging_intents
    assert summary["name"] == "generated-emerging"


def test_scenario_from_a_dataset() -> None:
    data = _tiny_dataset()
    config = replace(SMALL, turns=400, emerging=2, seed_per_intent=4, eval_per_intent=5)
    s = build_scenario(config, data)
    assert s == build_scenario(config, data)
    assert s.name == "tiny-emerging"
    assert len(s.emerging_intents) == 2 and s.emerging_intents == sorted(s.emerging_intents)
    assert sorted(s.intents) == data.labels
    assert Counter(e.label for e in s.seed_examples) == {i: 4 for i in s.initial_intents}
    stream = {t.text for t in s.stream}
    teacher = {e.text for e in s.teacher_corpus}
    seeds = {e.text for e in s.seed_examples}
    assert not teacher & stream and not seeds & stream and not seeds & teacher
    assert {e.text for e in s.eval_examples} <= {e.text for e in data.test}
    # (30 - 4 seeds) * 0.5 = 13 pool texts per initial intent; 15 per emerging one.
    per_label = Counter(e.label for e in s.teacher_corpus)
    assert all(per_label[i] == 13 for i in s.initial_intents)
    assert all(per_label[i] == 15 for i in s.emerging_intents)
    assert not any(t.label in s.emerging_intents for t in s.stream[: s.onset_index])


def test_dataset_errors() -> None:
    data = _tiny_dataset()
    with pytest.raises(ValueError, match="at least one must stay initial"):
        build_scenario(replace(SMALL, emerging=5), data)
    with pytest.raises(ValueError, match="no train examples left for the stream"):
        build_scenario(replace(SMALL, seed_per_intent=30), data)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"kind": "sudden"}, "kind must be one of"),
        ({"nodes": ()}, "nodes must be non-empty"),
        ({"nodes": ("a", "a")}, "unique"),
        ({"turns": 0}, "turns"),
        ({"onset": 1.5}, "onset"),
        ({"emerging": 0}, "emerging >= 1"),
        ({"emerging_share": -0.1}, "emerging_share"),
        ({"stream_pool_fraction": 1.0}, "stream_pool_fraction"),
    ],
)
def test_invalid_configs_are_rejected(change: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        build_scenario(replace(SMALL, **change))  # type: ignore[arg-type]
