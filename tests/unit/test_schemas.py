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
    TrainingBatch,
    dead_letter,
    decode,
    decode_embedding,
    encode_embedding,
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


def test_embedding_is_compact_and_close() -> None:
    v = np.random.default_rng(0).normal(size=384).astype(np.float32)
    v /= np.linalg.norm(v)
    data = encode_embedding(v)
    assert len(data) <= 1024
    np.testing.assert_allclose(decode_embedding(data), v, atol=1e-3)
