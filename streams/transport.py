"""Faust's Kafka transport with the fetch wait as a setting (``ECC_FETCH_MAX_WAIT_MS``).

Faust builds its aiokafka consumer with ``fetch_max_wait_ms=1500`` written into the
driver. Kafka answers a fetch as soon as data arrives, so there the value only bounds idle
polling; a broker that holds every fetch for its whole wait (the embedded Tansu does:
DESIGN.md) adds up to that much to every hop, which made each answer wait about 600 ms.
"""

from __future__ import annotations

from typing import Any

import faust
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


class App(faust.App):
    """A Faust app whose consumer waits at most ``fetch_max_wait_ms`` per fetch."""

    def __init__(self, *args: Any, fetch_max_wait_ms: int, **kwargs: Any) -> None:
        self.fetch_max_wait_ms = fetch_max_wait_ms
        super().__init__(*args, **kwargs)

    def _new_transport(self) -> Any:
        return _Transport(self.conf.broker_consumer, self)
