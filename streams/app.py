"""The Faust application: a worker's app with the agents of its roles registered on it.

Agents are thin: they decode records (malformed ones go to ``<topic>.dlq`` with the reason),
call the pure logic of ``learners/`` and ``models/``, and produce the results. Every
per-node topic is co-partitioned by ``node_id``, so the per-node state an agent keeps in
memory belongs to the partitions this worker owns.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import faust

from streams import metrics, topics
from streams.agents import REGISTER
from streams.context import Context
from streams.kafka import faust_credentials
from streams.settings import Settings
from streams.transport import App


def create_app(
    settings: Settings, roles: tuple[str, ...] = topics.SERVICE_ROLES
) -> tuple[faust.App, Context]:
    """A Faust app with the agents of ``roles`` registered on it."""
    unknown = set(roles) - set(topics.ROLES)
    if unknown:
        raise ValueError(f"unknown roles {sorted(unknown)}; choose from {', '.join(topics.ROLES)}")
    if not settings.broker:
        raise ValueError("ECC_BROKER is empty: give the Kafka bootstrap servers (host:port)")
    app = App(
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
        fetch_max_wait_ms=settings.fetch_max_wait_ms,
    )
    ctx = Context(settings=settings, app=app, names=topics.TopicNames(settings.topic_prefix))
    for role in roles:
        REGISTER[role](ctx)
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
    marker = ctx.settings.ready_marker
    marker.unlink(missing_ok=True)

    @ctx.app.task
    async def announce_ready() -> None:
        while not ctx.app.consumer.assignment():
            await asyncio.sleep(0.1)
        marker.write_text(str(time.time()))
