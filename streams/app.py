"""The Faust application: topics, shared runtime context, and the agents registered on it.

Agents are thin: they decode records (malformed ones go to ``<topic>.dlq`` with the reason),
call the pure logic of ``learners/`` and ``models/``, and produce the results. Every
per-node topic is co-partitioned by ``node_id``, so the per-node state an agent keeps in
memory belongs to the partitions this worker owns.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, TypeVar

import faust
from faust.types import EventT

from learners.edge_node import EdgeNode, EdgeOptions
from learners.gate import EvalGate
from learners.trainer import TrainOptions
from models.end_model import LoraOptions
from models.redaction import Redactor
from models.registry import AdapterRegistry
from streams import metrics, topics
from streams.kafka import faust_credentials
from streams.schemas import Record, SchemaError, dead_letter, decode
from streams.settings import Settings
from streams.workers import ready_marker

log = logging.getLogger("ecc")
R = TypeVar("R", bound=Record)
T = TypeVar("T")

ROLES = topics.ROLES


def edge_options(s: Settings) -> EdgeOptions:
    return EdgeOptions(
        encoder_path=s.encoder or None,
        lora=LoraOptions(r=s.lora_r, alpha=s.lora_alpha, targets=tuple(s.lora_targets.split(","))),
        max_length=s.max_length,
        train=TrainOptions(
            learning_rate=s.learning_rate,
            steps=s.steps_per_batch,
            replay_sample=s.replay_sample,
            seed=s.seed,
            max_new_intents=s.max_new_intents,
        ),
        replay_per_class=s.replay_per_class,
        holdout_every=s.holdout_every,
        holdout_max=s.holdout_max,
        gate=EvalGate(tolerance=s.gate_tolerance),
    )


@dataclass
class Context:
    """What the agents of one worker share: settings, topics, pools and per-node objects."""

    settings: Settings
    app: faust.App
    names: topics.TopicNames
    redactor: Redactor = field(init=False)
    infer_pool: ThreadPoolExecutor = field(
        default_factory=lambda: ThreadPoolExecutor(1, thread_name_prefix="infer")
    )
    train_pool: ThreadPoolExecutor = field(
        default_factory=lambda: ThreadPoolExecutor(1, thread_name_prefix="train")
    )
    teacher_pool: ThreadPoolExecutor = field(
        default_factory=lambda: ThreadPoolExecutor(1, thread_name_prefix="teacher")
    )
    _topics: dict[tuple[str, ...], Any] = field(default_factory=dict)
    _edges: dict[str, EdgeNode] = field(default_factory=dict)
    _edge_locks: dict[str, asyncio.Lock] = field(default_factory=dict)
    registry: AdapterRegistry = field(init=False)

    def __post_init__(self) -> None:
        kinds = self.settings.redact_kinds.strip()
        self.redactor = Redactor(
            None if kinds.lower() in ("", "all") else [k.strip() for k in kinds.split(",")]
        )
        self.registry = AdapterRegistry(
            self.settings.state_dir / "adapters", keep_last=self.settings.keep_versions
        )

    def topic(self, *names: str) -> Any:
        """A raw-bytes Faust topic over one or more of the service's topics."""
        full = tuple(self.names(n) for n in names)
        if full not in self._topics:
            self._topics[full] = self.app.topic(
                *full,
                key_type=bytes,
                value_type=bytes,
                key_serializer="raw",
                value_serializer="raw",
                partitions=self.settings.topic_partitions,
            )
        return self._topics[full]

    async def send(self, topic: str, record: Record, key: str) -> None:
        await self.topic(topic).send(key=key.encode(), value=record.dumps())

    async def decode(self, event: EventT, cls: type[R], owner: bool = True) -> R | None:
        """The event's record, or None after sending it to its DLQ with the reason.

        Several agents read chat.turns (and other topics); only the topic's ``owner`` agent
        dead-letters a bad record, so each one lands in the DLQ once.
        """
        try:
            return decode(cls, event.value)
        except SchemaError as exc:
            if owner:
                await self.dead_letter(event, str(exc))
            return None

    async def dead_letter(self, event: EventT, reason: str) -> None:
        msg = event.message
        await self.dead_letter_record(
            msg.topic, msg.partition, msg.offset, msg.key, msg.value, reason
        )

    async def dead_letter_record(
        self,
        source: str,
        partition: int,
        offset: int,
        key: bytes | None,
        value: bytes | None,
        reason: str,
    ) -> None:
        """Send a record of ``source`` to its DLQ with ``reason`` (also for a record whose
        event is gone, such as feedback that waited for its turn across a restart)."""
        letter = dead_letter(source, partition, offset, key, value, reason)
        await self.app.topic(topics.dlq(source), value_serializer="raw", key_serializer="raw").send(
            key=key, value=letter.dumps()
        )
        metrics.DEAD_LETTERS.labels(source).inc()
        log.warning("dead letter from %s@%d:%d: %s", source, partition, offset, reason)

    def topic_of(self, event: EventT) -> str:
        """The event's topic without the deployment prefix."""
        name: str = event.message.topic
        prefix = self.settings.topic_prefix
        return name[len(prefix) :] if prefix and name.startswith(prefix) else name

    async def edge(self, node_id: str) -> EdgeNode:
        """This worker's edge node ``node_id``, loaded from the registry on first use."""
        node = self._edges.get(node_id)
        if node is not None:
            return node
        lock = self._edge_locks.setdefault(node_id, asyncio.Lock())
        async with lock:
            if node_id not in self._edges:
                self._edges[node_id] = await self.run(
                    self.train_pool,
                    EdgeNode,
                    node_id,
                    self.registry,
                    self.settings.state_dir,
                    edge_options(self.settings),
                )
                metrics.ADAPTER_VERSION.labels(node_id).set(self._edges[node_id].version)
        return self._edges[node_id]

    def loaded_edges(self) -> list[EdgeNode]:
        """The edge nodes this worker has loaded so far."""
        return list(self._edges.values())

    async def run(self, pool: ThreadPoolExecutor, fn: Callable[..., T], *args: Any) -> T:
        """Run blocking model work off the event loop, so streams keep flowing."""
        return await asyncio.get_running_loop().run_in_executor(pool, fn, *args)


