"""Feedback agent: joins chat.feedback and teacher.annotations with their turns and batches
labelled examples per node into training.batches (by size or age).

A correction or a thumbs-up (a confirmed prediction) becomes a labelled example; a
thumbs-down without a label goes to the teacher-request agent instead. Feedback whose turn
has not arrived yet waits up to ``JOIN_WAIT_S``; after that, or for an expired turn, it goes
to the DLQ with the reason.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from learners.batching import FeedbackBatcher, LabelledExample
from learners.batching import TrainingBatch as Batch
from learners.join import TurnCache
from streams import metrics, topics
from streams.app import Context
from streams.schemas import Example, Feedback, TeacherAnnotation, TrainingBatch, TurnBatch

JOIN_WAIT_S = 15.0


@dataclass(frozen=True)
class TurnInfo:
    node_id: str
    text: str
    intent: str


def register(ctx: Context) -> None:
    s = ctx.settings
    turns: TurnCache[TurnInfo] = TurnCache(ttl_s=s.turn_ttl_s, max_items=200_000)
    batcher = FeedbackBatcher(max_size=s.batch_size, max_age_s=s.batch_max_age_s)
    waiting: list[tuple[float, Any, Feedback]] = []
    source = ctx.topic(topics.CHAT_TURNS, topics.CHAT_FEEDBACK, topics.TEACHER_ANNOTATIONS)

    async def emit(batches: list[Batch]) -> None:
        for b in batches:
            record = TrainingBatch(
                batch_id=b.batch_id,
                node_id=b.node_id,
                examples=[
                    Example(
                        example_id=e.example_id,
                        turn_id=e.turn_id,
                        text=e.text,
                        label=e.label,
                        source=e.source,
                        confidence=e.confidence,
                    )
                    for e in b.examples
                ],
                created_at=b.created_at,
                reason=b.reason,
            )
            await ctx.send(topics.TRAINING_BATCHES, record, key=b.node_id)
            metrics.BATCHES.labels(b.node_id, b.reason).inc()
            metrics.BATCH_SIZE.observe(len(b.examples))

    async def on_feedback(fb: Feedback, turn: TurnInfo, now: float) -> None:
        label = fb.label if fb.kind == "correction" else None
        if fb.kind == "thumbs_up":
            label = turn.intent
        if label is None:
            return
        example = LabelledExample(
            example_id=f"feedback:{fb.feedback_id}",
            node_id=fb.node_id,
            turn_id=fb.turn_id,
            text=turn.text,
            label=label,
            source="feedback",
        )
        await emit(batcher.add(example, now))

    @ctx.app.agent(source, name="feedback")
    async def feedback(stream: Any) -> None:
        async for event in stream.events():
            now = time.time()
            kind = ctx.topic_of(event)
            if kind == topics.CHAT_TURNS:
                batch = await ctx.decode(event, TurnBatch, owner=False)
                if batch is not None:
                    rows = zip(batch.turn_ids, batch.texts, batch.intents, strict=True)
                    turns.put_many(((t, TurnInfo(batch.node_id, x, i)) for t, x, i in rows), now)
            elif kind == topics.CHAT_FEEDBACK:
                fb = await ctx.decode(event, Feedback)
                if fb is None:
                    continue
                metrics.FEEDBACK.labels(fb.node_id, fb.kind).inc()
                info = turns.get(fb.turn_id, now)
                if info is None:
                    waiting.append((now + JOIN_WAIT_S, event, fb))
                else:
                    await on_feedback(fb, info, now)
            else:
                ann = await ctx.decode(event, TeacherAnnotation)
                if ann is None or ann.label is None or ann.confidence < s.teacher_min_confidence:
                    continue
                example = LabelledExample(
                    example_id=f"teacher:{ann.turn_id}",
                    node_id=ann.node_id,
                    turn_id=ann.turn_id,
                    text=ann.text,
                    label=ann.label,
                    source="teacher",
                    confidence=ann.confidence,
                )
                await emit(batcher.add(example, now))

    @ctx.app.timer(interval=1.0)
    async def flush() -> None:
        now = time.time()
        still: list[tuple[float, Any, Feedback]] = []
        for deadline, event, fb in waiting:
            info = turns.get(fb.turn_id, now)
            if info is not None:
                await on_feedback(fb, info, now)
            elif now < deadline:
                still.append((deadline, event, fb))
            else:
                metrics.JOIN_MISSES.labels(fb.node_id).inc()
                await ctx.dead_letter(event, f"unknown or expired turn {fb.turn_id!r}")
        waiting[:] = still
        await emit(batcher.due(now))
        turns.purge(now)
