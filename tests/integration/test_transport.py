"""streams.transport against aiokafka on the real broker: what a fetch may hand back."""

from __future__ import annotations

import asyncio
import time

import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition

from streams import topics
from streams.kafka import client_options, producer
from streams.settings import Settings
from streams.transport import _ActivePartitions
from tests.integration.conftest import isolated


async def _buffered(c: AIOKafkaConsumer, tps: list[TopicPartition]) -> None:
    """Wait until aiokafka's fetcher holds records of every one of ``tps``."""
    deadline = time.monotonic() + 10
    while not all(tp in c._fetcher._records for tp in tps):
        assert time.monotonic() < deadline, "the fetcher never buffered both partitions"
        await asyncio.sleep(0.05)


def test_no_active_partition_means_no_records(
    settings: Settings, tmp_path_factory: pytest.TempPathFactory
) -> None:
    """Faust passes aiokafka its live set of active partitions; aiokafka takes an empty set
    for "all" and hands back the records of paused partitions, which Faust then drops
    (moving past them for good). Seen through :class:`_ActivePartitions` an empty set
    returns nothing and reading stays where it was."""
    settings = isolated(settings, tmp_path_factory, "transport", topic_partitions=2)
    topic = settings.topic_prefix + topics.CHAT_TURNS

    async def scenario() -> tuple[dict, dict, dict, list[int]]:
        async with producer(settings) as p:
            for i in range(10):
                await p.send_and_wait(topic, b"%d" % i, partition=i % 2)
        tps = [TopicPartition(topic, 0), TopicPartition(topic, 1)]
        c = AIOKafkaConsumer(**client_options(settings), enable_auto_commit=False)
        await c.start()
        try:
            c.assign(tps)
            for tp in tps:
                c.seek(tp, 0)
            await _buffered(c, tps)
            live: set[TopicPartition] = set()  # nothing active: everything paused
            ours = await c._fetcher.fetched_records(_ActivePartitions(live), timeout=0.5)
            positions = {tp: await c.position(tp) for tp in tps}
            live.add(tps[0])  # one partition resumes
            resumed = await c._fetcher.fetched_records(_ActivePartitions(live), timeout=2)
            raw = await c._fetcher.fetched_records(set(), timeout=2)  # aiokafka's "all"
            return ours, positions, resumed, [m.offset for ms in raw.values() for m in ms]
        finally:
            await c.stop()

    ours, positions, resumed, raw = asyncio.run(scenario())
    assert ours == {}
    assert set(positions.values()) == {0}
    assert list(resumed) == [TopicPartition(topic, 0)]
    assert [m.offset for m in resumed[TopicPartition(topic, 0)]] == [0, 1, 2, 3, 4]
    assert raw == [0, 1, 2, 3, 4]  # partition 1's, paused all along: why the view exists
