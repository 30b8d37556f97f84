"""Edge node on a tiny random BERT: bootstrap, the fast path (memory + head refit), the
slow path (LoRA consolidation), the gate, apply once, restart."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
import torch

from learners.edge_node import EdgeNode, LabelledText, NodeNotBootstrappedError, _fit, _Head
from learners.gate import EvalGate
from learners.options import EdgeOptions, TrainOptions
from learners.trainer import IncrementalTrainer, TrainingGuardError
from models.end_model import EndModel
from models.registry import AdapterRegistry
from tests.conftest import SEED_LABELS, SEED_TEXTS

LENIENT = EvalGate(
    tolerance=1.0, intent_tolerance=1.0, cumulative_tolerance=1.0, cumulative_intent_tolerance=1.0
)


def options(encoder: Path, **changes: object) -> EdgeOptions:
    base = EdgeOptions(
        encoder_path=str(encoder),
        max_length=16,
        train=TrainOptions(learning_rate=1e-2, steps=3, seed=1),
        holdout_every=0,
    )
    return EdgeOptions(**{**base.__dict__, **changes})  # type: ignore[arg-type]


def make_node(encoder: Path, tmp_path: Path, **changes: object) -> EdgeNode:
    reg = AdapterRegistry(tmp_path / "adapters")
    opts = options(encoder, **changes)
    EdgeNode.bootstrap("n1", reg, tmp_path, SEED_TEXTS, SEED_LABELS, opts)
    return EdgeNode("n1", reg, tmp_path, opts)


@pytest.fixture()
def node(tiny_encoder: Path, tmp_path: Path) -> EdgeNode:
    return make_node(tiny_encoder, tmp_path)


def batch(prefix: str, label: str, n: int = 4) -> list[LabelledText]:
    return [LabelledText(f"{prefix}-{i}", f"{prefix} {label} example {i}", label) for i in range(n)]


def test_unknown_node_is_refused_with_a_hint(tiny_encoder: Path, tmp_path: Path) -> None:
    with pytest.raises(NodeNotBootstrappedError, match="ecc node init"):
        EdgeNode("nobody", AdapterRegistry(tmp_path), tmp_path, options(tiny_encoder))


def test_a_batch_publishes_a_version_that_serves(node: EdgeNode) -> None:
    assert node.version == 1
    out = node.apply_batch("b1", batch("x", "track"))
    assert out.status == "published" and out.version == 2 and out.parent == 1
    preds, version = node.predict(["where is my parcel"])
    assert version == 2 and preds[0].intent in {"track", "cancel", "refund"}
    assert node.registry.current("n1").version == 2  # type: ignore[union-attr]


def test_the_fast_path_serves_a_new_intent_from_one_batch(node: EdgeNode) -> None:
    texts = [e.text for e in batch("gift", "gift_card_balance")]
    assert all(p.intent != "gift_card_balance" for p in node.predict(texts)[0])
    out = node.apply_batch("b1", batch("gift", "gift_card_balance"))
    assert out.status == "published" and out.labels_added == ["gift_card_balance"]
    assert [p.intent for p in node.predict(texts)[0]] == ["gift_card_balance"] * len(texts)
    assert node.registry.current("n1").labels[-1] == "gift_card_balance"  # type: ignore[union-attr]
    # the encoder did not move: only the head was refitted, in the first version's space
    assert node.serving.encoder_key() == node.memory.key
    assert node.predict_versions(texts)[1:] == (2, 1)


def test_a_version_loads_from_the_registry_as_it_served(node: EdgeNode, tmp_path: Path) -> None:
    node.apply_batch("b1", batch("gift", "gift_card_balance"))
    texts = [*SEED_TEXTS, *(e.text for e in batch("gift", "gift_card_balance"))]
    served = node.predict(texts)[0]
    again = EdgeNode("n1", node.registry, tmp_path, node.options)
    reloaded = again.predict(texts)[0]
    assert [p.intent for p in reloaded] == [p.intent for p in served]
    assert np.allclose([p.confidence for p in reloaded], [p.confidence for p in served])


def test_a_rollback_is_seen_cheaply_and_served_after_reload(node: EdgeNode) -> None:
    node.apply_batch("b1", batch("x", "track"))
    assert not node.registry_moved()
    node.registry.rollback("n1")
    assert node.registry_moved() and node.version == 2
    assert node.reload() == (2, 1)
    assert not node.registry_moved() and node.predict(["where is my parcel"])[1] == 1


def test_a_batch_is_applied_once_also_after_a_restart(node: EdgeNode, tmp_path: Path) -> None:
    assert node.apply_batch("b1", batch("x", "track")).status == "published"
    assert node.apply_batch("b1", batch("x", "track")).status == "skipped"
    again = EdgeNode("n1", node.registry, tmp_path, node.options)
    assert again.version == 2
    assert again.apply_batch("b1", batch("x", "track")).status == "skipped"


def test_a_refit_is_deterministic(tiny_encoder: Path, tmp_path: Path) -> None:
    def run(folder: Path) -> EdgeNode:
        n = make_node(tiny_encoder, folder)
        n.apply_batch("b1", batch("x", "track"))
        n.apply_batch("b2", batch("gift", "gift_card_balance"))
        return n

    a, b = run(tmp_path / "a"), run(tmp_path / "b")
    for x, y in zip(a.serving.head_logits(), b.serving.head_logits(), strict=True):
        assert np.array_equal(x, y)


def test_every_held_out_example_is_kept_apart(tiny_encoder: Path, tmp_path: Path) -> None:
    node = make_node(tiny_encoder, tmp_path, holdout_every=1)
    out = node.apply_batch("b1", [LabelledText("keep", "cancel my order now", "cancel")])
    assert out.status == "skipped" and "held-out" in out.reason
    assert "keep" in node.holdout and "keep" not in node.memory
    assert node.version == 1


def test_what_the_held_out_set_cannot_keep_is_trained_on(
    tiny_encoder: Path, tmp_path: Path
) -> None:
    node = make_node(tiny_encoder, tmp_path, holdout_every=1, holdout_per_class=2, gate=LENIENT)
    out = node.apply_batch("b1", batch("gift", "gift_card_balance", n=6))
    assert node.holdout.count("gift_card_balance") == 2
    assert node.memory.count("gift_card_balance") == 4  # none of the six labels wasted
    assert not set(node.holdout.examples()[0]) & set(node.memory.examples()[0])
    assert out.status == "published" and out.labels_added == ["gift_card_balance"]


def test_the_served_head_learns_the_held_out_examples_the_gate_compares_without_them(
    tiny_encoder: Path, tmp_path: Path
) -> None:
    node = make_node(tiny_encoder, tmp_path, holdout_every=2, gate=LENIENT)
    out = node.apply_batch("b1", batch("gift", "gift_card_balance", n=8))
    assert out.status == "published" and node.holdout.count("gift_card_balance") > 0
    gated = node._gated_serving_head()
    _, _, kept = node.memory.examples()
    _, _, held = node.holdout.examples()
    vectors = np.concatenate([node.memory.vectors(), node.holdout.vectors()])
    served, _ = node.serving.head_logits()
    start = (gated.weight, gated.bias)
    layers = node.serving.pool_layers
    refit, _ = _fit(vectors, [*kept, *held], gated.labels, node.options, start, layers=layers)
    # one optimum, reached from two starts (to the fit's tolerance), and not the gate's
    assert np.abs(served - gated.weight).max() > 10 * np.abs(served - refit).max()
    restarted = EdgeNode("n1", node.registry, tmp_path, node.options)
    assert np.array_equal(restarted._gated_serving_head().weight, gated.weight)
    node.registry.rollback("n1")  # another version: the gate compares against what it serves
    restarted = EdgeNode("n1", node.registry, tmp_path, node.options)
    assert np.array_equal(
        restarted._gated_serving_head().weight, restarted.serving.head_logits()[0]
    )


class WatchedRefitNode(EdgeNode):
    """Records what the node answers with while its held-out refit runs; can fail it."""

    fail = False
    seen: tuple[np.ndarray, int] | None = None  # type: ignore[type-arg]

    def _with_holdout(self, head: _Head, *args: object, **kwargs: object) -> _Head:
        _, version = self.predict(["where is my parcel"])
        self.seen = (self.serving.head_logits()[0].copy(), version)
        if self.fail:
            raise OSError("disk full")
        return super()._with_holdout(head, *args, **kwargs)  # type: ignore[arg-type]


def test_the_accepted_head_answers_while_its_held_out_refit_runs(
    tiny_encoder: Path, tmp_path: Path
) -> None:
    reg = AdapterRegistry(tmp_path / "adapters")
    opts = options(tiny_encoder, holdout_every=2, gate=LENIENT)
    EdgeNode.bootstrap("n1", reg, tmp_path, SEED_TEXTS, SEED_LABELS, opts)
    node = WatchedRefitNode("n1", reg, tmp_path, opts)
    out = node.apply_batch("b1", batch("gift", "gift_card_balance", n=8))
    assert out.status == "published" and out.version == 2 and node.seen is not None
    during, version = node.seen
    # the gate-accepted (memory-only) head, under the number of the version before it
    assert version == 1 and np.allclose(during, node._gated_serving_head().weight, atol=1e-5)
    assert out.served_at is not None and node.version == 2
    before = node.serving.head_logits()[0].copy()
    node.fail = True  # the refit fails: nothing is published, the version's head is back
    with pytest.raises(OSError, match="disk full"):
        node.apply_batch("b2", batch("gift2", "gift_card_balance", n=8))
    assert node.version == 2 and reg.current("n1").version == 2  # type: ignore[union-attr]
    assert np.allclose(node.serving.head_logits()[0], before, atol=1e-5)
    assert not np.allclose(
        node.seen[0], before, atol=1e-3
    )  # (it did answer with another meanwhile)


class CorruptingNode(EdgeNode):
    """Refits, then scrambles the head: a candidate the gate must never let serve."""

    corrupt = True

    def _refit(self, vectors: np.ndarray, warm: EndModel) -> _Head:  # type: ignore[type-arg]
        head = super()._refit(vectors, warm)
        if not self.corrupt:
            return head
        rng = np.random.default_rng(0)
        return _Head(rng.normal(size=head.weight.shape) * 50, head.bias, head.labels)


def corrupting_node(tiny_encoder: Path, tmp_path: Path) -> CorruptingNode:
    """A bootstrapped node whose seeds are also its held-out set, and whose refit corrupts."""
    reg = AdapterRegistry(tmp_path / "adapters")
    opts = options(tiny_encoder)
    EdgeNode.bootstrap("n1", reg, tmp_path, SEED_TEXTS, SEED_LABELS, opts)
    node = CorruptingNode("n1", reg, tmp_path, opts)
    ids = [f"ho-{i}" for i in range(len(SEED_TEXTS))]
    node.holdout.add(ids, SEED_TEXTS, SEED_LABELS, node.serving.embed(SEED_TEXTS))
    return node


def test_the_gate_rejects_a_corrupted_candidate(tiny_encoder: Path, tmp_path: Path) -> None:
    node = corrupting_node(tiny_encoder, tmp_path)
    before = node.predict(SEED_TEXTS)[0]
    out = node.apply_batch("b1", batch("x", "track"))
    assert out.status == "rejected" and "fell" in out.reason
    assert node.version == 1 and node.registry.current("n1").version == 1  # type: ignore[union-attr]
    assert [p.intent for p in node.predict(SEED_TEXTS)[0]] == [p.intent for p in before]


def test_a_rejected_candidates_examples_are_learnt_by_the_next_one(
    tiny_encoder: Path, tmp_path: Path
) -> None:
    node = corrupting_node(tiny_encoder, tmp_path)
    out = node.apply_batch("b1", batch("g", "gift_card_balance"))
    assert out.status == "rejected" and "gift_card_balance" not in node.serving.labels
    assert "gift_card_balance" in node.memory.labels()
    # the next (honest) candidate, on a batch of a known intent, brings it back (through a
    # gate that lets the tiny random encoder's candidate pass)
    node.corrupt = False
    node.options = options(tiny_encoder, gate=LENIENT)
    out = node.apply_batch("b2", batch("t", "track"))
    assert out.status == "published" and "gift_card_balance" in out.labels_added
    assert "gift_card_balance" in node.serving.labels
    # and a restarted node remembers the rejected batch's examples too
    again = EdgeNode("n1", node.registry, tmp_path, node.options)
    assert "gift_card_balance" in again.memory.labels()


def test_memory_stays_bounded_and_class_balanced_across_restarts(
    tiny_encoder: Path, tmp_path: Path
) -> None:
    node = make_node(tiny_encoder, tmp_path, memory_per_class=5)
    for k in range(10):
        node.apply_batch(f"c{k}", batch(f"c{k}", "track", n=8))
    node.apply_batch("rare", batch("r", "rare", n=3))
    counts = {y: node.memory.count(y) for y in node.memory.labels()}
    assert counts == {"track": 5, "cancel": 2, "refund": 2, "rare": 3}
    assert node.memory.seen("track") == 2 + 80
    kept = node.memory.examples()[0]
    again = EdgeNode("n1", node.registry, tmp_path, node.options)
    assert again.memory.examples()[0] == kept
    again.apply_batch("more", batch("m", "track", n=8))
    assert again.memory.count("track") == 5 and len(again.memory) == 12


def test_a_batch_with_an_absurd_label_distribution_is_refused(node: EdgeNode) -> None:
    """Twelve examples, twelve intents nobody has seen: a broken or hostile client."""
    examples = [LabelledText(f"z-{i}", f"some text {i}", f"made_up_{i}") for i in range(12)]
    out = node.apply_batch("absurd", examples)
    assert out.status == "rejected" and "12 new intents at once" in out.reason
    assert node.version == 1 and not any(lab.startswith("made_up") for lab in node.serving.labels)
    assert not any(lab.startswith("made_up") for lab in node.memory.labels()), "poison kept"


def test_consolidation_adapts_the_encoder_and_reembeds_the_memory(
    tiny_encoder: Path, tmp_path: Path
) -> None:
    node = make_node(tiny_encoder, tmp_path, consolidate_every=8)
    key = node.memory.key
    node.apply_batch("b1", batch("x", "track", n=4))
    assert not node.consolidation_due()
    node.apply_batch("b2", batch("y", "cancel", n=4))
    assert node.consolidation_due()
    out = node.consolidate()
    assert out.status == "published", out.reason
    assert "consolidation_seconds" in out.metrics
    assert node.encoder_version == node.version == out.version  # a new embedding space
    assert EdgeNode("n1", node.registry, tmp_path, node.options).encoder_version == out.version
    assert node.serving.encoder_key() != key
    assert node.memory.key == node.serving.encoder_key() == node.holdout.key
    _, texts, _ = node.memory.examples()
    assert np.allclose(
        node.memory.vectors(), node.serving.embed(texts), atol=1e-3
    )  # kept in float16
    assert not node.consolidation_due()


def test_the_fast_path_learns_while_a_consolidation_runs(
    tiny_encoder: Path, tmp_path: Path
) -> None:
    """A consolidation begun, a batch learnt (and served) before it ends: the consolidated
    version keeps that batch's intent, its examples embedded under the new encoder."""
    node = make_node(tiny_encoder, tmp_path, consolidate_every=4, gate=LENIENT)
    node.apply_batch("b1", batch("x", "track", n=4))
    job = node.begin_consolidation()
    assert job is not None and node.begin_consolidation() is None  # one at a time
    during = node.apply_batch("b2", batch("gift", "gift_card_balance", n=4))
    assert during.status == "published" and during.labels_added == ["gift_card_balance"]
    assert node.predict(["gift gift_card_balance example 1"])[0][0].intent == "gift_card_balance"
    assert "gift-0" not in job.ids
    job.run()
    out = node.finish_consolidation(job)
    assert out.status == "published", out.reason
    assert node.encoder_version == out.version and out.parent == during.version
    assert "gift_card_balance" in node.serving.labels
    ids, texts, _ = node.memory.examples()
    assert "gift-0" in ids
    assert np.allclose(
        node.memory.vectors(), node.serving.embed(texts), atol=1e-3
    )  # kept in float16
    assert node.begin_consolidation() is not None  # the next one may begin


