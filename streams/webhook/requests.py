"""Webhook request bodies: from bytes to :class:`Feedback` records, or a 4xx that says why.

Two forms, JSON only:

- ``POST /v1/feedback``: one feedback object;
- ``POST /v1/feedback/batch``: ``{"feedback": [object, ...]}`` with at most ``MAX_BATCH``.

Checks run cheapest first (content type, size, UTF-8, JSON, shape, then each item against
the ``chat.feedback`` schema), and nothing here can raise anything but
:class:`RequestError`: a client's mistake is never a 5xx. A batch is all or nothing: one
bad item refuses the batch and names every bad item, so a client never has to work out
which half was taken.

>>> fb = parse_feedback(b'{"feedback_id": "f1", "turn_id": "t1", "node_id": "store-eu",'
...                     b' "kind": "thumbs_down"}', "application/json", batch=False)
>>> [(f.feedback_id, f.kind) for f in fb]
[('f1', 'thumbs_down')]
>>> parse_feedback(b'{"kind": "thumbs_up"}', "application/json", batch=False)
... # doctest: +ELLIPSIS
Traceback (most recent call last):
...
streams.webhook.requests.RequestError: 422 feedback_id: Field required; turn_id: ...
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from pydantic import ValidationError

from streams.schemas import Feedback, describe

MAX_BODY_BYTES = 256 * 1024
MAX_BATCH = 500


@dataclass
class RequestError(ValueError):
    """A refused request: the HTTP status and a message for the client; ``items`` names the
    bad items of a batch (index and reason)."""

    status: int
    message: str
    items: list[dict[str, Any]] = field(default_factory=list)

    def __str__(self) -> str:
        return f"{self.status} {self.message}"


def parse_feedback(body: bytes, content_type: str | None, batch: bool) -> list[Feedback]:
    """The feedback records in ``body``, or :class:`RequestError` (413 for a body too
    large, 415, 400 for a body that is not a JSON object of the expected shape, 422 for one
    that breaks the schema: an invalid item, or more than ``MAX_BATCH``)."""
    media = (content_type or "").split(";")[0].strip().lower()
    if media != "application/json":
        raise RequestError(415, f"Content-Type must be application/json, got {media or 'none'!r}")
    if len(body) > MAX_BODY_BYTES:
        raise RequestError(413, f"body of {len(body)} bytes; at most {MAX_BODY_BYTES}")
    try:
        data = json.loads(body.decode("utf-8"), parse_constant=_no_constant)
    except UnicodeDecodeError as exc:
        raise RequestError(400, f"body is not UTF-8: {exc.reason} at byte {exc.start}") from None
    except (json.JSONDecodeError, ValueError, RecursionError) as exc:
        raise RequestError(400, f"body is not JSON: {str(exc)[:200]}") from None
    items = _items(data, batch)
    out: list[Feedback] = []
    bad: list[dict[str, Any]] = []
    for i, item in enumerate(items):
        try:
            if not isinstance(item, dict):
                raise ValueError(f"expected a JSON object, got {_kind(item)}")
            out.append(Feedback.model_validate(item))
        except ValidationError as exc:
            bad.append({"index": i, "reason": describe(exc)})
        except ValueError as exc:
            bad.append({"index": i, "reason": str(exc)})
    if bad:
        reasons = bad[0]["reason"] if not batch else f"{len(bad)} of {len(items)} items invalid"
        raise RequestError(422, reasons, bad if batch else [])
    return out


def _items(data: Any, batch: bool) -> list[Any]:
    if not batch:
        if not isinstance(data, dict):
            raise RequestError(400, f"expected a JSON object, got {_kind(data)}")
        return [data]
    if not isinstance(data, dict) or set(data) != {"feedback"}:
        raise RequestError(400, 'expected {"feedback": [...]}')
    items = data["feedback"]
    if not isinstance(items, list) or not items:
        raise RequestError(400, '"feedback" must be a non-empty list')
    if len(items) > MAX_BATCH:  # the schema's maxItems: a schema violation, as the rest
        raise RequestError(422, f"{len(items)} items; at most {MAX_BATCH} per batch")
    return items


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON number")


def _kind(value: Any) -> str:
    return {list: "an array", str: "a string", bool: "a boolean", type(None): "null"}.get(
        type(value), "a number"
    )
