"""Drift agent: chat.turns, chat.feedback and adapters.events -> drift.events.

Scoring and the per-intent state machine live in :mod:`learners.drift`; this agent feeds
them a node's whole :class:`TurnBatch` at a time, publishes every state change and a
periodic score snapshot, and keeps the gauges.

The state survives restarts in the Faust table ``drift-state``: one record per node (its
pooled rates and the last offset of each input topic it includes) and its intents in
``STATE_SHARDS`` records ``node/#k``, each holding the intents that hash to ``k``. Records
go to the partition of the node's input records, so the worker that owns a node's
partitions recovers its state. Shards, not a record per intent: the changelog is written a
record per produce request (the embedded broker's quirk, DESIGN.md), and 150 of those per
checkpoint stalled the worker for half of every second (measured, issue 4).

Dirty state is checkpointed every ``ECC_DRIFT_CHECKPOINT_S`` and always, flushed to the
broker, before an alarm (a transition to drifting) is published: a restarted worker never
alarms twice for one shift. Input records at or below the stored offsets are skipped, so
replayed records are not counted twice.
"""

from __future__ import annotations

import itertools
import logging
import time
import zlib
from collections.abc import Awaitable
from typing import Any

import numpy as np
from faust.types import EventT

from learners.drift import SIGNALS, DriftMonitor, DriftState, DriftTransition
from learners.join import TurnCache
from streams import metrics, topics
from streams.context import Context
from streams.schemas import AdapterEvent, DriftEvent, Feedback, TurnBatch
from streams.state_table import StateTable

log = logging.getLogger("ecc.drift")
STATES = ("stable", "warning", "drifting", "recovering")


STATE_SHARDS = 8


def _shard(intent: str) -> int:
    return zlib.crc32(intent.encode()) % STATE_SHARDS


def _shard_key(node_id: str, shard: int) -> str:
    return f"{node_id}/#{shard}"


class DriftStore:
    """The monitor's state in a Faust table: load a node on first sight, save what changed."""

    def __init__(self, ctx: Context, monitor: DriftMonitor) -> None:
        self.ctx = ctx
        self.monitor = monitor
        self.table = StateTable(ctx.app, topics.DRIFT_STATE_TABLE, ctx.settings.topic_partitions)
        self.partition: dict[str, int] = {}
        self.last = time.monotonic()

    def load(self, node_id: str, partition: int) -> None:
        """Make sure the monitor holds ``node_id``'s state (from the table if it has one)."""
        if node_id in self.partition:
            return
        self.partition[node_id] = partition
        data = self.table.data
        node = data.get(node_id)
        if node is None:
            return
        intents: dict[str, Any] = {}
        for k in range(STATE_SHARDS):
            intents.update(data.get(_shard_key(node_id, k)) or {})
        self.monitor.restore(node_id, {"node": node, "intents": intents})

    async def save(self, force: bool = False) -> None:
        """Write dirty state if the checkpoint interval passed (or ``force``); returns once
        the broker has acknowledged what it wrote."""
        if not force and time.monotonic() - self.last < self.ctx.settings.drift_checkpoint_s:
            return
        self.last = time.monotonic()
        records: dict[str, tuple[str, Any]] = {}  # key: (node, value)
        shards: dict[str, set[int]] = {}  # dirty shards by node
        for node_id, intent in self.monitor.take_dirty():
            if node_id not in self.partition:
                continue
            if intent is None:
                records[node_id] = (node_id, self.monitor.export_part(node_id, ())["node"])
            else:
                shards.setdefault(node_id, set()).add(_shard(intent))
        for node_id, dirty in shards.items():
            names = [i for i in self.monitor.intents(node_id) if _shard(i) in dirty]
            for intent, value in self.monitor.export_part(node_id, names)["intents"].items():
                key = _shard_key(node_id, _shard(intent))
                records.setdefault(key, (node_id, {}))[1][intent] = value
        for key, (node_id, value) in records.items():
            self.table.put(key, value, self.partition[node_id])
        if records:
            metrics.DRIFT_CHECKPOINTS.inc(len(records))
        await self.table.delivered()

    async def forget_all(self) -> None:
        """Partitions moved: save, then drop in-memory state (it reloads from the table)."""
        await self.save(force=True)
        for node_id in list(self.partition):
            self.monitor.forget(node_id)
        self.partition.clear()


class PendingTurns:
    """Turn batches of one ``take_events`` chunk, scored per node and adapter in one call.

    The monitor's cost is mostly per (intent, call): an edge micro-batch of 64 turns over
    77 intents gives groups of about one turn, scored at about 4k turns/s. Scoring all of a
    node's batches of the chunk together gives groups of hundreds of turns when the worker
    is behind (the chunk fills up), so it catches up instead of falling further behind;
    when it keeps up the chunk is small and nothing waits longer than ``within``.
    The turn-level signals do not depend on how turns are grouped into calls; share of
    traffic is one binomial step per call, which the grouping changes little.
    """

    def __init__(self, monitor: DriftMonitor) -> None:
        self.monitor = monitor
        self.batches: dict[str, list[TurnBatch]] = {}

    def add(self, batch: TurnBatch) -> None:
        self.batches.setdefault(batch.node_id, []).append(batch)

    def score(self, node_id: str, now: float) -> list[DriftTransition]:
        """Score ``node_id``'s pending turns, one call per run of one embedding space."""
        out: list[DriftTransition] = []
        space = itertools.groupby(self.batches.pop(node_id, []), key=_embedding_space)
        for (version, _), group in space:
            run = list(group)
            out += self.monitor.observe_turns(
                node_id,
                [intent for b in run for intent in b.intents],
                np.array([c for b in run for c in b.confidences]),
                np.concatenate([b.embedding_matrix() for b in run]),
                now,
                version,
            )
        return out

    def score_all(self, now: float) -> list[DriftTransition]:
        return [change for node_id in list(self.batches) for change in self.score(node_id, now)]