def test_a_consolidation_that_makes_the_weights_blow_up_is_refused(
    tiny_encoder: Path, tmp_path: Path
) -> None:
    """A learning rate of 1e30 turns LoRA's weights or loss into NaN/inf: the guard, not the
    gate, must stop it (a NaN model scores NaN, which a gate might wave through)."""
    node = make_node(
        tiny_encoder,
        tmp_path,
        consolidate_every=1,
        train=TrainOptions(learning_rate=1e30, steps=3),
    )
    node.apply_batch("b1", batch("x", "track", n=8))
    before = [p.intent for p in node.predict(SEED_TEXTS)[0]]
    version = node.version
    out = node.consolidate()
    assert out.status == "rejected" and re.search("nan|NaN|infinite", out.reason), out.reason
    assert node.version == version
    assert [p.intent for p in node.predict(SEED_TEXTS)[0]] == before
    assert all(torch.isfinite(t).all() for t in node.serving.state().values())


def test_trainer_refuses_empty_and_mismatched_batches(tiny_encoder: Path) -> None:
    model = EndModel(tiny_encoder, max_length=16)
    model.fit_head(SEED_TEXTS, SEED_LABELS)
    trainer = IncrementalTrainer(model, TrainOptions(steps=1))
    with pytest.raises(TrainingGuardError):
        trainer.train([], [])
    with pytest.raises(TrainingGuardError):
        trainer.train(["a", "b"], ["track"])


