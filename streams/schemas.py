"""Record schemas of every topic (JSON on the wire), with a schema version on each record.

Decoding is strict: unknown fields, wrong types, oversized text and unknown schema
versions are refused with a :class:`SchemaError` whose message says which field and why;
the agent then sends the original bytes and that reason to the topic's dead-letter topic.
"""

from __future__ import annotations

import base64
import json
import time
from typing import Annotated, Any, ClassVar, Literal, TypeVar

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

SCHEMA_VERSION = 1
MAX_TEXT = 2000

NodeId = Annotated[str, Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")]
Id = Annotated[str, Field(min_length=1, max_length=128)]
Label = Annotated[str, Field(min_length=1, max_length=100, pattern=r"^[^\s<>][^<>]*$")]
Text = Annotated[str, Field(min_length=1, max_length=MAX_TEXT)]
Unit = Annotated[float, Field(ge=0.0, le=1.0)]


class SchemaError(ValueError):
    """A record that does not match its topic's schema; the message is the reason."""


class Record(BaseModel):
    """Base of every topic's record."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    topic: ClassVar[str] = ""

    schema_version: int = SCHEMA_VERSION

    @model_validator(mode="after")
    def _known_version(self) -> Record:
        if self.schema_version != SCHEMA_VERSION:
            raise ValueError(
                f"unsupported schema_version {self.schema_version} "
                f"(this worker reads {SCHEMA_VERSION})"
            )
        return self

    def dumps(self) -> bytes:
        return self.model_dump_json().encode()


class ChatInbound(Record):
    """A customer's message as it reaches an edge node (raw text: it never leaves the edge)."""

    topic: ClassVar[str] = "chat.inbound"
    turn_id: Id
    node_id: NodeId
    text: Text
    ts: float = Field(default_factory=time.time)
    session_id: Id | None = None


class IntentScore(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    intent: Label
    score: Unit


class ChatTurn(Record):
    """An edge node's answer to a turn: prediction and a compact embedding, redacted text."""

    topic: ClassVar[str] = "chat.turns"
    turn_id: Id
    node_id: NodeId
    text: Text
    intent: Label
    confidence: Unit
    top_k: list[IntentScore] = Field(max_length=10)
    embedding: str = Field(max_length=8192, description="base64 float16, unit norm")
    adapter_version: int = Field(ge=0)
    ts: float
    served_at: float
    redacted: dict[str, int] = Field(default_factory=dict)


FeedbackKind = Literal["thumbs_up", "thumbs_down", "correction", "rating", "escalated"]


class Feedback(Record):
    """What a client says about a turn (posted to the webhook or produced directly)."""

    topic: ClassVar[str] = "chat.feedback"
    feedback_id: Id
    turn_id: Id
    node_id: NodeId
    kind: FeedbackKind
    label: Label | None = None
    rating: int | None = Field(default=None, ge=1, le=5)
    ts: float = Field(default_factory=time.time)

    @model_validator(mode="after")
    def _kind_fields(self) -> Feedback:
        if self.kind == "correction" and self.label is None:
            raise ValueError("a correction needs `label`")
        if self.kind == "rating" and self.rating is None:
            raise ValueError("a rating needs `rating` (1-5)")
        return self


DriftStateName = Literal["stable", "warning", "drifting", "recovering"]


class DriftEvent(Record):
    topic: ClassVar[str] = "drift.events"
    node_id: NodeId
    intent: Label
    kind: Literal["transition", "snapshot"]
    state: DriftStateName
    previous_state: DriftStateName | None = None
    score: Unit
    signals: dict[str, float] = Field(default_factory=dict)
    reason: str = ""
    turns: int = Field(ge=0)
    ts: float


class TeacherRequest(Record):
    topic: ClassVar[str] = "teacher.requests"
    request_id: Id
    node_id: NodeId
    turn_id: Id
    text: Text
    predicted: Label
    confidence: Unit
    reason: str = ""
    ts: float


class TeacherAnnotation(Record):
    topic: ClassVar[str] = "teacher.annotations"
    request_id: Id
    node_id: NodeId
    turn_id: Id
    text: Text
    label: Label | None = Field(default=None, description="None: the teacher abstained")
    confidence: Unit
    teacher: str
    ts: float


class Example(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    example_id: Id
    turn_id: Id
    text: Text
    label: Label
    source: Literal["feedback", "teacher"]
    confidence: Unit = 1.0
    holdout: bool = False


class TrainingBatch(Record):
    topic: ClassVar[str] = "training.batches"
    batch_id: Id
    node_id: NodeId
    examples: list[Example] = Field(min_length=1, max_length=4096)
    created_at: float
    reason: str = ""


class AdapterEvent(Record):
    topic: ClassVar[str] = "adapters.events"
    node_id: NodeId
    status: Literal["published", "rejected", "rolled_back", "skipped"]
    version: int = Field(ge=0, description="the serving version after this event")
    candidate: int | None = None
    parent: int | None = None
    batch_ids: list[Id] = Field(default_factory=list, max_length=1024)
    metrics: dict[str, float] = Field(default_factory=dict)
    labels_added: list[Label] = Field(default_factory=list)
    reason: str = ""
    ts: float


class DeadLetter(Record):
    """A record that could not be processed, with the reason and its original bytes."""

    source_topic: str
    partition: int
    offset: int
    key: str | None = None
    error: str
    original_b64: str
    ts: float = Field(default_factory=time.time)

    def original(self) -> bytes:
        return base64.b64decode(self.original_b64)


R = TypeVar("R", bound=Record)

BY_TOPIC: dict[str, type[Record]] = {
    cls.topic: cls
    for cls in (
        ChatInbound,
        ChatTurn,
        Feedback,
        DriftEvent,
        TeacherRequest,
        TeacherAnnotation,
        TrainingBatch,
        AdapterEvent,
    )
}


def decode(cls: type[R], raw: bytes | None) -> R:
    """Parse ``raw`` as a ``cls`` record or raise :class:`SchemaError` with a readable reason."""
    if raw is None:
        raise SchemaError("empty message (no value)")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise SchemaError(f"not UTF-8: {exc.reason} at byte {exc.start}") from None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise SchemaError(f"not JSON: {exc.msg} at line {exc.lineno} column {exc.colno}") from None
    if not isinstance(data, dict):
        raise SchemaError(f"expected a JSON object, got {type(data).__name__}")
    try:
        return cls.model_validate(data)
    except ValidationError as exc:
        raise SchemaError(describe(exc)) from None


def describe(exc: ValidationError, limit: int = 5) -> str:
    """One line per problem: ``field: message`` (at most ``limit``)."""
    parts = []
    for err in exc.errors()[:limit]:
        where = ".".join(str(p) for p in err["loc"]) or "record"
        parts.append(f"{where}: {err['msg']}")
    more = len(exc.errors()) - limit
    if more > 0:
        parts.append(f"and {more} more")
    return "; ".join(parts)


def dead_letter(
    topic: str, partition: int, offset: int, key: bytes | None, raw: bytes | None, error: str
) -> DeadLetter:
    return DeadLetter(
        source_topic=topic,
        partition=partition,
        offset=offset,
        key=key.decode("utf-8", "replace") if key is not None else None,
        error=error[:2000],
        original_b64=base64.b64encode(raw or b"").decode(),
    )


def encode_embedding(vector: np.ndarray[Any, Any]) -> str:
    """A float vector as base64 of little-endian float16 (768 bytes for 384 dims)."""
    return base64.b64encode(np.asarray(vector, dtype="<f2").tobytes()).decode()


def decode_embedding(data: str) -> np.ndarray[Any, np.dtype[np.float32]]:
    return np.frombuffer(base64.b64decode(data), dtype="<f2").astype(np.float32)
