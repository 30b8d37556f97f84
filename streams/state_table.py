"""A worker's state in a changelogged Faust table, with writes one can wait for.

Agents keep their state in a table's memory and write each changed record to its
changelog themselves (``put``/``delete``: the partition is the node's, not the current
event's). Before the input records that a write depends on are acknowledged, the agent
awaits :meth:`StateTable.delivered`: every write so far is then acknowledged by the broker.

Faust's own guarantee is weaker. It flushes its producer before it commits offsets, but
its flush waits only for records still queued in its send buffer: a record the buffer has
handed on but aiokafka has not accepted yet is in neither. With one record per produce
batch (the embedded broker's workaround, DESIGN.md) aiokafka holds the next record of a
partition until the previous one is sent, so the last state records can be in that gap
when offsets past their inputs are committed, and a ``kill -9`` then loses them. (Found
by reading Faust and aiokafka; the soak's lost feedback had another cause, fixed in
:mod:`streams.transport`.)

The table also stores where its inputs were read up to: the agent calls :meth:`read` for
every input record it handles, and :meth:`delivered` first writes, for each input
partition read since the last call, ``pos:<topic>/<partition>`` = the next offset to read
(in the changelog partition of that input partition, so it moves with the state of that
partition). After a rebalance a worker resumes an input partition there when that is below
its committed offset (:mod:`streams.transport`): a record is never skipped because a
commit got ahead of the state that includes it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Collection
from typing import Any

import faust
from faust.types import TP

from streams.transport import App

POSITION = "pos:"


class StateTable:
    """A JSON-keyed, JSON-valued Faust table written through :meth:`put`/:meth:`delete`."""

    def __init__(self, app: App, name: str, partitions: int) -> None:
        self.table = app.Table(
            name,
            default=None,
            partitions=partitions,
            schema=faust.Schema(key_serializer="json", value_serializer="json"),
        )
        self._unconfirmed: list[asyncio.Future[Any]] = []
        self._next: dict[TP, int] = {}  # input partition -> next offset to handle
        self._unstored: set[TP] = set()  # partitions read since the last delivered()
        app.add_position_source(self.positions)

    @property
    def data(self) -> Any:
        """The table's memory (recovered from the changelog at a start or a rebalance)."""
        return self.table.data

    def put(self, key: str, value: Any, partition: int) -> None:
        self.table.data[key] = value
        self._unconfirmed.append(self.table.send_changelog(partition, key, value))

    def delete(self, key: str, partition: int) -> None:
        if self.table.data.pop(key, None) is not None:
            tombstone = self.table.send_changelog(partition, key, None, value_serializer="raw")
            self._unconfirmed.append(tombstone)

    def read(self, topic: str, partition: int, offset: int) -> None:
        """The input record at ``offset`` is part of the state written so far."""
        tp = TP(topic, partition)
        self._next[tp] = offset + 1
        self._unstored.add(tp)

    def next_offset(self, tp: TP) -> int | None:
        """The next offset of ``tp`` to handle, if a record of it was handled since
        :meth:`forget_reads` (a rebalance)."""
        return self._next.get(tp)

    def forget_reads(self) -> None:
        """Partitions moved: what was handled before says nothing of where reading is now
        (a position not stored yet is dropped; reading then resumes lower, and the agents
        skip the records their state holds)."""
        self._next.clear()

    def positions(self, partitions: Collection[TP]) -> dict[TP, int]:
        """The stored next offset of each of ``partitions`` that this table has one for."""
        data = self.table.data
        out = {}
        for tp in partitions:
            offset = data.get(f"{POSITION}{tp.topic}/{tp.partition}")
            if offset is not None:
                out[tp] = int(offset)
        return out

    async def delivered(self) -> int:
        """Store the input positions read since the last call, then wait until the broker
        has acknowledged every write so far; how many there were. A failed write raises,
        so the inputs behind it are not acknowledged."""
        unstored, self._unstored = self._unstored, set()
        for tp in unstored:
            if tp in self._next:
                self.put(f"{POSITION}{tp.topic}/{tp.partition}", self._next[tp], tp.partition)
        pending, self._unconfirmed = self._unconfirmed, []
        if pending:
            await asyncio.gather(*pending)
        return len(pending)