def test_training_is_deterministic_given_a_seed(tiny_encoder: Path) -> None:
    def run() -> list[float]:
        model = EndModel(tiny_encoder, max_length=16)
        model.fit_head(SEED_TEXTS, SEED_LABELS)
        trainer = IncrementalTrainer(model, TrainOptions(steps=3, seed=3, max_batch=4))
        report = trainer.train(SEED_TEXTS, SEED_LABELS)
        return [report.loss_first, report.loss_last]

    assert run() == run()


def test_the_gate_is_the_nodes_own(tiny_encoder: Path, tmp_path: Path) -> None:
    """A gate that tolerates nothing (no drop, not even a better score, and no example
    counted as noise) rejects every candidate; the node keeps serving its version."""
    node = corrupting_node(tiny_encoder, tmp_path)
    node.corrupt = False
    node.options = options(tiny_encoder, gate=EvalGate(tolerance=-1.0, min_lost=-(10**9)))
    out = node.apply_batch("b1", batch("x", "track"))
    assert out.status == "rejected" and node.version == 1


def test_a_refit_that_blows_up_is_refused_and_never_serves(
    node: EdgeNode, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Non-finite head weights (a numerical fault in the fit) are refused by the guard, not
    waved through by a gate that would score NaN."""
    import learners.edge_node as edge_node

    def broken(x: np.ndarray, y: np.ndarray, n: int, c: float, **_: object) -> tuple:  # type: ignore[type-arg]
        return np.full((n, x.shape[1]), np.nan), np.zeros(n)

    before = [p.intent for p in node.predict(SEED_TEXTS)[0]]
    monkeypatch.setattr(edge_node, "fit_softmax", broken)
    out = node.apply_batch("b1", batch("x", "track"))
    assert out.status == "rejected" and "NaN" in out.reason and node.version == 1
    assert [p.intent for p in node.predict(SEED_TEXTS)[0]] == before
