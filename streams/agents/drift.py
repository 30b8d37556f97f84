"""Drift agent: chat.turns, chat.feedback and adapters.events -> drift.events.

Scoring and the per-intent state machine live in :mod:`learners.drift`; this agent feeds
them, publishes every state change and a periodic score snapshot, and keeps the gauges.
"""

from __future__ import annotations

import time
from typing import Any

from learners.drift import DriftConfig, DriftMonitor, DriftTransition
from learners.join import TurnCache
from streams import metrics, topics
from streams.app import Context
from streams.schemas import AdapterEvent, ChatTurn, DriftEvent, Feedback, decode_embedding

STATES = ("stable", "warning", "drifting", "recovering")


def register(ctx: Context) -> None:
    s = ctx.settings
    monitor = DriftMonitor(
        DriftConfig(min_turns=s.drift_min_turns, low_confidence=s.low_confidence)
    )
    predicted: TurnCache[str] = TurnCache(ttl_s=s.turn_ttl_s, max_items=200_000)
    source = ctx.topic(topics.CHAT_TURNS, topics.CHAT_FEEDBACK, topics.ADAPTERS_EVENTS)

    @ctx.app.agent(source, name="drift")
    async def drift(stream: Any) -> None:
        async for events in stream.take_events(1000, within=0.05):
            now = time.time()
            for event in events:
                kind = ctx.topic_of(event)
                changes: list[DriftTransition] = []
                if kind == topics.CHAT_TURNS:
                    turn = await ctx.decode(event, ChatTurn)
                    if turn is None:
                        continue
                    predicted.put(turn.turn_id, turn.intent, now)
                    changes = monitor.observe_turn(
                        turn.node_id,
                        turn.intent,
                        turn.confidence,
                        decode_embedding(turn.embedding),
                        now,
                        turn.adapter_version,
                    )
                elif kind == topics.CHAT_FEEDBACK:
                    fb = await ctx.decode(event, Feedback, owner=False)
                    intent = predicted.get(fb.turn_id, now) if fb is not None else None
                    if fb is None or intent is None:
                        continue
                    wrong = fb.kind == "thumbs_down" or (
                        fb.kind == "correction" and fb.label != intent
                    )
                    if fb.kind in {"thumbs_up", "thumbs_down", "correction"}:
                        changes = monitor.observe_feedback(fb.node_id, intent, wrong, now)
                else:
                    adapter = await ctx.decode(event, AdapterEvent)
                    if adapter is not None and adapter.status == "published":
                        changes = monitor.adapter_published(adapter.node_id, adapter.version, now)
                for change in changes:
                    await publish(ctx, change)

    @ctx.app.timer(interval=s.drift_snapshot_s)
    async def snapshot() -> None:
        now = time.time()
        for status in monitor.snapshot():
            metrics.DRIFT_SCORE.labels(status.node_id, status.intent).set(status.score)
            for name in STATES:
                metrics.DRIFT_STATE.labels(status.node_id, status.intent, name).set(
                    1.0 if status.state.value == name else 0.0
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
