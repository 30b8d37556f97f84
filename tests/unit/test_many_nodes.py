"""Many nodes over one shared encoder (tiny random BERT): mixed-adapter batches answer as
each node alone, the registry's LoRA tensors are peft's, training never writes the shared
encoder, nodes let go and loaded again answer the same, one node's learning leaves the
others' answers alone, and the resident set keeps its bounds."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from learners.edge_node import EdgeNode
from learners.resident import ResidentNodes
from models.encoder import encoder_layer_count
from models.end_model import EndModel
from models.lora import LoraAdapter, SharedEncoder
from models.registry import AdapterRegistry
from tests.conftest import SEED_LABELS, SEED_TEXTS
from tests.unit.test_edge_node import LENIENT, batch, options

QUESTIONS = ["where is my parcel", "cancel it", "my money back please", "track order 12"]


def adapted(encoder: Path, seed: int) -> EndModel:
    """A model with a random non-zero adapter (as a trained one would have) and a head."""
    model = EndModel(encoder, max_length=16)
    model.fit_head(SEED_TEXTS, SEED_LABELS)
    adapter = LoraAdapter.initial(model.encoder.shapes, model.lora.r, model.lora.alpha, seed)
    generator = torch.Generator().manual_seed(100 + seed)
    for b in adapter.b.values():
        b.copy_(torch.randn(b.shape, generator=generator) * 0.5)
    model.adapter = adapter
    return model


def test_models_share_one_encoder(tiny_encoder: Path) -> None:
    a, b = EndModel(tiny_encoder, max_length=16), EndModel(tiny_encoder, max_length=16)
    assert a.encoder is b.encoder
    assert a.nbytes < 0.01 * a.encoder.nbytes  # a model's own bytes: head (and adapter)


def test_a_mixed_batch_answers_as_each_model_alone(tiny_encoder: Path) -> None:
    first, second, plain = (
        adapted(tiny_encoder, 1),
        adapted(tiny_encoder, 2),
        EndModel(tiny_encoder, max_length=16),
    )
    plain.fit_head(SEED_TEXTS, SEED_LABELS)
    requests = [(first, QUESTIONS[:3]), (second, QUESTIONS), (plain, QUESTIONS[1:]), (first, ["x"])]
    together = EndModel.predict_many(requests)
    for (model, texts), answers in zip(requests, together, strict=True):
        alone = model.predict(texts)
        assert [p.intent for p in answers] == [p.intent for p in alone]
        for mixed, single in zip(answers, alone, strict=True):
            assert mixed.confidence == pytest.approx(single.confidence, abs=1e-5)
            assert abs(mixed.embedding - single.embedding).max() < 1e-5
    # the adapters do change the embeddings: the rows really went through different ones
    assert abs(together[1][0].embedding - together[2][0].embedding).max() > 1e-3


def test_the_registry_tensors_are_a_peft_lora_state_dict(tiny_encoder: Path) -> None:
    """Our batched LoRA computes what peft's LoRA layers compute from the same tensors."""
    from peft import LoraConfig, get_peft_model, set_peft_model_state_dict

    from models.encoder import load_encoder, mean_pool

    model = adapted(tiny_encoder, 3)
    lora = {k.removeprefix("lora."): v for k, v in model.state().items() if k.startswith("lora.")}
    tokenizer, base = load_encoder(tiny_encoder)
    config = LoraConfig(
        r=model.lora.r, lora_alpha=model.lora.alpha, target_modules=["query", "value"]
    )
    peft_model = get_peft_model(base, config)
    result = set_peft_model_state_dict(peft_model, lora)
    assert not result.unexpected_keys
    peft_model.eval()
    enc = tokenizer(QUESTIONS, padding=True, return_tensors="pt")
    with torch.inference_mode():
        theirs = mean_pool(peft_model(**enc).last_hidden_state, enc["attention_mask"])
    ours = model.encoder.sentence(model.encoder.infer(QUESTIONS, [model.adapter]))
    if model.precision == torch.float32:
        assert torch.allclose(ours, theirs, atol=1e-5)
    else:  # bf16 forward passes here against peft's float32
        assert float((ours * theirs).sum(1).min()) > 0.99


def test_training_leaves_the_shared_encoder_bit_identical(
    tiny_encoder: Path, tmp_path: Path
) -> None:
    opts = options(tiny_encoder, gate=LENIENT)
    registry = AdapterRegistry(tmp_path / "adapters")
    EdgeNode.bootstrap("n1", registry, tmp_path, SEED_TEXTS, SEED_LABELS, opts)
    node = EdgeNode("n1", registry, tmp_path, opts)
    shared = node.serving.encoder
    before = {k: v.clone() for k, v in shared.model.state_dict().items()}
    outcome = node.consolidate()
    assert outcome.status == "published" and node.serving.adapter is not None
    after = shared.model.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)
    assert not any(p.requires_grad for p in shared.model.parameters())


def two_nodes(encoder: Path, tmp_path: Path) -> tuple[AdapterRegistry, list[EdgeNode]]:
    opts = options(encoder, gate=LENIENT)
    registry = AdapterRegistry(tmp_path / "adapters")
    nodes = []
    for name in ("store-a", "store-b"):
        EdgeNode.bootstrap(name, registry, tmp_path, SEED_TEXTS, SEED_LABELS, opts)
        nodes.append(EdgeNode(name, registry, tmp_path, opts))
    return registry, nodes


