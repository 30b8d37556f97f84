"""True consumer lag: each consumer group's committed offsets against the topics' end
offsets, the way Burrow and kafka-lag-exporter define it, through kafka-python's admin
client.

A worker's own ``ecc_consumer_lag`` comes from the highwater marks its fetches see, which
is only as fresh as its last fetch and stops when the worker stops; this lag is seen from
outside, so it keeps growing while a group's workers are down, which is when an operator
needs it. ``ecc lag`` prints it; ``ecc lag --serve`` exports it to Prometheus as
``ecc_group_lag{group, topic}`` (the sum over the topic's partitions), computed at every
scrape.

On the embedded Tansu broker an end offset is right only for topics written one record
per producer batch (its multi-record batches misreport them: DESIGN.md). The service's
workers produce that way (``ECC_PRODUCER_BATCH_BYTES`` 1); a topic written by a batching
producer can show a wrong lag there. On Apache Kafka the definition is exact.
"""

from __future__ import annotations

import time
from collections import defaultdict
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from kafka import KafkaAdminClient, KafkaConsumer, TopicPartition

from streams.kafka import client_options
from streams.settings import Settings


@dataclass(frozen=True)
class PartitionLag:
    group: str
    topic: str
    """Without the deployment's topic prefix."""
    partition: int
    committed: int
    end: int

    @property
    def lag(self) -> int:
        return max(self.end - self.committed, 0)


class LagReader:
    """Reads every (or the given) consumer group's lag; keeps its connections open between
    reads (an exporter reads at every scrape)."""

    def __init__(self, settings: Settings, groups: Sequence[str] = ()) -> None:
        self.settings = settings
        self.groups = list(groups)
        options = client_options(settings)
        self._admin = KafkaAdminClient(**options)
        self._consumer = KafkaConsumer(**options, group_id=None, enable_auto_commit=False)

    def read(self) -> list[PartitionLag]:
        groups = self.groups or sorted(g["group_id"] for g in self._admin.list_groups())
        if not groups:
            return []
        committed: dict[tuple[str, TopicPartition], int] = {}
        for group in groups:  # one request each: brokers before OffsetFetch v8 take one group
            for tp, meta in self._admin.list_group_offsets(group).get(group, {}).items():
                if meta is not None and meta.offset >= 0:
                    committed[(group, tp)] = meta.offset
        ends = self._consumer.end_offsets(sorted({tp for _, tp in committed}))
        prefix = self.settings.topic_prefix
        return [
            PartitionLag(
                group,
                tp.topic.removeprefix(prefix) if prefix else tp.topic,
                tp.partition,
                offset,
                int(ends.get(tp, offset)),
            )
            for (group, tp), offset in sorted(committed.items(), key=lambda x: (x[0][0], x[0][1]))
        ]

    def close(self) -> None:
        self._admin.close()
        self._consumer.close()


def by_topic(lags: Sequence[PartitionLag]) -> dict[tuple[str, str], int]:
    """Lag per (group, topic), summed over partitions."""
    total: dict[tuple[str, str], int] = defaultdict(int)
    for row in lags:
        total[(row.group, row.topic)] += row.lag
    return dict(total)


class LagCollector:
    """A Prometheus collector that reads the lag at each scrape (``ecc lag --serve``)."""

    def __init__(self, reader: LagReader) -> None:
        self.reader = reader

    def collect(self) -> Iterator[Any]:
        from prometheus_client.core import GaugeMetricFamily

        started = time.perf_counter()
        family = GaugeMetricFamily(
            "ecc_group_lag",
            "Records of a topic not yet committed by a consumer group (end offset minus "
            "committed offset, summed over partitions)",
            labels=["group", "topic"],
        )
        for (group, topic), lag in sorted(by_topic(self.reader.read()).items()):
            family.add_metric([group, topic], lag)
        yield family
        yield GaugeMetricFamily(
            "ecc_group_lag_read_seconds",
            "Seconds the last lag read took",
            value=time.perf_counter() - started,
        )
