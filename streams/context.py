"""What the agents of one worker share: settings, topics, thread pools and per-node objects.

Below the app and the agents (as quix-streams keeps its processing context below its
application): :mod:`streams.app` builds a :class:`Context` and hands it to each role's
``register`` function in :mod:`streams.agents`; the agents import only this module, so
nothing imports the app back.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Awaitable, Callable, Coroutine
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, TypeVar

from faust.types import EventT

from learners.edge_node import EdgeNode
from learners.resident import ResidentNodes
from models.compute import limit_this_thread, serving_threads
from models.redaction import Redactor
from models.registry import AdapterRegistry
from streams import metrics, topics
from streams.schemas import Record, SchemaError, dead_letter, decode
from streams.settings import Settings
from streams.transport import App

log = logging.getLogger("ecc")
R = TypeVar("R", bound=Record)
T = TypeVar("T")


@dataclass
class Context:
    """What the agents of one worker share: settings, topics, pools and per-node objects."""

    settings: Settings
    app: App
    names: topics.TopicNames
    redactor: Redactor = field(init=False)
    infer_pool: ThreadPoolExecutor = field(init=False)
    train_pool: ThreadPoolExecutor = field(init=False)
    consolidate_pool: ThreadPoolExecutor = field(init=False)
    teacher_pool: ThreadPoolExecutor = field(init=False)
    load_pool: ThreadPoolExecutor = field(init=False)
    _topics: dict[tuple[str, ...], Any] = field(default_factory=dict)
    stopping: threading.Event = field(default_factory=threading.Event)
    """Set when the worker stops: long background work (a consolidation) gives up."""
    _tasks: set[asyncio.Task[None]] = field(default_factory=set)
    edges: ResidentNodes[EdgeNode] = field(init=False)
    _edge_locks: dict[str, asyncio.Lock] = field(default_factory=dict)
    registry: AdapterRegistry = field(init=False)

    def __post_init__(self) -> None:
        s = self.settings
        # One thread each, so an answer never queues behind a refit or a consolidation;
        # learning threads get fewer torch threads and a lower priority (models.compute).
        self.infer_pool = _pool("infer", serving_threads(s.infer_threads), 0)
        self.train_pool = _pool("train", s.learn_threads, s.learn_nice)
        self.consolidate_pool = _pool("consolidate", s.learn_threads, s.learn_nice)
        self.teacher_pool = _pool("teacher", s.learn_threads, s.learn_nice)
        # a cold node load queues behind neither a refit nor a micro-batch
        self.load_pool = _pool("load", 1, 0)
        self.edges = ResidentNodes(s.resident_nodes, s.resident_mib * 2**20, s.learning_nodes)
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

    async def send(self, topic: str, record: Record, key: str) -> Awaitable[Any]:
        """Hand ``record`` to the producer; returns its delivery, which resolves once the
        broker has acknowledged it and raises if it never will be (a producer flush does
        not: it waits for deliveries, failed ones included)."""
        return await self.topic(topic).send(key=key.encode(), value=record.dumps())

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
        """This worker's edge node ``node_id``, loaded from the registry if it is not
        resident (timed: ``ecc_node_load_seconds``); loading one may let the least
        recently used idle nodes go (:class:`~learners.resident.ResidentNodes`)."""
        node = self.edges.get(node_id)
        if node is not None:
            return node
        lock = self._edge_locks.setdefault(node_id, asyncio.Lock())
        async with lock:
            node = self.edges.get(node_id)
            if node is None:
                started = time.perf_counter()
                node = await self.run(
                    self.load_pool,
                    EdgeNode,
                    node_id,
                    self.registry,
                    self.settings.state_dir,
                    self.settings.edge_options(),
                )
                metrics.NODE_LOAD_SECONDS.observe(time.perf_counter() - started)
                evicted = self.edges.put(node_id, node)
                for gone in evicted:
                    self._edge_locks.pop(gone, None)
                metrics.NODE_EVICTIONS.inc(len(evicted))
                metrics.ADAPTER_VERSION.labels(node_id).set(node.version)
                # a node that never consolidates still shows it: 0 running, 0 ended
                metrics.CONSOLIDATING.labels(node_id).set(0)
                metrics.CONSOLIDATION_SECONDS.labels(node_id)
                self.count_resident()
        return node

    def count_resident(self) -> None:
        """The resident-set gauges, after a load or a learning step."""
        metrics.RESIDENT_NODES.set(len(self.edges))
        metrics.RESIDENT_BYTES.set(self.edges.nbytes)

    def loaded_edges(self) -> list[EdgeNode]:
        """The edge nodes resident in this worker."""
        return self.edges.values()

    def background(self, work: Coroutine[Any, Any, None]) -> None:
        """Run ``work`` beside the agents (kept referenced until done, its error logged)."""
        task = asyncio.get_running_loop().create_task(work)
        self._tasks.add(task)
        task.add_done_callback(self._done)

    def _done(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("background work failed", exc_info=task.exception())

    async def run(self, pool: ThreadPoolExecutor, fn: Callable[..., T], *args: Any) -> T:
        """Run blocking model work off the event loop, so streams keep flowing."""
        return await asyncio.get_running_loop().run_in_executor(pool, fn, *args)


def _pool(name: str, torch_threads: int, nice: int) -> ThreadPoolExecutor:
    return ThreadPoolExecutor(
        1, thread_name_prefix=name, initializer=limit_this_thread, initargs=(torch_threads, nice)
    )
