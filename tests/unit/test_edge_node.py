"""Edge node on a tiny random BERT: bootstrap, learn a batch, grow, gate, apply once, restart."""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path

import pytest
import torch

from learners.edge_node import EdgeNode, LabelledText, NodeNotBootstrappedError
from learners.gate import EvalGate
from learners.options import EdgeOptions, TrainOptions
from learners.replay import ClassBalancedReplay
from learners.trainer import IncrementalTrainer, TrainingGuardError, TrainReport
from models.end_model import EndModel
from models.registry import AdapterRegistry
from tests.conftest import SEED_LABELS, SEED_TEXTS


def options(encoder: Path, **gate: float) -> EdgeOptions:
    return EdgeOptions(
        encoder_path=str(encoder),
        max_length=16,
        train=TrainOptions(learning_rate=1e-2, steps=3, replay_sample=8, seed=1),
        replay_per_class=8,
        holdout_every=0,
        gate=EvalGate(**gate),  # type: ignore[arg-type]
    )


@pytest.fixture()
def node(tiny_encoder: Path, tmp_path: Path) -> EdgeNode:
    reg = AdapterRegistry(tmp_path / "adapters")
    opts = options(tiny_encoder)
    EdgeNode.bootstrap("n1", reg, tmp_path, SEED_TEXTS, SEED_LABELS, opts)
    return EdgeNode("n1", reg, tmp_path, opts)


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


def test_a_new_label_grows_the_head(node: EdgeNode) -> None:
    out = node.apply_batch("b1", batch("gift", "gift_card_balance"))
    assert out.labels_added == ["gift_card_balance"]
    assert node.serving.labels[-1] == "gift_card_balance"
    assert node.registry.current("n1").labels[-1] == "gift_card_balance"  # type: ignore[union-attr]


def test_a_batch_is_applied_once_also_after_a_restart(node: EdgeNode, tmp_path: Path) -> None:
    assert node.apply_batch("b1", batch("x", "track")).status == "published"
    assert node.apply_batch("b1", batch("x", "track")).status == "skipped"
    again = EdgeNode("n1", node.registry, tmp_path, node.options)
    assert again.version == 2
    assert again.apply_batch("b1", batch("x", "track")).status == "skipped"


def test_a_regressing_candidate_is_rejected_and_never_serves(
    tiny_encoder: Path, tmp_path: Path
) -> None:
    reg = AdapterRegistry(tmp_path / "adapters")
    # a gate that tolerates no change at all on a held-out set of everything
    opts = options(tiny_encoder, tolerance=-1.0)
    opts = EdgeOptions(**{**opts.__dict__, "holdout_every": 1})
    EdgeNode.bootstrap("n1", reg, tmp_path, SEED_TEXTS, SEED_LABELS, opts)
    node = EdgeNode("n1", reg, tmp_path, opts)
    node.holdout.add("where is my parcel", "track")
    out = node.apply_batch("b1", [LabelledText("keep", "cancel my order now", "cancel")] * 1)
    assert out.status in {"skipped", "rejected"}
    assert node.version == 1 and reg.current("n1").version == 1  # type: ignore[union-attr]


def test_trainer_refuses_empty_and_mismatched_batches(tiny_encoder: Path) -> None:
    model = EndModel(tiny_encoder, max_length=16)
    model.fit_head(SEED_TEXTS, SEED_LABELS)
    trainer = IncrementalTrainer(model, ClassBalancedReplay(4), TrainOptions(steps=1))
    with pytest.raises(TrainingGuardError):
        trainer.train([], [])
    with pytest.raises(TrainingGuardError):
        trainer.train(["a", "b"], ["track"])


def test_training_is_deterministic_given_a_seed(tiny_encoder: Path) -> None:
    def run() -> list[float]:
        model = EndModel(tiny_encoder, max_length=16)
        model.fit_head(SEED_TEXTS, SEED_LABELS)
        replay = ClassBalancedReplay(4, seed=3)
        replay.extend(zip(SEED_TEXTS, SEED_LABELS, strict=True))
        trainer = IncrementalTrainer(model, replay, TrainOptions(steps=3, seed=3))
        report = trainer.train(SEED_TEXTS[:3], SEED_LABELS[:3])
        return [report.loss_first, report.loss_last]

    assert run() == run()


class CorruptingTrainer(IncrementalTrainer):
    """Trains, then scrambles the head: a candidate the gate must never let serve."""

    def train(self, texts: Sequence[str], labels: Sequence[str]) -> TrainReport:
        report = super().train(texts, labels)
        with torch.no_grad():
            self.model.head.weight.copy_(torch.randn_like(self.model.head.weight))
        return report


