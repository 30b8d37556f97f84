"""Kafka client plumbing shared by the workers, the demo and the tests (aiokafka)."""

from __future__ import annotations

import asyncio
import contextlib
import ssl
import time
from collections.abc import AsyncIterator, Iterable
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import KafkaError, TopicAlreadyExistsError

from streams.settings import Settings
from streams.topics import SERVICE_ROLES, TopicNames, changelogs


def client_options(settings: Settings) -> dict[str, Any]:
    """Connection options (bootstrap, SASL/TLS) for any aiokafka client."""
    opts: dict[str, Any] = {
        "bootstrap_servers": settings.broker,
        "security_protocol": settings.security_protocol,
    }
    if settings.security_protocol.startswith("SASL"):
        opts.update(
            sasl_mechanism=settings.sasl_mechanism,
            sasl_plain_username=settings.sasl_username,
            sasl_plain_password=settings.sasl_password,
        )
    context = ssl_context(settings)
    if context is not None:
        opts["ssl_context"] = context
    return opts


def ssl_context(settings: Settings) -> ssl.SSLContext | None:
    """The TLS context of SSL and SASL_SSL (server certificates checked against
    ``ECC_SSL_CAFILE``, or the system's CAs); None for the plaintext protocols."""
    if not settings.security_protocol.endswith("SSL"):
        return None
    return ssl.create_default_context(cafile=settings.ssl_cafile or None)


def faust_credentials(settings: Settings) -> Any:
    """The same connection security for a Faust app: SASL (with TLS for SASL_SSL), TLS
    alone for SSL, nothing for PLAINTEXT."""
    import faust

    context = ssl_context(settings)
    if settings.security_protocol.startswith("SASL"):
        return faust.SASLCredentials(
            username=settings.sasl_username,
            password=settings.sasl_password,
            mechanism=settings.sasl_mechanism,
            ssl_context=context,
        )
    if context is not None:
        return faust.SSLCredentials(context)
    return None


async def ensure_topics(
    settings: Settings, timeout: float = 30.0, roles: Iterable[str] = SERVICE_ROLES
) -> list[str]:
    """Create every topic of the service (its DLQs, and the table changelogs of a worker
    running ``roles``) that does not exist.

    All get ``ECC_TOPIC_PARTITIONS`` partitions: Faust refuses co-partitioned topics with
    different counts, and some brokers (Tansu) cannot add partitions later.
    Returns the names that were created.
    """
    names = TopicNames(settings.topic_prefix).all_with_dlq()
    tables = changelogs(settings.app_id, roles)
    admin = AIOKafkaAdminClient(**client_options(settings), request_timeout_ms=int(timeout * 1000))
    await start_with_retry(admin.start, timeout)
    try:
        existing = set(await admin.list_topics())
        missing = [n for n in names + tables if n not in existing]
        if missing:
            compact = {"cleanup.policy": "compact"}
            new = [
                NewTopic(
                    n,
                    settings.topic_partitions,
                    settings.topic_replicas,
                    topic_configs=compact if n in tables else {},
                )
                for n in missing
            ]
            with contextlib.suppress(TopicAlreadyExistsError):
                await admin.create_topics(new)
        return missing
    finally:
        await admin.close()


async def start_with_retry(start: Any, timeout: float) -> None:
    """Await ``start()`` (a client's start), retrying while the broker is not up yet."""
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        try:
            await start()
            return
        except KafkaError:
            if asyncio.get_running_loop().time() > deadline:
                raise
            await asyncio.sleep(0.2)


@contextlib.asynccontextmanager
async def producer(settings: Settings, **extra: Any) -> AsyncIterator[AIOKafkaProducer]:
    p = AIOKafkaProducer(**client_options(settings), **extra)
    await p.start()
    try:
        yield p
    finally:
        await p.stop()


async def read_all(settings: Settings, topic: str, idle_s: float = 1.0, **extra: Any) -> list[Any]:
    """Every record of ``topic`` (prefix applied) from the start, read until none came
    for ``idle_s`` seconds (tests and benchmarks checking what reached the broker)."""
    out: list[Any] = []
    async with consumer(settings, [settings.topic_prefix + topic], **extra) as c:
        quiet_since = time.monotonic()
        while time.monotonic() - quiet_since < idle_s:
            got = await c.getmany(timeout_ms=200, max_records=20_000)
            for msgs in got.values():
                out += msgs
            if got:
                quiet_since = time.monotonic()
    return out


@contextlib.asynccontextmanager
async def consumer(
    settings: Settings, topics: Iterable[str], **extra: Any
) -> AsyncIterator[AIOKafkaConsumer]:
    """A consumer without a group reading ``topics`` from the beginning."""
    extra.setdefault("auto_offset_reset", "earliest")
    extra.setdefault("fetch_max_wait_ms", settings.fetch_max_wait_ms)
    extra.setdefault("enable_auto_commit", False)
    c = AIOKafkaConsumer(*topics, **client_options(settings), **extra)
    await c.start()
    try:
        yield c
    finally:
        await c.stop()
