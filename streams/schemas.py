"""Record schemas of every topic (JSON on the wire; chat.turns adds a binary tail), with a
schema version on each record.

Decoding is strict: unknown fields, wrong types, oversized text and unknown schema
versions are refused with a :class:`SchemaError` whose message says which field and why;
the agent then sends the original bytes and that reason to the topic's dead-letter topic.
"""

from __future__ import annotations

import base64
import json
import time
from dataclasses import dataclass
from typing import Annotated, Any, ClassVar, Literal, TypeVar

import numpy as np
from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PrivateAttr,
    ValidationError,
    ValidationInfo,
    model_validator,
)

SCHEMA_VERSION = 1
MAX_TEXT = 2000

NodeId = Annotated[str, Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")]
Id = Annotated[str, Field(min_length=1, max_length=128)]
# Not `\s` for "no leading space": Python's and ECMAScript's (JSON Schema's) differ (U+0085),
# so the pattern names the characters, and both engines read it alike.
LABEL_PATTERN = (
    r"^[^<>\u0000-\u0020\u007f-\u00a0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000\ufeff]"
    r"[^<>]*$"
)
Label = Annotated[str, Field(min_length=1, max_length=100, pattern=LABEL_PATTERN)]
Text = Annotated[str, Field(min_length=1, max_length=MAX_TEXT)]
Unit = Annotated[float, Field(ge=0.0, le=1.0)]


def _json_integer(value: Any) -> Any:
    """An integer as JSON Schema means one: a number without a fraction (5 or 5.0), never a
    boolean or a string of digits (pydantic's lax mode takes both)."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError("Input should be an integer")
    if isinstance(value, float):
        if not value.is_integer():
            raise ValueError("Input should be an integer, without a fractional part")
        return int(value)
    return value


JsonInt = Annotated[int, BeforeValidator(_json_integer)]


class SchemaError(ValueError):
    """A record that does not match its topic's schema; the message is the reason."""


class Record(BaseModel):
    """Base of every topic's record."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    topic: ClassVar[str] = ""

    # (the JSON Schema says it too: a client generating requests from it sends this one)
    schema_version: JsonInt = Field(
        default=SCHEMA_VERSION, json_schema_extra={"const": SCHEMA_VERSION}
    )

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

    @classmethod
    def split_wire(cls, raw: bytes) -> tuple[bytes, dict[str, Any] | None]:
        """The JSON part of a record's bytes, and the validation context its binary part
        gives (records with a binary part override this)."""
        return raw, None


class ChatInbound(Record):
    """A customer's message as it reaches an edge node (raw text: it never leaves the edge)."""

    topic: ClassVar[str] = "chat.inbound"
    turn_id: Id
    node_id: NodeId
    text: Text
    ts: float = Field(default_factory=time.time)
    session_id: Id | None = None


@dataclass(frozen=True, slots=True)
class ServedTurn:
    """One turn an edge node answered: redacted text and the prediction served (a row of a
    :class:`TurnBatch`)."""

    turn_id: str
    text: str
    intent: str
    confidence: float
    ts: float


T = TypeVar("T")
MAX_TURNS_PER_BATCH = 512
Column = Annotated[list[T], Field(min_length=1, max_length=MAX_TURNS_PER_BATCH)]


class TurnBatch(Record):
    """The turns an edge node answered in one micro-batch, as columns, and their embeddings.

    One Kafka record carries many turns because about 100 us of every record is the stream
    processor's own cost: per-turn records would cap a drift worker near 10k turns/s. The
    turns are columns (a list per field, like Arrow), not a list of objects: validating one
    object per turn cost the drift worker about as much as scoring the turns (issue 4).
    ``redacted`` counts the PII the edge replaced in the batch's texts, by kind.
    ``encoder_version`` is the version whose encoder computed the embeddings: a head-only
    update (the learner's fast path) publishes a new ``adapter_version`` in the same
    embedding space, so drift references need not be learnt again (None: the adapter's).

    On the wire the JSON is followed by a newline and the embeddings as raw bytes: a
    row-major ``turns x dim`` little-endian float16 matrix of unit-norm vectors (768 bytes a
    turn at 384 dims). Raw bytes, not base64 in the JSON: decoding base64 was the drift
    worker's largest single cost. Compact JSON never contains a raw newline, so the first
    one ends the JSON part.
    """

    topic: ClassVar[str] = "chat.turns"
    node_id: NodeId
    adapter_version: int = Field(ge=0)
    encoder_version: int | None = Field(default=None, ge=0)
    served_at: float
    turn_ids: Column[Id]
    texts: Column[Text]
    intents: Column[Label]
    confidences: Column[Unit]
    ts: Column[float]
    redacted: dict[str, int] = Field(default_factory=dict, max_length=32)
    dim: int = Field(ge=1, le=4096)

    _raw_embeddings: bytes = PrivateAttr(default=b"")

    @model_validator(mode="after")
    def _columns_and_embeddings(self, info: ValidationInfo) -> TurnBatch:
        n = len(self.turn_ids)
        for name in ("texts", "intents", "confidences", "ts"):
            if len(getattr(self, name)) != n:
                raise ValueError(f"{name}: {len(getattr(self, name))} values for {n} turns")
        raw = (info.context or {}).get("embeddings")
        if raw is None:
            raise ValueError("embeddings: no binary part after the JSON (a newline, then bytes)")
        if len(raw) != n * self.dim * 2:
            raise ValueError(
                f"embeddings: {len(raw)} bytes, expected {n} turns x {self.dim} "
                "dims x 2 bytes (float16)"
            )
        self._raw_embeddings = raw
        return self

    def dumps(self) -> bytes:
        return self.model_dump_json().encode() + b"\n" + self._raw_embeddings

    @classmethod
    def split_wire(cls, raw: bytes) -> tuple[bytes, dict[str, Any] | None]:
        head, newline, tail = raw.partition(b"\n")
        return head, {"embeddings": tail if newline else None}

    @classmethod
    def of(
        cls,
        node_id: str,
        adapter_version: int,
        turns: list[ServedTurn],
        embeddings: np.ndarray[Any, Any],
        served_at: float,
        redacted: dict[str, int] | None = None,
        encoder_version: int | None = None,
    ) -> TurnBatch:
        matrix = np.asarray(embeddings, dtype="<f2").reshape(len(turns), -1)
        return cls.model_validate(
            {
                "node_id": node_id,
                "adapter_version": adapter_version,
                "encoder_version": encoder_version,
                "served_at": served_at,
                "turn_ids": [t.turn_id for t in turns],
                "texts": [t.text for t in turns],
                "intents": [t.intent for t in turns],
                "confidences": [t.confidence for t in turns],
                "ts": [t.ts for t in turns],
                "redacted": redacted or {},
                "dim": matrix.shape[1],
            },
            context={"embeddings": matrix.tobytes()},
        )

    def __len__(self) -> int:
        return len(self.turn_ids)

    @property
    def turns(self) -> list[ServedTurn]:
        """The rows."""
        return [
            ServedTurn(*row)
            for row in zip(
                self.turn_ids, self.texts, self.intents, self.confidences, self.ts, strict=True
            )
        ]

    def embedding_matrix(self) -> np.ndarray[Any, np.dtype[np.float32]]:
        """The turns' embeddings, one float32 row per turn."""
        raw = np.frombuffer(self._raw_embeddings, dtype="<f2")
        return raw.reshape(len(self), self.dim).astype(np.float32)

    def chat_turns(self) -> list[ChatTurn]:
        """One :class:`ChatTurn` per turn, for consumers that handle turns one at a time."""
        return [
            ChatTurn(
                turn_id=t.turn_id,
                node_id=self.node_id,
                text=t.text,
                intent=t.intent,
                confidence=t.confidence,
                adapter_version=self.adapter_version,
                ts=t.ts,
                served_at=self.served_at,
            )
            for t in self.turns
        ]


@dataclass(frozen=True, slots=True)
class ChatTurn:
    """A served turn with its node (an in-memory view of one row of a :class:`TurnBatch`)."""

    turn_id: str
    node_id: str
    text: str
    intent: str
    confidence: float
    adapter_version: int
    ts: float
    served_at: float


FeedbackKind = Literal["thumbs_up", "thumbs_down", "correction", "rating", "escalated"]


class Feedback(Record):
    """What a client says about a turn (posted to the webhook or produced directly)."""

    # Clients write it: NaN or infinite numbers are refused here, for every producer.
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)
    topic: ClassVar[str] = "chat.feedback"
    feedback_id: Id
    turn_id: Id
    node_id: NodeId
    kind: FeedbackKind
    label: Label | None = None
    # strict: what the schema says is a number is one (no "4" or true taken as 4 or 1.0)
    rating: Annotated[int, Field(ge=1, le=5), BeforeValidator(_json_integer)] | None = None
    ts: float = Field(default_factory=time.time, strict=True)

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
    status: Literal["published", "rejected", "rolled_back", "skipped", "consolidating"]
    """``consolidating``: a LoRA consolidation began from ``version`` (its outcome, a
    published or rejected candidate, follows as its own event)."""
    version: int = Field(ge=0, description="the serving version after this event")
    candidate: int | None = None
    parent: int | None = None
    batch_ids: list[Id] = Field(default_factory=list, max_length=1024)
    metrics: dict[str, float] = Field(default_factory=dict)
    labels_added: list[Label] = Field(default_factory=list)
    reason: str = ""
    ts: float