def test_learning_on_one_node_never_changes_another(tiny_encoder: Path, tmp_path: Path) -> None:
    _, (a, b) = two_nodes(tiny_encoder, tmp_path)
    before = [(p.intent, p.confidence) for p in b.predict(QUESTIONS)[0]]
    assert a.apply_batch("b1", batch("gift", "gift_card")).status == "published"
    assert a.consolidate().status == "published"
    assert "gift_card" in a.serving.labels and "gift_card" not in b.serving.labels
    mixed = EdgeNode.predict_many([(a, QUESTIONS), (b, QUESTIONS)])
    assert [p.intent for p in mixed[1][0]] == [intent for intent, _ in before]
    assert [p.confidence for p in mixed[1][0]] == pytest.approx([c for _, c in before], abs=1e-5)
    assert [(p.intent, p.confidence) for p in b.predict(QUESTIONS)[0]] == before


def test_a_node_let_go_and_loaded_again_answers_the_same(
    tiny_encoder: Path, tmp_path: Path
) -> None:
    registry, (a, _) = two_nodes(tiny_encoder, tmp_path)
    a.apply_batch("b1", batch("gift", "gift_card"))
    a.consolidate()
    answers = a.predict(QUESTIONS)[0]
    assert a.release_learning_state() and not a.learning_state_loaded
    again = EdgeNode("store-a", registry, tmp_path, a.options)
    assert not again.learning_state_loaded  # a serving node reads no memory
    for old, new in zip(answers, again.predict(QUESTIONS)[0], strict=True):
        assert (old.intent, old.confidence) == (new.intent, pytest.approx(new.confidence, abs=1e-6))
    memory = len(a.memory)  # read back from the node's files
    assert a.learning_state_loaded and memory == len(again.memory)
    assert again.apply_batch("b1", batch("gift", "gift_card")).status == "skipped"


def test_a_serving_node_holds_only_its_head_and_adapter(tiny_encoder: Path, tmp_path: Path) -> None:
    _, (a, _) = two_nodes(tiny_encoder, tmp_path)
    serving = a.nbytes
    a.apply_batch("b1", batch("gift", "gift_card"))
    assert a.nbytes > serving  # the memory is loaded while it learns
    a.release_learning_state()
    assert a.nbytes <= serving + a.serving.dim * 4 * 2  # one more head row


def test_the_resident_set_keeps_busy_nodes_and_its_byte_bound(
    tiny_encoder: Path, tmp_path: Path
) -> None:
    registry, (a, b) = two_nodes(tiny_encoder, tmp_path)
    resident: ResidentNodes[EdgeNode] = ResidentNodes(max_bytes=a.nbytes + b.nbytes // 2)
    resident.put("store-a", a)
    with a.pinned():
        assert resident.put("store-b", b) == []  # a is busy: over the bound, but kept
    assert resident.put("store-b", b) == ["store-a"]
    resident.put("store-a", EdgeNode("store-a", registry, tmp_path, a.options))
    assert list(resident) == ["store-a"]


def test_only_the_last_taught_nodes_keep_their_learning_state(
    tiny_encoder: Path, tmp_path: Path
) -> None:
    _, (a, b) = two_nodes(tiny_encoder, tmp_path)
    resident: ResidentNodes[EdgeNode] = ResidentNodes(learning=1)
    resident.put("store-a", a)
    resident.put("store-b", b)
    a.apply_batch("b1", batch("gift", "gift_card"))
    assert resident.taught("store-a") == []
    b.apply_batch("b2", batch("gift", "gift_card"))
    assert resident.taught("store-b") == ["store-a"]
    assert not a.learning_state_loaded and b.learning_state_loaded


def test_shared_encoders_are_one_per_folder_and_settings(tiny_encoder: Path) -> None:
    one = SharedEncoder.shared(tiny_encoder, 16, "float32", ("query", "value"))
    assert one is SharedEncoder.shared(tiny_encoder, 16, "float32", ("query", "value"))
    assert one is not SharedEncoder.shared(tiny_encoder, 16, "float32", ("query",))
    layers = encoder_layer_count(tiny_encoder)
    pooled = SharedEncoder.shared(tiny_encoder, 16, "float32", ("query",), layers)
    assert pooled.pool_layers == layers
    assert pooled is SharedEncoder.shared(tiny_encoder, 16, "float32", ("query",), layers + 3)
    with pytest.raises(ValueError, match="no Linear module"):
        SharedEncoder(tiny_encoder, 16, "float32", ("nothing",))
    with pytest.raises(ValueError, match="2 adapters for 3 texts"):
        one.infer(QUESTIONS[:3], [None, None])


def test_an_adapter_that_does_not_fit_is_refused(tiny_encoder: Path) -> None:
    model = adapted(tiny_encoder, 4)
    state = model.state()
    state["lora.base_model.model.encoder.layer.9.attention.self.query.lora_A.weight"] = torch.zeros(
        8, 32
    )
    with pytest.raises(ValueError, match="does not fit this encoder"):
        model.load_state(state, model.labels)
    state = {k: v for k, v in model.state().items() if "layer.0" not in k}
    with pytest.raises(ValueError, match="missing"):
        model.load_state(state, model.labels)
