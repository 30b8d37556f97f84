"""The project's topics, in one place.

Every per-node topic is keyed by ``node_id`` and has the same partition count, so a node's
turns, feedback, drift state and batches live in one partition (co-partitioning): Faust
tables and joins stay local, and workers scale out by consumer-group rebalancing.
Every input topic has a ``<topic>.dlq`` dead-letter topic for records that fail to decode.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

CHAT_INBOUND = "chat.inbound"
CHAT_TURNS = "chat.turns"
CHAT_FEEDBACK = "chat.feedback"
DRIFT_EVENTS = "drift.events"
TEACHER_REQUESTS = "teacher.requests"
TEACHER_ANNOTATIONS = "teacher.annotations"
TRAINING_BATCHES = "training.batches"
ADAPTERS_EVENTS = "adapters.events"
FLEET_PRIORS = "fleet.priors"
"""One record per node and aggregation round: a new fleet prior is in the registry."""

ALL = (
    CHAT_INBOUND,
    CHAT_TURNS,
    CHAT_FEEDBACK,
    DRIFT_EVENTS,
    TEACHER_REQUESTS,
    TEACHER_ANNOTATIONS,
    TRAINING_BATCHES,
    ADAPTERS_EVENTS,
    FLEET_PRIORS,
)

DLQ_SUFFIX = ".dlq"

DRIFT_STATE_TABLE = "drift-state"
"""Faust table of the drift agent's per-node state; its changelog is compacted."""
FEEDBACK_STATE_TABLE = "feedback-state"
"""Faust table of the feedback agent: ledgers, taken ids and the join's turns; compacted."""
TABLES = (DRIFT_STATE_TABLE, FEEDBACK_STATE_TABLE)

# What a worker can run (`ecc serve --roles`), and the table each role keeps. The fleet
# aggregator is the cloud's, not a store's: a worker runs it only when asked.
SERVICE_ROLES = ("edge", "drift", "feedback", "teacher")
ROLES = (*SERVICE_ROLES, "fleet")
ROLE_TABLES = {"drift": DRIFT_STATE_TABLE, "feedback": FEEDBACK_STATE_TABLE}


def group_id(app_id: str, roles: Iterable[str]) -> str:
    """The consumer group (the Faust app id) of a worker that runs ``roles``.

    Workers running the same roles share a group and split its partitions. Workers
    running different roles must not: a group gives each partition to one member, so a
    topic that two roles read (chat.turns: drift and feedback; chat.feedback: drift,
    feedback and teacher) would be split between them and each role would see only part
    of it. A worker with every service role (the default) keeps the plain ``app_id``.

    >>> group_id("ecc", SERVICE_ROLES), group_id("ecc", ["feedback", "drift"])
    ('ecc', 'ecc-drift-feedback')
    >>> group_id("ecc", ["fleet"])
    'ecc-fleet'
    """
    chosen = [r for r in ROLES if r in set(roles)]
    return app_id if tuple(chosen) == SERVICE_ROLES else "-".join([app_id, *chosen])


def changelogs(app_id: str, roles: Iterable[str] = SERVICE_ROLES) -> list[str]:
    """The changelog topics of the tables of a worker that runs ``roles``."""
    group = group_id(app_id, roles)
    return [changelog(group, ROLE_TABLES[r]) for r in ROLES if r in set(roles) and r in ROLE_TABLES]


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
