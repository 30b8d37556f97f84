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
3. Every seek after a rebalance is explicit. A partition with no committed offset is
   seeked to offset 0: a worker restarted after ``kill -9`` whose predecessor died
   before its first commit sometimes started at the *end* of every partition although
   ``auto_offset_reset`` is ``earliest`` (about one run in seven of the feedback kill test:
   the feedback produced while the previous worker was starting was never read, and the
   next commit skipped it for good). And a state table (:mod:`streams.state_table`)
   stores, with the state, the next offset of each input partition that state includes;
   where that is below the committed offset (a commit got ahead of the stored state)
   reading resumes there. Never above it: the agents of a worker share one consumer, and
   one without stored state (the teacher) has read exactly up to the committed offset.
4. That seek is the only one of a rebalance. Faust seeks again after it has resumed the
   stream partitions (``Recovery.on_recovery_completed``), while the fetcher already
   delivers: the agents were handling records when their read offsets were set back, a
   batch fetched before the seek then arrived past them, and Faust took the offsets in
   between for a gap in the log and counted them as acknowledged (seen in the feedback
   kill test's logs; a commit could then pass records not yet handled). A seek asked for
   the assignment and generation already sought, while the flow is active, is skipped.
5. A fetch returns records only of partitions that are active when it returns. Faust
   hands aiokafka its live set of active partitions, and aiokafka returns *every*
   assigned partition's buffered records when that set is empty (``if partitions and tp
   not in partitions``). Right after table recovery the set is empty (the changelogs are
   paused, the streams not resumed yet), so a fetch waiting then returned the paused
   stream partitions' records; Faust dropped them as not active, aiokafka's position
   had moved past them, and when the partitions resumed reading went on after them.
   This was the loss behind 2 and 4 (``ecc soak``: 30-40 feedback records lost after a
   restart, in most runs; the records skipped showed as a gap, 4's warning). aiokafka
   now sees the live set through a view that is never empty.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Collection, Mapping
from typing import Any

import faust
from faust.tables.manager import TableManager
from faust.tables.recovery import Recovery
from faust.transport.drivers import aiokafka as driver
from faust.types import TP

_log = logging.getLogger("ecc.transport")


class _ActivePartitions:
    """Faust's live set of active partitions as aiokafka's fetch sees it: the same
    membership, but never empty, so an empty set means none rather than all (module doc, 5)."""

    def __init__(self, live: Collection[TP]) -> None:
        self._live = live

    def __bool__(self) -> bool:
        return True

    def __contains__(self, tp: object) -> bool:
        return tp in self._live


class _ConsumerThread(driver.AIOKafkaConsumerThread):
    async def _fetch_records(
        self,
        consumer: Any,
        active_partitions: Any,
        timeout: float | None = None,
        max_records: int | None = None,
    ) -> Any:
        view: Any = None if active_partitions is None else _ActivePartitions(active_partitions)
        return await super()._fetch_records(
            consumer, view, timeout=timeout, max_records=max_records
        )

    def _create_worker_consumer(self, transport: Any) -> Any:
        consumer = super()._create_worker_consumer(transport)
        app = self.app
        assert isinstance(app, App), "the transport of streams.transport.App only"
        # read by AIOKafkaConsumer.start() when it builds its fetcher
        consumer._fetch_max_wait_ms = app.fetch_max_wait_ms
        return consumer


class _Consumer(driver.Consumer):
    _sought: tuple[int, frozenset[TP]] | None = (
        None  # the assignment last sought, with its generation
    )

    def _new_consumer_thread(self) -> driver.AIOKafkaConsumerThread:
        return _ConsumerThread(self, loop=self.loop, beacon=self.beacon)

    async def seek_before_resume(self) -> None:
        """The rebalance's seek, before its stream partitions resume (module doc, 2 and 4)."""
        await self._seek_resume_positions()
        self._sought = self._assignment_token()

    async def perform_seek(self) -> None:
        """Faust's seeks: skipped where :meth:`seek_before_resume` already sought this
        assignment and records flow (module doc, 4)."""
        if self.flow_active and self._sought == self._assignment_token():
            return
        await self._seek_resume_positions()

    def _assignment_token(self) -> tuple[int, frozenset[TP]]:
        return self.app.consumer_generation_id, frozenset(self.assignment())

    async def _add_gap(self, tp: TP, offset_from: int, offset_to: int) -> None:
        _log.warning(
            "%s/%d: offsets %d-%d skipped by the fetch are counted as a gap in the log",
            tp.topic,
            tp.partition,
            offset_from,
            offset_to - 1,
        )
        await super()._add_gap(tp, offset_from, offset_to)

    async def _seek_resume_positions(self) -> None:
        """Seek every assigned input partition to where reading must resume (module doc, 3):
        its committed offset (0 if none), or a stored position below it."""
        app = self.app
        assert isinstance(app, App), "the transport of streams.transport.App only"
        committed = await self.seek_to_committed()
        changelogs = set(app.tables.changelog_topics)
        inputs = [tp for tp in committed if tp.topic not in changelogs]
        done = {tp: off for tp, off in committed.items() if off is not None and off >= 0}
        start = dict(done)
        # Offset 0, not the broker's answer for "earliest" (the embedded broker's offset
        # lookups are unreliable, DESIGN.md); where 0 is out of range, Kafka's reset
        # policy (earliest) moves it to the log start.
        start.update({tp: 0 for tp in inputs if tp not in done})
        stored = app.stored_positions(inputs)
        behind = []
        for tp in inputs:
            target = min(start[tp], stored.get(tp, start[tp]))
            if target < start[tp]:
                behind.append(f"{tp.topic}/{tp.partition}: {target} < {start[tp]}")
            if target != done.get(tp):
                await self._seek(tp, target)
            start[tp] = target
        if behind:
            _log.info("reading from stored positions below the committed offsets: %s", behind)
        self._read_offset.update({tp: start.get(tp) for tp in committed})
        self._committed_offset.update(start)


class _Transport(driver.Transport):
    Consumer = _Consumer


class _Recovery(Recovery):
    async def _seek_streams_first(self, generation_id: int) -> None:
        consumer = self.app.consumer
        if self.app.consumer_generation_id == generation_id and consumer.assignment():
            assert isinstance(consumer, _Consumer), "the transport of streams.transport.App only"
            seek = consumer.seek_before_resume()
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


PositionSource = Callable[[Collection[TP]], Mapping[TP, int]]
"""Given input partitions, the next offset to read of those its state covers."""


class App(faust.App):
    """A Faust app whose consumer waits at most ``fetch_max_wait_ms`` per fetch, seeks
    stream partitions before it resumes them, and never resumes one past the stored state
    of its agents."""

    def __init__(self, *args: Any, fetch_max_wait_ms: int, **kwargs: Any) -> None:
        self.fetch_max_wait_ms = fetch_max_wait_ms
        self._position_sources: list[PositionSource] = []
        super().__init__(*args, TableManager=_TableManager, **kwargs)

    def add_position_source(self, source: PositionSource) -> None:
        self._position_sources.append(source)

    def stored_positions(self, partitions: Collection[TP]) -> dict[TP, int]:
        """The stored next offset of each of ``partitions`` that some state covers (the
        lowest where two do)."""
        out: dict[TP, int] = {}
        for source in self._position_sources:
            for tp, offset in source(partitions).items():
                out[tp] = min(offset, out.get(tp, offset))
        return out

    def _new_transport(self) -> Any:
        return _Transport(self.conf.broker_consumer, self)
