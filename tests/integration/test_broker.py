"""The embedded broker: starts, speaks Kafka, stops, and never outlives its parent."""

from __future__ import annotations

import asyncio
import signal
import subprocess
import sys
import time

from harness.broker import EmbeddedBroker
from harness.processes import pid_alive
from streams.kafka import consumer, ensure_topics, producer
from streams.settings import Settings
from streams.topics import TABLES, TopicNames, changelog


def test_round_trip_and_topics() -> None:
    with EmbeddedBroker() as broker:
        settings = Settings(broker=broker.bootstrap, topic_partitions=3)

        async def scenario() -> tuple[list[str], list[str], list[bytes]]:
            created = await ensure_topics(settings)
            again = await ensure_topics(settings)
            async with producer(settings) as p:
                for i in range(20):
                    await p.send_and_wait("chat.inbound", b"m%d" % i, key=b"node-%d" % (i % 3))
            got: list[bytes] = []
            async with consumer(settings, ["chat.inbound"]) as c:
                deadline = time.monotonic() + 10
                while len(got) < 20 and time.monotonic() < deadline:
                    for msgs in (await c.getmany(timeout_ms=500)).values():
                        got += [m.value for m in msgs]
                parts = c.partitions_for_topic("chat.inbound")
            assert parts == {0, 1, 2}
            return created, again, got

        created, again, got = asyncio.run(scenario())
        tables = [changelog(settings.app_id, t) for t in TABLES]
        assert sorted(created) == sorted(TopicNames().all_with_dlq() + tables)
        assert again == []
        assert sorted(got) == sorted(b"m%d" % i for i in range(20))
        pid = broker.pid
    assert pid is not None
    time.sleep(0.2)
    assert not pid_alive(pid)


def test_broker_dies_with_a_killed_parent() -> None:
    """kill -9 of the process that started the broker leaves no broker behind."""
    code = (
        "import time, sys\n"
        "from harness.broker import EmbeddedBroker\n"
        "b = EmbeddedBroker().start()\n"
        "print(b.pid, flush=True)\n"
        "time.sleep(60)\n"
    )
    parent = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    assert parent.stdout is not None
    broker_pid = int(parent.stdout.readline())
    assert pid_alive(broker_pid)
    parent.send_signal(signal.SIGKILL)
    parent.wait()
    deadline = time.time() + 5
    while pid_alive(broker_pid) and time.time() < deadline:
        time.sleep(0.05)
    assert not pid_alive(broker_pid)
