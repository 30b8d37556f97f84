"""The webhook's OpenAPI 3.1 description, served at ``/openapi.json``.

Request bodies come from the ``chat.feedback`` record schema itself (pydantic's JSON
Schema), so the description cannot drift from what the validator accepts.
"""

from __future__ import annotations

from functools import cache
from typing import Any

from streams.schemas import Feedback
from streams.webhook.requests import MAX_BATCH, MAX_BODY_BYTES
from streams.webhook.signing import DEFAULT_TOLERANCE_S

_SIGNING = (
    "Every POST carries `X-ECC-Client: <client id>` and "
    "`X-ECC-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256 of '<t>.<raw body>'>` made "
    "with the client's shared secret; several `v1=` are allowed while a secret is rotated. "
    f"Timestamps more than {DEFAULT_TOLERANCE_S:.0f} s (by default) from the server's clock "
    "are refused."
)


def _error(description: str) -> dict[str, Any]:
    return {
        "description": description,
        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}},
    }


def _post(summary: str, body_schema: dict[str, Any]) -> dict[str, Any]:
    return {
        "summary": summary,
        "security": [{"client": [], "signature": []}],
        "requestBody": {
            "required": True,
            "content": {"application/json": {"schema": body_schema}},
        },
        "responses": {
            "202": {
                "description": "Acknowledged by the broker (accepted) or seen before (duplicates).",
                "content": {
                    "application/json": {"schema": {"$ref": "#/components/schemas/Accepted"}}
                },
            },
            "400": _error("The body is not UTF-8 JSON of the expected shape."),
            "401": _error("Missing, malformed, stale or wrong signature; nothing was stored."),
            "413": _error(f"Body over {MAX_BODY_BYTES} bytes."),
            "415": _error("Content-Type is not application/json."),
            "422": _error(
                "An item does not match the feedback schema (field: reason), or a batch has "
                f"over {MAX_BATCH} items."
            ),
            "503": {
                **_error("The broker did not acknowledge in time; retry the same request."),
                "headers": {"Retry-After": {"schema": {"type": "integer"}}},
            },
        },
    }


# What each kind needs beyond the fields every feedback has (Feedback._kind_fields): said in
# the schema too, so a client generating code from it cannot build a request that is refused.
KIND_NEEDS: dict[str, dict[str, Any]] = {
    "correction": {"required": ["label"], "properties": {"label": {"type": "string"}}},
    "rating": {
        "required": ["rating"],
        "properties": {"rating": {"type": "integer", "minimum": 1, "maximum": 5}},
    },
}


def feedback_schema() -> dict[str, Any]:
    """The chat.feedback record's JSON Schema with what each kind requires, as
    ``if kind is K then ...`` clauses (JSON Schema 2020-12, OpenAPI 3.1)."""
    feedback = Feedback.model_json_schema(mode="validation")
    feedback["allOf"] = [
        {"if": {"properties": {"kind": {"const": kind}}, "required": ["kind"]}, "then": needs}
        for kind, needs in KIND_NEEDS.items()
    ]
    return feedback


@cache
def openapi() -> dict[str, Any]:
    feedback = feedback_schema()
    defs = feedback.pop("$defs", {})
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "ecc feedback webhook",
            "version": "1",
            "description": "User feedback on served turns, for the edge nodes' learning. "
            + _SIGNING,
        },
        "paths": {
            "/v1/feedback": {
                "post": _post("Post one feedback", {"$ref": "#/components/schemas/Feedback"})
            },
            "/v1/feedback/batch": {
                "post": _post(
                    f"Post up to {MAX_BATCH} feedback items, all or nothing",
                    {"$ref": "#/components/schemas/FeedbackBatch"},
                )
            },
            "/healthz": {
                "get": {"summary": "Liveness", "responses": {"200": {"description": "up"}}}
            },
        },
        "components": {
            "securitySchemes": {
                "client": {"type": "apiKey", "in": "header", "name": "X-ECC-Client"},
                "signature": {
                    "type": "apiKey",
                    "in": "header",
                    "name": "X-ECC-Signature",
                    "description": _SIGNING,
                },
            },
            "schemas": {
                **defs,
                "Feedback": feedback,
                "FeedbackBatch": {
                    "type": "object",
                    "additionalProperties": False,
                    "required": ["feedback"],
                    "properties": {
                        "feedback": {
                            "type": "array",
                            "minItems": 1,
                            "maxItems": MAX_BATCH,
                            "items": {"$ref": "#/components/schemas/Feedback"},
                        }
                    },
                },
                "Accepted": {
                    "type": "object",
                    "properties": {
                        "accepted": {"type": "array", "items": {"type": "string"}},
                        "duplicates": {"type": "array", "items": {"type": "string"}},
                    },
                },
                "Error": {
                    "type": "object",
                    "required": ["error"],
                    "properties": {
                        "error": {"type": "string"},
                        "items": {"type": "array", "items": {"type": "object"}},
                        "retry_after_s": {"type": "integer"},
                    },
                },
            },
        },
    }
