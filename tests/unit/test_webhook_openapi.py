"""The webhook's OpenAPI description is the contract clients generate code from: every body
it calls valid is accepted by the webhook's own parser, and every body the parser refuses
for a schema reason is invalid under it (checked with jsonschema, on the published
document itself)."""

from __future__ import annotations

import json
from typing import Any

import jsonschema
import pytest

from streams.webhook.openapi import openapi
from streams.webhook.requests import MAX_BATCH, RequestError, parse_feedback


def valid(schema_name: str, body: dict[str, Any]) -> bool:
    document = openapi()
    schema = {"$ref": f"#/components/schemas/{schema_name}", **document}
    validator = jsonschema.Draft202012Validator(schema)
    return validator.is_valid(body)


def accepted(body: dict[str, Any], batch: bool = False) -> bool:
    try:
        parse_feedback(json.dumps(body).encode(), "application/json", batch)
    except RequestError:
        return False
    return True


BASE = {"feedback_id": "f1", "turn_id": "t1", "node_id": "store-eu"}


@pytest.mark.parametrize(
    "body",
    [
        {**BASE, "kind": "thumbs_up"},
        {**BASE, "kind": "correction", "label": "track_order"},
        {**BASE, "kind": "rating", "rating": 4},
        {**BASE, "kind": "rating", "rating": None},
        {**BASE, "kind": "rating"},
        {**BASE, "kind": "correction"},
        {**BASE, "kind": "correction", "label": None},
        {**BASE, "kind": "rating", "rating": 9},
        {**BASE, "kind": "escalated", "rating": 2},
        {**BASE, "kind": "love"},
        {"kind": "thumbs_up"},
    ],
)
def test_the_schema_and_the_parser_agree_on_every_kind(body: dict[str, Any]) -> None:
    assert valid("Feedback", body) == accepted(body)


def test_a_batch_over_max_items_is_a_schema_violation() -> None:
    items = [{**BASE, "feedback_id": f"f{i}", "kind": "thumbs_up"} for i in range(MAX_BATCH + 1)]
    full = {"feedback": items[:MAX_BATCH]}
    assert valid("FeedbackBatch", full) and accepted(full, batch=True)
    over = {"feedback": items}
    assert not valid("FeedbackBatch", over)
    with pytest.raises(RequestError) as refused:
        parse_feedback(json.dumps(over).encode(), "application/json", batch=True)
    assert refused.value.status == 422
    statuses = openapi()["paths"]["/v1/feedback/batch"]["post"]["responses"]
    assert str(MAX_BATCH) in statuses["422"]["description"]
