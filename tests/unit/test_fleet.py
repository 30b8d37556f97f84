"""Fleet learning: aggregation arithmetic, who counts, adoption through the node's gate and a
bootstrap from the fleet, on the tiny random encoder and a real registry."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from learners.edge_node import EdgeNode, LabelledText
from learners.fleet.aggregate import Contribution, aggregate, merge_lora, update_of
from learners.fleet.aggregator import COUNTS, FleetAggregator, latest_prior
from learners.fleet.privacy import Privacy
from learners.gate import EvalGate
from models.registry import FLEET_ID, AdapterRegistry
from tests.conftest import SEED_LABELS, SEED_TEXTS
from tests.unit.test_edge_node import LENIENT, batch, options


def _factors(seed: int, r: int = 2, fan_in: int = 6, fan_out: int = 5) -> dict:
    rng = np.random.default_rng(seed)
    return {
        "layer.0.query": (rng.normal(size=(r, fan_in)), rng.normal(size=(fan_out, r))),
        "layer.0.value": (rng.normal(size=(r, fan_in)), rng.normal(size=(fan_out, r))),
    }


def _contribution(node: str, labels: list[str], seed: int, lora: bool = False) -> Contribution:
    rng = np.random.default_rng(seed)
    return Contribution(
        node,
        1,
        labels,
        rng.normal(size=(len(labels), 4)),
        rng.normal(size=len(labels)),
        {y: 3 for y in labels},
        _factors(seed) if lora else None,
    )


def test_the_aggregate_of_identical_versions_is_that_version() -> None:
    one = _contribution("n1", ["a", "b", "c"], seed=1, lora=True)
    two = Contribution("n2", 4, one.labels, one.weight, one.bias, one.counts, one.lora)
    prior = aggregate([one, two], rank=2)
    assert prior.labels == one.labels
    centred = one.bias - one.bias.mean()  # a softmax head's bias shift is no change
    np.testing.assert_allclose(prior.weight, one.weight, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(prior.bias, centred, rtol=1e-5, atol=1e-6)
    assert prior.lora is not None and one.lora is not None
    for name in one.lora:  # the same update (factors are unique only up to a rotation)
        np.testing.assert_allclose(
            update_of(prior.lora, name), update_of(one.lora, name), atol=1e-4
        )


def test_lora_is_averaged_as_the_update_it_makes_not_factor_by_factor() -> None:
    a, b = _factors(1), _factors(2)
    merged = merge_lora([a, b], [1.0, 3.0], rank=4)  # rank 2 + 2: the mean is exact
    assert merged is not None
    for name in a:
        mean = (update_of(a, name) + 3 * update_of(b, name)) / 4
        np.testing.assert_allclose(update_of(merged, name), mean, atol=1e-4)
        naive = ((a[name][1] + 3 * b[name][1]) / 4) @ ((a[name][0] + 3 * b[name][0]) / 4)
        assert np.abs(naive - mean).max() > 0.1  # what averaging A and B apart gives: not it
    truncated = merge_lora([a, b], [1.0, 3.0], rank=2)
    assert truncated is not None and truncated[name][0].shape == (2, 6)


def test_heads_align_by_intent_name_weighted_by_examples() -> None:
    one = Contribution(
        "n1", 1, ["a", "b"], np.array([[1.0, 0], [0, 1.0]]), np.zeros(2), {"a": 1, "b": 9}
    )
    two = Contribution(
        "n2", 1, ["c", "b"], np.array([[5.0, 5], [0, 3.0]]), np.zeros(2), {"c": 2, "b": 1}
    )
    prior = aggregate([one, two])
    assert prior.labels == ["a", "b", "c"]
    assert prior.counts == {"a": 1, "b": 10, "c": 2}
    np.testing.assert_allclose(prior.rows(["b"])[0], [[0.0, (9 * 1 + 1 * 3) / 10]])
    np.testing.assert_allclose(prior.rows(["a", "c"])[0], [[1.0, 0.0], [5.0, 5.0]])


def test_privacy_clips_each_contribution_and_adds_noise() -> None:
    big = Contribution("n1", 1, ["a"], np.full((1, 4), 100.0), np.zeros(1), {"a": 1})
    clipped = aggregate([big], privacy=Privacy(clip=1.0))
    assert np.linalg.norm(clipped.weight) == pytest.approx(1.0, rel=1e-5)
    noisy = aggregate([big], privacy=Privacy(clip=1.0, noise=1.0), seed=3)
    assert not np.allclose(noisy.weight, clipped.weight)
    with pytest.raises(ValueError, match="clip"):
        Privacy(noise=1.0)


def _publish(reg: AdapterRegistry, node: str, labels: list[str], **metrics: float) -> None:
    head = {"head.weight": torch.eye(len(labels), 4), "head.bias": torch.zeros(len(labels))}
    counts = {COUNTS: {y: 2 for y in labels}}
    reg.publish(node, head, labels, "tiny", None, metrics=metrics, extra=counts)


def test_a_node_whose_held_out_accuracy_fell_is_left_out(tmp_path: Path) -> None:
    reg = AdapterRegistry(tmp_path)
    _publish(reg, "good", ["a", "b"], holdout_accuracy=0.9, holdout_accuracy_before=0.9)
    _publish(reg, "bad", ["c"], holdout_accuracy=0.5, holdout_accuracy_before=0.8)
    prior = FleetAggregator(reg).round()
    assert prior is not None and prior.version == 1
    assert prior.contributors == {"good": 1} and "bad" in prior.excluded
    assert prior.labels == ["a", "b"]
    assert FLEET_ID not in reg.nodes()  # the fleet's folder is not a node


def _node(encoder: Path, tmp_path: Path, node_id: str, **changes: object) -> EdgeNode:
    reg = AdapterRegistry(tmp_path / "adapters")
    opts = options(encoder, **{"gate": LENIENT, **changes})
    EdgeNode.bootstrap(node_id, reg, tmp_path, SEED_TEXTS, SEED_LABELS, opts)
    return EdgeNode(node_id, reg, tmp_path, opts)


def test_an_intent_learnt_at_one_node_is_served_at_another_through_its_gate(
    tiny_encoder: Path, tmp_path: Path
) -> None:
    eu, us = _node(tiny_encoder, tmp_path, "eu"), _node(tiny_encoder, tmp_path, "us")
    gift = batch("gift", "gift_card_balance", n=8)
    assert eu.apply_batch("b1", gift).status == "published"
    prior = FleetAggregator(eu.registry).round()
    assert prior is not None and "gift_card_balance" in prior.labels
    texts = [e.text for e in gift]
    assert all(p.intent != "gift_card_balance" for p in us.predict(texts)[0])
    outcome = us.adopt(prior)
    assert outcome.status == "published", outcome.reason
    assert outcome.labels_added == ["gift_card_balance"] and "fleet prior v1" in outcome.reason
    assert [p.intent for p in us.predict(texts)[0]] == ["gift_card_balance"] * len(texts)
    # the borrowed row is no contribution of us's, and a refit of us's own labels keeps it
    current = us.registry.current("us")
    assert current is not None and current.extra[COUNTS]["gift_card_balance"] == 0
    borrowed = us.serving.head_logits()[0][us.serving.labels.index("gift_card_balance")]
    assert us.apply_batch("b2", batch("trk", "track")).status == "published"
    after = us.serving.head_logits()[0][us.serving.labels.index("gift_card_balance")]
    np.testing.assert_allclose(after, borrowed, rtol=1e-5)
    assert [p.intent for p in us.predict(texts)[0]] == ["gift_card_balance"] * len(texts)
    assert us.adopt(prior).status == "skipped"  # nothing left to bring


def test_a_prior_that_costs_an_old_intent_is_rejected_by_the_gate(
    tiny_encoder: Path, tmp_path: Path
) -> None:
    strict = EvalGate(tolerance=0.0, intent_tolerance=0.0)
    us = _node(tiny_encoder, tmp_path, "us", gate=strict, holdout_every=1)
    held = [
        LabelledText(f"h{i}", t, y)
        for i, (t, y) in enumerate(zip(SEED_TEXTS, SEED_LABELS, strict=True))
    ]
    us.apply_batch("held", held)
    # a foreign row that out-scores every row on the node's own held-out examples
    direction = us.holdout.vectors().mean(0, keepdims=True)
    hog = Contribution("eu", 1, ["hog"], direction * 1e3, np.zeros(1), {"hog": 5})
    outcome = us.adopt(aggregate([hog]))
    assert outcome.status == "rejected" and "held-out accuracy fell" in outcome.reason
    assert "hog" not in us.serving.labels


def test_a_new_node_boots_from_the_fleet_with_the_intents_its_seeds_lack(
    tiny_encoder: Path, tmp_path: Path
) -> None:
    eu = _node(tiny_encoder, tmp_path, "eu")
    gift = batch("gift", "gift_card_balance", n=8)
    eu.apply_batch("b1", gift)
    prior = FleetAggregator(eu.registry).round()
    stored = latest_prior(eu.registry)
    assert prior is not None and stored is not None and stored.labels == prior.labels
    np.testing.assert_array_equal(stored.weight, prior.weight)
    opts = options(tiny_encoder)
    EdgeNode.bootstrap("new", eu.registry, tmp_path, SEED_TEXTS, SEED_LABELS, opts, prior=prior)
    new = EdgeNode("new", eu.registry, tmp_path, opts)
    assert "gift_card_balance" in new.serving.labels
    assert [p.intent for p in new.predict([e.text for e in gift])[0]] == ["gift_card_balance"] * 8
    assert [p.intent for p in new.predict(SEED_TEXTS)[0]] == [
        p.intent for p in eu.predict(SEED_TEXTS)[0]
    ]
