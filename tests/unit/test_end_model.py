"""End model on a tiny random BERT: centroid head, growth, state swap, training moves it."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from models.end_model import HEAD_WEIGHT, EndModel
from tests.conftest import SEED_LABELS, SEED_TEXTS

TEXTS, LABELS = SEED_TEXTS, SEED_LABELS


@pytest.fixture()
def model(tiny_encoder: Path) -> EndModel:
    torch.manual_seed(0)
    m = EndModel(tiny_encoder, max_length=16)
    m.fit_head(TEXTS, LABELS)
    return m


def test_centroid_head_predicts_its_examples(model: EndModel) -> None:
    assert model.labels == ["track", "cancel", "refund"]
    preds = model.predict(TEXTS)
    assert len(preds) == len(TEXTS)
    for p in preds:
        assert 0.0 <= p.confidence <= 1.0
        assert p.top_k[0] == (p.intent, p.confidence)
        assert p.embedding.shape == (32,)
        assert np.linalg.norm(p.embedding) == pytest.approx(1.0, abs=1e-4)


def test_growth_keeps_old_logits(model: EndModel) -> None:
    with torch.no_grad():
        before = model.logits(TEXTS).clone()
    added = model.add_labels(["is there a price match", "match the price"], ["price_match"] * 2)
    assert added == ["price_match"]
    with torch.no_grad():
        after = model.logits(TEXTS)
    assert after.shape == (len(TEXTS), 4)
    torch.testing.assert_close(after[:, :3], before)
    assert model.add_labels(["again"], ["price_match"]) == []


def test_state_round_trip_and_shape_check(model: EndModel, tiny_encoder: Path) -> None:
    other = EndModel(tiny_encoder, max_length=16)
    other.load_state(model.state(), model.labels)
    a = [p.top_k for p in model.predict(TEXTS)]
    b = [p.top_k for p in other.predict(TEXTS)]
    assert a == b
    bad = model.state()
    bad[HEAD_WEIGHT] = bad[HEAD_WEIGHT][:2]
    with pytest.raises(ValueError, match="does not fit 3 labels"):
        other.load_state(bad, model.labels)


def test_unbootstrapped_model_refuses_to_predict(tiny_encoder: Path) -> None:
    with pytest.raises(RuntimeError, match="no intents"):
        EndModel(tiny_encoder).predict(["hi"])


def test_length_buckets_keep_the_order_and_the_embeddings(tiny_encoder: Path) -> None:
    """Inference sorts by length into buckets; each text's embedding is what it gets alone
    (padding is masked), and the answers come back in the order asked."""
    m = EndModel(tiny_encoder, max_length=16, precision="float32")
    texts = [("word " * (i % 11 + 1)).strip() + f" {i}" for i in range(37)]  # > 2 buckets
    together = m.embed(texts)
    alone = np.concatenate([m.embed([t]) for t in texts])
    np.testing.assert_allclose(together, alone, atol=1e-5)
    assert m.embed([]).shape == (0, m.dim)


def test_bfloat16_inference_is_close_to_float32(tiny_encoder: Path) -> None:
    exact = EndModel(tiny_encoder, max_length=16, precision="float32")
    fast = EndModel(tiny_encoder, max_length=16, precision="bfloat16")
    assert fast.precision == torch.bfloat16
    a, b = exact.embed(TEXTS), fast.embed(TEXTS)
    assert b.dtype == np.float32
    assert float((a * b).sum(1).min()) > 0.99  # unit vectors: cosine
    with pytest.raises(ValueError, match="choose one of auto, bfloat16, float32"):
        EndModel(tiny_encoder, precision="int4")


def test_the_head_reads_every_layer_and_a_turn_carries_the_sentence_embedding(
    tiny_encoder: Path,
) -> None:
    from models.encoder import load_encoder, mean_pool

    pooled = EndModel(tiny_encoder, max_length=16, precision="float32")  # all (2) layers
    last = EndModel(tiny_encoder, max_length=16, precision="float32", pool_layers=1)
    assert (pooled.dim, last.dim) == (64, 32)
    assert pooled.encoder_key() != last.encoder_key()  # memories re-embed across a change
    features = pooled.encoder.infer(TEXTS, [None])
    assert torch.allclose(features.norm(dim=1), torch.ones(len(TEXTS)), atol=1e-5)
    tokenizer, base = load_encoder(tiny_encoder)
    enc = tokenizer(TEXTS, padding=True, truncation=True, max_length=16, return_tensors="pt")
    with torch.inference_mode():
        layers = base(**enc, output_hidden_states=True).hidden_states
    first, final = (mean_pool(h, enc["attention_mask"]) for h in (layers[1], layers[2]))
    assert torch.allclose(features, torch.cat([first, final], 1) / 2**0.5, atol=1e-4)
    assert torch.allclose(pooled.encoder.sentence(features), final, atol=1e-4)
    assert torch.allclose(last.encoder.infer(TEXTS, [None]), final, atol=1e-4)
    pooled.fit_head(TEXTS, LABELS)
    assert np.allclose(pooled.predict(TEXTS)[0].embedding, final[0].numpy(), atol=1e-4)