class FleetPriorReady(Record):
    """A new fleet prior is in the registry, for ``node_id`` to consider (one record per
    node and round, keyed by node, so the worker that owns the node receives it)."""

    topic: ClassVar[str] = "fleet.priors"
    node_id: NodeId
    version: int = Field(ge=1, description="the prior's version in the registry")
    intents: int = Field(ge=0)
    contributors: dict[str, int] = Field(default_factory=dict)
    """node id -> the version of it in the prior."""
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
        TurnBatch,
        Feedback,
        DriftEvent,
        TeacherRequest,
        TeacherAnnotation,
        TrainingBatch,
        AdapterEvent,
        FleetPriorReady,
    )
}


def decode(cls: type[R], raw: bytes | None) -> R:
    """Parse ``raw`` as a ``cls`` record or raise :class:`SchemaError` with a readable reason."""
    if raw is None:
        raise SchemaError("empty message (no value)")
    head, context = cls.split_wire(raw)
    try:  # the fast path: pydantic parses and validates the JSON in one pass
        return cls.model_validate_json(head, context=context)
    except ValidationError as exc:
        if not any(e["type"] in ("json_invalid", "model_type") for e in exc.errors()):
            raise SchemaError(describe(exc)) from None
    # The slow path, only for records that are not JSON objects: a readable reason.
    try:
        text = head.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise SchemaError(f"not UTF-8: {exc.reason} at byte {exc.start}") from None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise SchemaError(f"not JSON: {exc.msg} at line {exc.lineno} column {exc.colno}") from None
    if not isinstance(data, dict):
        raise SchemaError(f"expected a JSON object, got {type(data).__name__}")
    try:
        return cls.model_validate(data, context=context)
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
