"""Webhook bodies: good feedback parses; every client mistake is a 4xx with a reason."""

from __future__ import annotations

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from streams.webhook.requests import MAX_BATCH, MAX_BODY_BYTES, RequestError, parse_feedback

JSON = "application/json"
GOOD = {"feedback_id": "f1", "turn_id": "t1", "node_id": "store-eu", "kind": "thumbs_up"}


def _body(data: object) -> bytes:
    return json.dumps(data).encode()


def test_one_feedback_and_a_batch_parse() -> None:
    (one,) = parse_feedback(_body(GOOD), "application/json; charset=utf-8", batch=False)
    assert (one.feedback_id, one.node_id, one.kind) == ("f1", "store-eu", "thumbs_up")
    items = [{**GOOD, "feedback_id": f"f{i}"} for i in range(3)]
    got = parse_feedback(_body({"feedback": items}), JSON, batch=True)
    assert [f.feedback_id for f in got] == ["f0", "f1", "f2"]


@pytest.mark.parametrize(
    ("body", "content_type", "batch", "status", "reason"),
    [
        (_body(GOOD), "text/plain", False, 415, "Content-Type"),
        (_body(GOOD), None, False, 415, "Content-Type"),
        (b" " * (MAX_BODY_BYTES + 1), JSON, False, 413, "at most"),
        (b"\xff{}", JSON, False, 400, "not UTF-8"),
        (b"{not json", JSON, False, 400, "not JSON"),
        (b'{"ts": NaN}', JSON, False, 400, "not a JSON number"),
        (b"[1, 2]", JSON, False, 400, "expected a JSON object, got an array"),
        (_body({**GOOD, "kind": "love"}), JSON, False, 422, "kind"),
        (_body({**GOOD, "kind": "correction"}), JSON, False, 422, "needs `label`"),
        (_body({**GOOD, "kind": "rating", "rating": 9}), JSON, False, 422, "rating"),
        (_body({**GOOD, "node_id": "../etc"}), JSON, False, 422, "node_id"),
        (_body({**GOOD, "extra": 1}), JSON, False, 422, "extra"),
        (_body({**GOOD, "ts": 1e400}), JSON, False, 400, "Infinity is not a JSON number"),
        (_body(GOOD)[:-1] + b', "ts": 1e400}', JSON, False, 422, "ts: .*finite number"),
        (_body([GOOD]), JSON, True, 400, '{"feedback"'),
        (_body({"feedback": []}), JSON, True, 400, "non-empty"),
        (_body({"feedback": [GOOD] * (MAX_BATCH + 1)}), JSON, True, 422, "per batch"),
    ],
)
def test_every_bad_body_gets_its_status_and_reason(
    body: bytes, content_type: str | None, batch: bool, status: int, reason: str
) -> None:
    with pytest.raises(RequestError, match=reason) as err:
        parse_feedback(body, content_type, batch)
    assert err.value.status == status


def test_a_batch_with_bad_items_is_refused_whole_and_names_them() -> None:
    items = [GOOD, {**GOOD, "kind": "love"}, "nope"]
    with pytest.raises(RequestError) as err:
        parse_feedback(_body({"feedback": items}), JSON, batch=True)
    assert err.value.status == 422 and "2 of 3" in err.value.message
    assert [b["index"] for b in err.value.items] == [1, 2]
    assert "expected a JSON object, got a string" in err.value.items[1]["reason"]


_json = st.recursive(
    st.none() | st.booleans() | st.floats() | st.integers() | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner),
    max_leaves=12,
)


@settings(max_examples=300)
@given(body=st.one_of(st.binary(max_size=300), _json.map(_body)), batch=st.booleans())
def test_no_body_gets_anything_but_a_4xx_or_feedback(body: bytes, batch: bool) -> None:
    """The validator never fails with another exception (the webhook's 5xx)."""
    try:
        got = parse_feedback(body, JSON, batch)
    except RequestError as exc:
        assert 400 <= exc.status < 500 and exc.message
    else:
        assert got and all(f.feedback_id for f in got)


@settings(max_examples=200)
@given(item=st.fixed_dictionaries({k: st.one_of(st.just(v), _json) for k, v in GOOD.items()}))
def test_near_valid_items_get_a_4xx_or_parse(item: dict[str, object]) -> None:
    try:
        got = parse_feedback(_body(item), JSON, batch=False)
    except RequestError as exc:
        assert exc.status in (400, 422) and exc.message  # 400: NaN/Infinity are not JSON
    else:
        assert got[0].feedback_id == item["feedback_id"]
