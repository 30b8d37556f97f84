"""Teacher agents.

``teacher-requests``: chat.turns, drift.events and thumbs-down feedback -> teacher.requests,
choosing turns by :class:`learners.teacher_policy.TeacherRequestPolicy` (drifting intents,
low confidence, within a per-node budget, never one turn twice). Only redacted text (as on
chat.turns) is ever sent.

``teacher-worker``: teacher.requests -> teacher.annotations, in batches, with the backend
chosen by ``ECC_TEACHER_BACKEND`` running in a thread.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

from learners.join import TurnCache
from learners.teacher_policy import TeacherCandidate, TeacherRequestPolicy
from models.encoder import Encoder
from models.teacher import EmbeddedTeacher, Teacher
from models.teacher_openai import OpenAITeacher
from scenarios.datasets import read_csv
from streams import metrics, topics
from streams.context import Context
from streams.schemas import (
    ChatTurn,
    DriftEvent,
    Feedback,
    TeacherAnnotation,
    TeacherRequest,
    TurnBatch,
)
from streams.settings import Settings

log = logging.getLogger("ecc.teacher")


def build_teacher(settings: Settings) -> Teacher:
    """The configured teacher backend: ``embedded`` (needs ``ECC_TEACHER_CORPUS``) or
    ``openai`` (needs ``ECC_TEACHER_URL``, ``ECC_TEACHER_MODEL`` and the known intents:
    ``ECC_TEACHER_INTENTS`` or the corpus' labels)."""
    if settings.teacher_backend == "openai":
        intents = [i.strip() for i in settings.teacher_intents.split(",") if i.strip()]
        if not intents and settings.teacher_corpus:
            intents = sorted({e.label for e in read_csv(settings.teacher_corpus)})
        return OpenAITeacher(
            settings.teacher_url,
            settings.teacher_model,
            intents,
            api_key=settings.teacher_api_key,
            timeout_s=settings.teacher_timeout_s,
            retries=settings.teacher_retries,
        )
    if settings.teacher_backend != "embedded":
        raise ValueError(
            f"ECC_TEACHER_BACKEND={settings.teacher_backend!r}: choose embedded or openai"
        )
    if not settings.teacher_corpus:
        raise ValueError("the embedded teacher needs ECC_TEACHER_CORPUS (a text,label CSV)")
    corpus = read_csv(settings.teacher_corpus)
    encoder = Encoder(settings.encoder or None, max_length=settings.max_length)
    return EmbeddedTeacher(encoder, [e.text for e in corpus], [e.label for e in corpus])


def register(ctx: Context) -> None:
    register_requests(ctx)
    register_worker(ctx)


def register_requests(ctx: Context) -> None:
    s = ctx.settings
    policy = TeacherRequestPolicy(
        budget_per_minute=s.teacher_budget_per_minute, low_confidence=s.low_confidence
    )
    recent: TurnCache[ChatTurn] = TurnCache(ttl_s=s.turn_ttl_s, max_items=50_000)
    source = ctx.topic(topics.CHAT_TURNS, topics.DRIFT_EVENTS, topics.CHAT_FEEDBACK)

    async def request(candidates: list[TeacherCandidate], now: float) -> None:
        for c in candidates:
            record = TeacherRequest(
                request_id=f"tr:{c.turn_id}",
                node_id=c.node_id,
                turn_id=c.turn_id,
                text=c.text,
                predicted=c.predicted,
                confidence=min(max(c.confidence, 0.0), 1.0),
                reason=c.reason,
                ts=now,
            )
            await ctx.send(topics.TEACHER_REQUESTS, record, key=c.node_id)
            metrics.TEACHER_REQUESTS.labels(c.node_id).inc()

    @ctx.app.timer(interval=1.0)
    async def refill() -> None:
        """Budgets refill: send the queued candidates they allow, keep the gauges true."""
        now = time.time()
        await request(policy.due(now), now)
        for node_id in policy.nodes():
            metrics.TEACHER_BUDGET.labels(node_id).set(policy.budget_left(node_id, now))

    @ctx.app.agent(source, name="teacher-requests")
    async def teacher_requests(stream: Any) -> None:
        async for event in stream.events():
            now = time.time()
            kind = ctx.topic_of(event)
            if kind == topics.CHAT_TURNS:
                batch = await ctx.decode(event, TurnBatch, owner=False)
                if batch is None:
                    continue
                turns = batch.chat_turns()
                recent.put_many(((t.turn_id, t) for t in turns), now)
                for turn in turns:
                    await request(
                        policy.offer_turn(
                            turn.node_id, turn.turn_id, turn.intent, turn.confidence, turn.text, now
                        ),
                        now,
                    )
            elif kind == topics.DRIFT_EVENTS:
                drift = await ctx.decode(event, DriftEvent)
                if drift is None or drift.kind != "transition":
                    continue
                drifting = drift.state == "drifting"
                await request(
                    policy.set_drifting(drift.node_id, drift.intent, drifting, drift.score, now),
                    now,
                )
            else:
                fb = await ctx.decode(event, Feedback, owner=False)
                if fb is None or fb.kind != "thumbs_down":
                    continue
                seen = recent.get(fb.turn_id, now)
                if seen is not None:
                    await request(
                        policy.offer_thumbs_down(
                            seen.node_id, seen.turn_id, seen.intent, seen.text, now
                        ),
                        now,
                    )


def register_worker(ctx: Context) -> None:
    """The teacher runs on its own thread: building its index or answering a batch never
    holds up serving or an edge node's learner (in production it is a separate service)."""
    loaded: list[Teacher] = []
    ready = asyncio.Event()  # binds to the worker's loop on first use

    @ctx.app.task
    async def load_teacher() -> None:
        try:
            loaded.append(await ctx.run(ctx.teacher_pool, build_teacher, ctx.settings))
            ready.set()
        except Exception as exc:  # the worker keeps serving; requests wait in their topic
            log.error("teacher backend failed to load, requests wait: %s", exc)

    @ctx.app.agent(ctx.topic(topics.TEACHER_REQUESTS), name="teacher-worker")
    async def teacher_worker(stream: Any) -> None:
        async for events in stream.take_events(32, within=0.2):
            await ready.wait()
            teacher = loaded[0]
            requests = []
            for event in events:
                record = await ctx.decode(event, TeacherRequest)
                if record is not None:
                    requests.append(record)
            if not requests:
                continue
            started = time.perf_counter()
            answers = await ctx.run(ctx.teacher_pool, teacher.annotate, [r.text for r in requests])
            metrics.TEACHER_SECONDS.observe(time.perf_counter() - started)
            now = time.time()
            for req, ans in zip(requests, answers, strict=True):
                annotation = TeacherAnnotation(
                    request_id=req.request_id,
                    node_id=req.node_id,
                    turn_id=req.turn_id,
                    text=req.text,
                    label=ans.label,
                    confidence=min(max(ans.confidence, 0.0), 1.0),
                    teacher=teacher.name,
                    ts=now,
                )
                outcome = "abstained" if ans.label is None else "labelled"
                metrics.TEACHER_ANNOTATIONS.labels(req.node_id, outcome).inc()
                await ctx.send(topics.TEACHER_ANNOTATIONS, annotation, key=req.node_id)
