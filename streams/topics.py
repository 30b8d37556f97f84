"""The project's topics, in one place.

Every per-node topic is keyed by ``node_id`` and has the same partition count, so a node's
turns, feedback, drift state and batches live in one partition (co-partitioning): Faust
tables and joins stay local, and workers scale out by consumer-group rebalancing.
Every input topic has a ``<topic>.dlq`` dead-letter topic for records that fail to decode.
"""

from __future__ import annotations

from dataclasses import dataclass

CHAT_INBOUND = "chat.inbound"
CHAT_TURNS = "chat.turns"
CHAT_FEEDBACK = "chat.feedback"
DRIFT_EVENTS = "drift.events"
TEACHER_REQUESTS = "teacher.requests"
TEACHER_ANNOTATIONS = "teacher.annotations"
TRAINING_BATCHES = "training.batches"
ADAPTERS_EVENTS = "adapters.events"

ALL = (
    CHAT_INBOUND,
    CHAT_TURNS,
    CHAT_FEEDBACK,
    DRIFT_EVENTS,
    TEACHER_REQUESTS,
    TEACHER_ANNOTATIONS,
    TRAINING_BATCHES,
    ADAPTERS_EVENTS,
)

DLQ_SUFFIX = ".dlq"

DRIFT_STATE_TABLE = "drift-state"
"""Faust table of the drift agent's per-node state; its changelog is compacted."""
FEEDBACK_STATE_TABLE = "feedback-state"
"""Faust table of the feedback agent: ledgers, taken ids and the join's turns; compacted."""
TABLES = (DRIFT_STATE_TABLE, FEEDBACK_STATE_TABLE)


def changelog(app_id: str, table: str) -> str:
    """Faust's name for a table's changelog topic."""
    return f"{app_id}-{table}-changelog"


def dlq(topic: str) -> str:
    """Name of the dead-letter topic of ``topic``."""
    return topic + DLQ_SUFFIX


@dataclass(frozen=True)
class TopicNames:
    """Topic names with the deployment's prefix applied (``ECC_TOPIC_PREFIX``)."""

    prefix: str = ""

    def __call__(self, topic: str) -> str:
        return self.prefix + topic

    def all_with_dlq(self) -> list[str]:
        """Every topic the service uses, dead-letter topics included."""
        return [self(t) for t in ALL] + [self(dlq(t)) for t in ALL]