def _embedding_space(batch: TurnBatch) -> tuple[int, int]:
    """Turns embedded by the same encoder share a reference (a head-only version does not
    move the space)."""
    version = batch.adapter_version if batch.encoder_version is None else batch.encoder_version
    return version, batch.dim


def register(ctx: Context) -> None:
    s = ctx.settings
    monitor = DriftMonitor(s.drift_config())
    store = DriftStore(ctx, monitor)
    pending = PendingTurns(monitor)
    predicted: TurnCache[str] = TurnCache(ttl_s=s.turn_ttl_s, max_items=200_000)
    source = ctx.topic(topics.CHAT_TURNS, topics.CHAT_FEEDBACK, topics.ADAPTERS_EVENTS)

    def fresh(event: EventT, node_id: str) -> bool:
        """Load the node's state; False if the record is already part of it (a replay)."""
        msg = event.message
        store.load(node_id, msg.partition)
        if msg.offset <= monitor.offset(node_id, msg.topic):
            return False
        monitor.set_offset(node_id, msg.topic, msg.offset)
        return True

    async def handle(event: EventT, now: float) -> list[DriftTransition]:
        kind = ctx.topic_of(event)
        if kind == topics.CHAT_TURNS:
            batch = await ctx.decode(event, TurnBatch)
            if batch is None or not fresh(event, batch.node_id):
                return []
            predicted.put_many(zip(batch.turn_ids, batch.intents, strict=True), now)
            metrics.DRIFT_TURNS.labels(batch.node_id).inc(len(batch))
            pending.add(batch)
            return []
        if kind == topics.CHAT_FEEDBACK:
            fb = await ctx.decode(event, Feedback, owner=False)
            intent = predicted.get(fb.turn_id, now) if fb is not None else None
            if fb is None or intent is None or not fresh(event, fb.node_id):
                return []
            if fb.kind not in {"thumbs_up", "thumbs_down", "correction"}:
                return []
            wrong = fb.kind == "thumbs_down" or (fb.kind == "correction" and fb.label != intent)
            # The node's earlier turns are scored first: the monitor sees records in order.
            return pending.score(fb.node_id, now) + monitor.observe_feedback(
                fb.node_id, intent, wrong, now
            )
        adapter = await ctx.decode(event, AdapterEvent)
        if adapter is None or not fresh(event, adapter.node_id):
            return []
        out = pending.score(adapter.node_id, now)
        if adapter.status == "published":
            out += monitor.adapter_published(adapter.node_id, adapter.version, now)
        return out

    @ctx.app.agent(source, name="drift")
    async def drift(stream: Any) -> None:
        async for events in stream.take_events(1000, within=0.05):
            started = time.perf_counter()
            now = time.time()
            changes: list[DriftTransition] = []
            for event in events:
                try:
                    changes += await handle(event, now)
                except Exception as exc:  # one bad record must not stop drift scoring
                    log.exception("drift scoring failed on a record")
                    await ctx.dead_letter(event, f"drift scoring failed: {exc!r}"[:500])
            changes += pending.score_all(now)
            # The state that includes an alarm reaches the broker before the alarm does: a
            # worker killed in between resumes past it, never repeats it. Other transitions
            # (warning and back, recovery) wait for the periodic checkpoint: forcing one for
            # each warning flush-stalled the worker in most chunks (measured, issue 4), and
            # one repeated after a crash misleads nobody.
            await store.save(force=any(c.new == DriftState.DRIFTING for c in changes))
            for change in changes:
                await publish(ctx, change)
            metrics.DRIFT_BATCH_SECONDS.observe(time.perf_counter() - started)

    @ctx.app.on_partitions_revoked.connect
    def on_revoked(app: Any, /, *args: Any, signal: Any, **kwargs: Any) -> Awaitable[None]:
        return store.forget_all()

    @ctx.app.timer(interval=s.drift_snapshot_s)
    async def snapshot() -> None:
        now = time.time()
        for status in monitor.snapshot():
            metrics.DRIFT_SCORE.labels(status.node_id, status.intent).set(status.score)
            for name in STATES:
                metrics.DRIFT_STATE.labels(status.node_id, status.intent, name).set(
                    1.0 if status.state.value == name else 0.0
                )
            for signal in SIGNALS:
                metrics.DRIFT_SIGNAL.labels(status.node_id, status.intent, signal).set(
                    status.signals[signal]
                )
            event = DriftEvent(
                node_id=status.node_id,
                intent=status.intent,
                kind="snapshot",
                state=status.state.value,
                score=min(max(status.score, 0.0), 1.0),
                signals=status.signals,
                turns=status.turns,
                ts=now,
            )
            await ctx.send(topics.DRIFT_EVENTS, event, key=status.node_id)
        predicted.purge(now)


async def publish(ctx: Context, change: DriftTransition) -> None:
    event = DriftEvent(
        node_id=change.node_id,
        intent=change.intent,
        kind="transition",
        state=change.new.value,
        previous_state=change.old.value,
        score=min(max(change.score, 0.0), 1.0),
        signals=change.signals,
        reason=change.reason,
        turns=change.turns,
        ts=change.at,
    )
    await ctx.send(topics.DRIFT_EVENTS, event, key=change.node_id)
    if change.new.value == "drifting":
        metrics.DRIFT_ALARMS.labels(change.node_id, change.intent).inc()