def corrupting_node(tiny_encoder: Path, tmp_path: Path) -> EdgeNode:
    """A bootstrapped node whose seeds are its held-out set and whose trainer corrupts."""
    reg = AdapterRegistry(tmp_path / "adapters")
    opts = options(tiny_encoder)
    EdgeNode.bootstrap("n1", reg, tmp_path, SEED_TEXTS, SEED_LABELS, opts)
    node = EdgeNode("n1", reg, tmp_path, opts)
    for text, label in zip(SEED_TEXTS, SEED_LABELS, strict=True):
        node.holdout.add(text, label)
    node.trainer = CorruptingTrainer(node.working, node.replay, opts.train)
    return node


def test_the_gate_rejects_a_corrupted_candidate(tiny_encoder: Path, tmp_path: Path) -> None:
    node = corrupting_node(tiny_encoder, tmp_path)
    reg = node.registry
    before = node.predict(SEED_TEXTS)[0]
    out = node.apply_batch("b1", batch("x", "track"))
    assert out.status == "rejected" and "fell" in out.reason
    assert node.version == 1 and reg.current("n1").version == 1  # type: ignore[union-attr]
    after = node.predict(SEED_TEXTS)[0]
    assert [p.intent for p in after] == [p.intent for p in before]
    # the working copy is back to the serving weights
    working, serving = node.working.state(), node.serving.state()
    assert all(torch.equal(working[k], serving[k]) for k in serving)


def test_a_rejected_candidates_examples_are_learnt_by_the_next_one(
    tiny_encoder: Path, tmp_path: Path
) -> None:
    node = corrupting_node(tiny_encoder, tmp_path)
    out = node.apply_batch("b1", batch("g", "gift_card_balance"))
    assert out.status == "rejected" and "gift_card_balance" not in node.serving.labels
    assert "gift_card_balance" in node.replay.labels()
    # the next candidate (an honest trainer, a batch of a known intent, a gate that lets
    # the tiny random encoder's candidate through) brings it back
    node.options = options(tiny_encoder, tolerance=1.0)
    node.trainer = IncrementalTrainer(node.working, node.replay, node.options.train)
    out = node.apply_batch("b2", batch("t", "track"))
    assert out.status == "published" and "gift_card_balance" in out.labels_added
    assert "gift_card_balance" in node.serving.labels
    # and a restarted node remembers the rejected batch's examples too
    again = EdgeNode("n1", node.registry, tmp_path, node.options)
    assert "gift_card_balance" in again.replay.labels()


def test_replay_stays_bounded_and_class_balanced() -> None:
    replay = ClassBalancedReplay(per_class=5, seed=0)
    for i in range(1000):
        replay.add(f"common {i}", "common")
    for i in range(3):
        replay.add(f"rare {i}", "rare")
    assert len(replay) == 8
    drawn = [label for _, label in replay.sample(6)]
    assert drawn.count("rare") == 3 and drawn.count("common") == 3


def test_a_batch_with_an_absurd_label_distribution_is_refused(node: EdgeNode) -> None:
    """Twelve examples, twelve intents nobody has seen: a broken or hostile client."""
    examples = [LabelledText(f"z-{i}", f"some text {i}", f"made_up_{i}") for i in range(12)]
    out = node.apply_batch("absurd", examples)
    assert out.status == "rejected" and "12 new intents at once" in out.reason
    assert node.version == 1 and not any(lab.startswith("made_up") for lab in node.serving.labels)
    assert not any(lab.startswith("made_up") for lab in node.replay.labels()), "poison kept"


def test_a_batch_that_makes_the_weights_blow_up_is_refused(
    tiny_encoder: Path, tmp_path: Path
) -> None:
    """A learning rate of 1e30 turns any batch into NaN/inf weights or loss: the guard,
    not the gate, must stop it (a NaN model scores NaN, which a gate might wave through)."""
    reg = AdapterRegistry(tmp_path / "adapters")
    opts = options(tiny_encoder)
    opts = EdgeOptions(**{**opts.__dict__, "train": TrainOptions(learning_rate=1e30, steps=3)})
    EdgeNode.bootstrap("n1", reg, tmp_path, SEED_TEXTS, SEED_LABELS, opts)
    node = EdgeNode("n1", reg, tmp_path, opts)
    before = [p.intent for p in node.predict(SEED_TEXTS)[0]]
    out = node.apply_batch("blow-up", batch("x", "track", n=8))
    assert out.status == "rejected" and re.search("nan|NaN|infinite", out.reason), out.reason
    assert node.version == 1 and reg.current("n1").version == 1  # type: ignore[union-attr]
    assert [p.intent for p in node.predict(SEED_TEXTS)[0]] == before
    working, serving = node.working.state(), node.serving.state()
    assert all(
        torch.isfinite(working[k]).all() and torch.equal(working[k], serving[k]) for k in serving
    )
