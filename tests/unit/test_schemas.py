"""Record schemas: strict decoding with readable reasons, versioning, compact embeddings."""

from __future__ import annotations

import json

import numpy as np
import pytest

from streams.schemas import (
    BY_TOPIC,
    ChatInbound,
    Feedback,
    SchemaError,
    ServedTurn,
    TrainingBatch,
    TurnBatch,
    dead_letter,
    decode,
)
from streams.topics import ALL


def inbound(**kw: object) -> bytes:
    base = {"turn_id": "t1", "node_id": "store-eu", "text": "where is my order", "ts": 1.0}
    base.update(kw)
    return json.dumps(base).encode()


def test_every_topic_has_a_schema() -> None:
    assert set(BY_TOPIC) == set(ALL)


def test_round_trip() -> None:
    rec = decode(ChatInbound, inbound())
    assert rec.schema_version == 1
    assert decode(ChatInbound, rec.dumps()) == rec


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        (b"\xff\xfe\x00", "not UTF-8"),
        (b"{not json", "not JSON"),
        (b"[1, 2]", "expected a JSON object"),
        (None, "empty message"),
        (inbound(text=""), "text"),
        (inbound(text="x" * 5000), "text"),
        (inbound(node_id="../etc"), "node_id"),
        (inbound(extra_field=1), "extra_field"),
        (inbound(schema_version=2), "unsupported schema_version 2"),
        (inbound(ts="yesterday"), "ts"),
    ],
)
def test_malformed_records_are_refused_with_a_reason(raw: bytes | None, reason: str) -> None:
    with pytest.raises(SchemaError, match=reason):
        decode(ChatInbound, raw)


def test_feedback_kinds_need_their_fields() -> None:
    base = {"feedback_id": "f", "turn_id": "t", "node_id": "n", "kind": "correction"}
    with pytest.raises(SchemaError, match="correction needs `label`"):
        decode(Feedback, json.dumps(base).encode())
    ok = decode(Feedback, json.dumps({**base, "label": "track_order"}).encode())
    assert ok.label == "track_order"


def test_batches_are_not_empty() -> None:
    raw = json.dumps({"batch_id": "b", "node_id": "n", "examples": [], "created_at": 0}).encode()
    with pytest.raises(SchemaError, match="examples"):
        decode(TrainingBatch, raw)


def test_dead_letter_keeps_the_original_bytes() -> None:
    letter = dead_letter("chat.inbound", 2, 17, b"store-eu", b"\xff junk", "not UTF-8")
    assert letter.original() == b"\xff junk"
    assert letter.source_topic == "chat.inbound" and letter.offset == 17


def _turn_batch(n: int = 3, dim: int = 384) -> TurnBatch:
    rng = np.random.default_rng(0)
    vectors = rng.normal(size=(n, dim)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    turns = [
        ServedTurn(turn_id=f"t{i}", text="hi", intent="greet", confidence=0.9, ts=1.0)
        for i in range(n)
    ]
    return TurnBatch.of("store-eu", 2, turns, vectors, served_at=2.0)


def test_turn_batch_carries_compact_embeddings() -> None:
    batch = _turn_batch()
    wire = batch.dumps()
    assert len(wire) <= 3 * 384 * 2 + 400  # float16 bytes and a small JSON header
    again = decode(TurnBatch, wire)
    np.testing.assert_allclose(
        again.embedding_matrix(), _turn_batch().embedding_matrix(), atol=1e-3
    )
    (first, *_) = again.chat_turns()
    assert (first.node_id, first.adapter_version, first.turn_id) == ("store-eu", 2, "t0")


def test_turn_batch_embeddings_must_match_its_turns() -> None:
    head, _, tail = _turn_batch().dumps().partition(b"\n")
    data = json.loads(head)
    data["dim"] = 383
    with pytest.raises(SchemaError, match="expected 3 turns x 383 dims"):
        decode(TurnBatch, json.dumps(data).encode() + b"\n" + tail)
    with pytest.raises(SchemaError, match="no binary part"):
        decode(TurnBatch, head)
    data["dim"], data["intents"] = 384, ["greet"] * 2
    with pytest.raises(SchemaError, match="intents: 2 values for 3 turns"):
        decode(TurnBatch, json.dumps(data).encode() + b"\n" + tail)