def create_app(settings: Settings, roles: tuple[str, ...] = ROLES) -> tuple[faust.App, Context]:
    """A Faust app with the agents of ``roles`` registered on it."""
    unknown = set(roles) - set(ROLES)
    if unknown:
        raise ValueError(f"unknown roles {sorted(unknown)}; choose from {', '.join(ROLES)}")
    if not settings.broker:
        raise ValueError("ECC_BROKER is empty: give the Kafka bootstrap servers (host:port)")
    app = faust.App(
        topics.group_id(settings.app_id, roles),
        broker=[f"kafka://{b}" for b in settings.broker.split(",")],
        broker_credentials=faust_credentials(settings),
        store="memory://",
        datadir=str(settings.state_dir / "faust"),  # not `<app id>-data/` in the cwd
        topic_partitions=settings.topic_partitions,
        topic_replication_factor=settings.topic_replicas,
        topic_allow_declare=False,
        topic_disable_leader=True,  # no leader features; its topic would not exist on Kafka
        broker_session_timeout=settings.broker_session_timeout,
        broker_heartbeat_interval=1.0,
        consumer_auto_offset_reset="earliest",
        web_enabled=False,
        producer_linger=0.005,
        producer_max_batch_size=settings.producer_batch_bytes,
        stream_buffer_maxsize=8192,
        # TurnBatch records are ~80 kB: the 1 MB default fetched about a dozen per round
        # trip and left the drift worker idle half the time (measured, issue 4).
        consumer_max_fetch_size=16 * 1024 * 1024,
        autodiscover=False,
    )
    ctx = Context(settings=settings, app=app, names=topics.TopicNames(settings.topic_prefix))
    from streams.agents import drift, edge, feedback, teacher

    registrars = {"edge": edge, "drift": drift, "feedback": feedback, "teacher": teacher}
    for role in roles:
        registrars[role].register(ctx)
    _ready_marker(ctx)
    _lag_gauges(ctx)
    return app, ctx


def _lag_gauges(ctx: Context, interval_s: float = 5.0) -> None:
    """``ecc_consumer_lag{topic}``: records of this worker's partitions it has not read.

    From the highwater marks of the consumer's last fetches (no extra requests), so it
    is as fresh as the stream; on the embedded broker highwaters can be off (DESIGN.md).
    """

    @ctx.app.timer(interval=interval_s)
    async def consumer_lag() -> None:
        consumer = ctx.app.consumer
        read: Any = getattr(consumer, "_read_offset", {})
        lag: dict[str, int] = {}
        for tp in consumer.assignment():
            if tp.topic.endswith("-changelog"):
                continue
            topic = tp.topic.removeprefix(ctx.settings.topic_prefix)
            try:
                high = consumer.highwater(tp)
            except Exception:  # not fetched yet
                continue
            if high is None:
                continue
            last = read.get(tp)
            lag[topic] = lag.get(topic, 0) + max(high - (last + 1 if last is not None else 0), 0)
        for topic, value in lag.items():
            metrics.CONSUMER_LAG.labels(topic).set(value)


def _ready_marker(ctx: Context) -> None:
    """Write ``<state_dir>/worker.ready`` once partitions are assigned (the demo waits on it)."""
    marker = ready_marker(ctx.settings)
    marker.unlink(missing_ok=True)

    @ctx.app.task
    async def announce_ready() -> None:
        while not ctx.app.consumer.assignment():
            await asyncio.sleep(0.1)
        marker.write_text(str(time.time()))
