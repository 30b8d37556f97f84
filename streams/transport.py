"""The Faust app the service runs: Faust with two fixes to how its consumer starts reading.

1. The fetch wait is a setting (``ECC_FETCH_MAX_WAIT_MS``). Faust builds its aiokafka
   consumer with ``fetch_max_wait_ms=1500`` written into the driver. Kafka answers a fetch
   as soon as data arrives, so there the value only bounds idle polling; a broker that
   holds every fetch for its whole wait (the embedded Tansu does: DESIGN.md) adds up to
   that much to every hop, which made each answer wait about 600 ms.
2. Stream partitions are seeked to their committed offsets *before* they are resumed.
   After a rebalance Faust resumes them first and seeks them after (``Recovery``, with
   tables or without). A fetch in between reads from wherever the consumer stood, which
   after a restart was past the committed offset; the seek then sets Faust's read offsets
   back, the records already fetched are delivered anyway and move them forward again,
   and Faust drops everything it re-reads below that as already read. ``ecc soak`` lost
   feedback and turns so (tens of records after a worker's restart, one run in two with a
   10 ms fetch wait, which makes such a fetch likely). Seeking first means that fetch
   starts at the committed offset; Faust's own seek after it can at most deliver a record
   twice, which every agent skips.
"""

from __future__ import annotations

from typing import Any

import faust
from faust.tables.manager import TableManager
from faust.tables.recovery import Recovery
from faust.transport.drivers import aiokafka as driver


class _ConsumerThread(driver.AIOKafkaConsumerThread):
    def _create_worker_consumer(self, transport: Any) -> Any:
        consumer = super()._create_worker_consumer(transport)
        app = self.app
        assert isinstance(app, App), "the transport of streams.transport.App only"
        # read by AIOKafkaConsumer.start() when it builds its fetcher
        consumer._fetch_max_wait_ms = app.fetch_max_wait_ms
        return consumer


class _Consumer(driver.Consumer):
    def _new_consumer_thread(self) -> driver.AIOKafkaConsumerThread:
        return _ConsumerThread(self, loop=self.loop, beacon=self.beacon)


class _Transport(driver.Transport):
    Consumer = _Consumer


class _Recovery(Recovery):
    async def _seek_streams_first(self, generation_id: int) -> None:
        if self.app.consumer_generation_id == generation_id and self.app.consumer.assignment():
            seek = self.app.consumer.perform_seek()
            await self._wait(seek, timeout=self.app.conf.broker_request_timeout)

    async def _resume_streams(self, generation_id: int = 0) -> None:
        await self._seek_streams_first(generation_id)
        await super()._resume_streams(generation_id)

    async def on_recovery_completed(self, generation_id: int = 0) -> None:
        await self._seek_streams_first(generation_id)
        await super().on_recovery_completed(generation_id)


class _TableManager(TableManager):
    @property
    def recovery(self) -> Recovery:
        if self._recovery is None:
            self._recovery = _Recovery(self.app, self, beacon=self.beacon, loop=self.loop)
        return self._recovery


class App(faust.App):
    """A Faust app whose consumer waits at most ``fetch_max_wait_ms`` per fetch and seeks
    stream partitions before it resumes them."""

    def __init__(self, *args: Any, fetch_max_wait_ms: int, **kwargs: Any) -> None:
        self.fetch_max_wait_ms = fetch_max_wait_ms
        super().__init__(*args, TableManager=_TableManager, **kwargs)

    def _new_transport(self) -> Any:
        return _Transport(self.conf.broker_consumer, self)
