"""Edge node agents: serve chat.inbound -> chat.turns; learn training.batches -> adapters.events.

Serving answers a whole micro-batch in one forward pass, whatever nodes its turns are
for (each row through its node's adapter and head), and publishes one :class:`TurnBatch`
per node of it.

Inference, the fast path (head refits) and LoRA consolidation run in threads of their own
(one each), so the event loop keeps consuming while a batch of turns is predicted, and a
label is learnt while a consolidation runs; the swap to a new version happens inside
:class:`learners.edge_node.EdgeNode` between two requests.
"""

from __future__ import annotations

import logging
import time
from collections import Counter, defaultdict
from collections.abc import AsyncIterator
from typing import Any, TypeVar

import numpy as np

from learners.edge_node import (
    BatchOutcome,
    Consolidation,
    EdgeNode,
    LabelledText,
    NodeNotBootstrappedError,
)
from learners.fleet.aggregator import latest_prior
from learners.fleet.prior import FleetPrior
from streams import metrics, topics
from streams.context import Context
from streams.microbatch import MicroBatches
from streams.schemas import (
    AdapterEvent,
    ChatInbound,
    FleetPriorReady,
    ServedTurn,
    TrainingBatch,
    TurnBatch,
)

R = TypeVar("R", ChatInbound, TrainingBatch, FleetPriorReady)
log = logging.getLogger("ecc.edge")

STAGE = metrics.SERVE_STAGE_SECONDS
WAITING_BATCHES = 4  # micro-batches a worker queues before it stops taking turns
LEARN_COALESCE = 16  # most training batches of one node learnt as one update
ROLLBACK_POLL_S = 5.0  # how often a worker checks its nodes' registry pointer


def register(ctx: Context) -> None:
    waiting: MicroBatches[tuple[Any, float]] = MicroBatches(
        ctx.settings.infer_batch, WAITING_BATCHES * ctx.settings.infer_batch
    )

    @ctx.app.agent(ctx.topic(topics.CHAT_INBOUND), name="edge-serve")
    async def edge_serve(stream: Any) -> None:
        # Acked once answered (serve_waiting), so a crash redelivers what was not.
        async for event in stream.noack().events():
            await waiting.put((event, time.time()))

    @ctx.app.task
    async def serve_waiting() -> None:
        """Whatever is waiting, the moment the model is free: no window to fill."""
        while True:
            taken = await waiting.take()
            now = time.time()
            for event, arrived in taken:
                produced = event.message.timestamp or arrived
                STAGE.labels("inbound").observe(max(arrived - produced, 0.0))
                STAGE.labels("queue").observe(now - arrived)
            events = [event for event, _ in taken]
            await serve(ctx, [group async for group in per_node(ctx, events, ChatInbound)])
            for event in events:  # answered (or dead-lettered): safe to commit
                event.ack()

    @ctx.app.agent(ctx.topic(topics.TRAINING_BATCHES), name="edge-learn")
    async def edge_learn(stream: Any) -> None:
        # A backlog of batches for one node is learnt as one update: training, not
        # decoding, is the learner's cost, and the node catches up instead of lagging.
        async for events in stream.take_events(LEARN_COALESCE, within=0.2):
            async for node, batches in per_node(ctx, events, TrainingBatch):
                await learn(ctx, node, batches)

    priors = _Priors(ctx)

    @ctx.app.agent(ctx.topic(topics.FLEET_PRIORS), name="edge-fleet")
    async def edge_fleet(stream: Any) -> None:
        # A node hears of each prior once per round; it is a candidate like a batch's
        # (learnt on the learning thread, gated, announced on adapters.events).
        async for events in stream.take_events(LEARN_COALESCE, within=0.2):
            async for node, records in per_node(ctx, events, FleetPriorReady):
                prior = await priors.get(max(r.version for r in records))
                if prior is None:
                    continue
                with node.pinned():
                    outcome = await ctx.run(ctx.train_pool, node.adopt, prior)
                    await _announce(ctx, node, outcome, [])

    @ctx.app.timer(interval=ROLLBACK_POLL_S)
    async def follow_registry() -> None:
        """`ecc adapters rollback` takes effect on a running worker within a few seconds.

        Only a node whose registry moved waits for the learning thread, so the timer does
        not queue behind every head refit and consolidation."""
        for node in ctx.loaded_edges():
            if not node.registry_moved():
                continue
            before, version = await ctx.run(ctx.train_pool, node.reload)
            if version != before:
                metrics.ADAPTER_VERSION.labels(node.node_id).set(version)
                event = AdapterEvent(
                    node_id=node.node_id,
                    status="rolled_back",
                    version=version,
                    parent=before,
                    reason=f"registry now serves v{version} (was v{before})",
                    ts=time.time(),
                )
                await ctx.send(topics.ADAPTERS_EVENTS, event, key=node.node_id)


class _Priors:
    """The fleet priors this worker has read, by version (the latest few)."""

    def __init__(self, ctx: Context, keep: int = 2) -> None:
        self.ctx = ctx
        self.keep = keep
        self._read: dict[int, FleetPrior] = {}

    async def get(self, version: int) -> FleetPrior | None:
        if version not in self._read:
            prior = await self.ctx.run(self.ctx.load_pool, latest_prior, self.ctx.registry)
            if prior is None or prior.version < version:
                log.warning("fleet prior v%d announced but not in the registry yet", version)
                return None
            self._read[prior.version] = prior
            for old in sorted(self._read)[: -self.keep]:
                del self._read[old]
        return self._read.get(version) or self._read[max(self._read)]


async def per_node(
    ctx: Context, events: list[Any], cls: type[R]
) -> AsyncIterator[tuple[EdgeNode, list[R]]]:
    """Decode ``events`` (bad ones to the DLQ) and group them by node; records of a node
    this worker cannot load go to the DLQ with the reason."""
    by_node: dict[str, list[tuple[Any, R]]] = defaultdict(list)
    for event in events:
        record = await ctx.decode(event, cls)
        if record is not None:
            by_node[record.node_id].append((event, record))
    for node_id, items in by_node.items():
        try:
            node = await ctx.edge(node_id)
        except NodeNotBootstrappedError as exc:
            for event, _ in items:
                await ctx.dead_letter(event, str(exc))
            continue
        yield node, [record for _, record in items]


async def serve(ctx: Context, groups: list[tuple[EdgeNode, list[ChatInbound]]]) -> None:
    """Answer every node's turns of a micro-batch in one forward pass; one
    :class:`TurnBatch` per node."""
    if not groups:
        return
    clock = _Stages(sum(len(records) for _, records in groups))
    answers = await ctx.run(
        ctx.infer_pool,
        EdgeNode.predict_many,
        [(node, [r.text for r in records]) for node, records in groups],
    )
    seconds = clock.lap("inference")
    now = time.time()
    redacted_turns = []
    for (node, records), (preds, version, encoder) in zip(groups, answers, strict=True):
        metrics.INFER_SECONDS.labels(node.node_id).observe(seconds)
        served = []
        redacted: Counter[str] = Counter()
        for record, pred in zip(records, preds, strict=True):
            redaction = ctx.redactor.redact(record.text)
            redacted.update(redaction.found)
            served.append(
                ServedTurn(
                    turn_id=record.turn_id,
                    text=redaction.text,
                    intent=pred.intent,
                    confidence=min(max(pred.confidence, 0.0), 1.0),
                    ts=record.ts,
                )
            )
            metrics.TURNS.labels(node.node_id, pred.intent).inc()
            metrics.CONFIDENCE.labels(node.node_id).observe(pred.confidence)
        redacted_turns.append((node.node_id, version, encoder, served, preds, redacted))
    clock.lap("redact")
    values = []
    for node_id, version, encoder, served, preds, redacted in redacted_turns:
        embeddings = np.stack([pred.embedding for pred in preds])
        batch = TurnBatch.of(node_id, version, served, embeddings, now, dict(redacted), encoder)
        values.append((node_id.encode(), batch.dumps()))
    clock.lap("encode")
    for key, value in values:
        await ctx.topic(topics.CHAT_TURNS).send(key=key, value=value)
    clock.lap("publish")


class _Stages:
    """Seconds of each serving stage, observed once per turn of the micro-batch (so the
    stages of a turn add up to its time in the worker)."""

    def __init__(self, turns: int) -> None:
        self.turns = turns
        self.last = time.perf_counter()

    def lap(self, stage: str) -> float:
        now = time.perf_counter()
        seconds, self.last = now - self.last, now
        child = STAGE.labels(stage)
        for _ in range(self.turns):
            child.observe(seconds)
        return seconds


async def learn(ctx: Context, node: EdgeNode, batches: list[TrainingBatch]) -> None:
    started = time.perf_counter()
    work = [
        (b.batch_id, [LabelledText(e.example_id, e.text, e.label) for e in b.examples])
        for b in batches
    ]
    with node.pinned():  # resident until learnt (a second copy loaded meanwhile would race)
        outcome = await ctx.run(ctx.train_pool, node.apply_batches, work)
        metrics.UPDATE_SECONDS.labels(node.node_id).observe(time.perf_counter() - started)
        await _announce(ctx, node, outcome, [b.batch_id for b in batches])
        if node.consolidation_due():
            job = await ctx.run(ctx.train_pool, node.begin_consolidation)
            if job is not None:
                ctx.background(consolidate(ctx, node, job))
        # on the learning thread: a node's learning state is only touched there
        await ctx.run(ctx.train_pool, ctx.edges.taught, node.node_id)
    ctx.count_resident()


async def consolidate(ctx: Context, node: EdgeNode, job: Consolidation) -> None:
    """The slow path beside the fast one: LoRA and the memory re-embedded in a thread of
    their own, then the gate on the train thread (batches learnt meanwhile included)."""
    started = time.perf_counter()
    event = AdapterEvent(
        node_id=node.node_id,
        status="consolidating",
        version=job.parent,
        parent=job.parent,
        metrics={"memory_size": float(len(job.ids)), "steps": float(job.trainer.options.steps)},
        reason=f"LoRA consolidation of v{job.parent} over {len(job.ids)} examples began",
        ts=time.time(),
    )
    await ctx.send(topics.ADAPTERS_EVENTS, event, key=node.node_id)
    metrics.CONSOLIDATING.labels(node.node_id).set(1)
    try:
        await ctx.run(ctx.consolidate_pool, job.run, ctx.stopping.is_set)
        outcome = await ctx.run(ctx.train_pool, node.finish_consolidation, job)
    finally:
        metrics.CONSOLIDATING.labels(node.node_id).set(0)
    metrics.CONSOLIDATION_SECONDS.labels(node.node_id).observe(time.perf_counter() - started)
    await _announce(ctx, node, outcome, [])


async def _announce(
    ctx: Context, node: EdgeNode, outcome: BatchOutcome, batch_ids: list[str]
) -> None:
    """An update's metrics and its ``adapters.events`` record."""
    metrics.ADAPTER_UPDATES.labels(node.node_id, outcome.status).inc()
    metrics.ADAPTER_VERSION.labels(node.node_id).set(outcome.version)
    if "holdout_accuracy" in outcome.metrics and outcome.status == "published":
        metrics.HOLDOUT_ACCURACY.labels(node.node_id).set(outcome.metrics["holdout_accuracy"])
    event = AdapterEvent(
        node_id=node.node_id,
        status=outcome.status,
        version=outcome.version,
        candidate=outcome.candidate,
        parent=outcome.parent,
        batch_ids=batch_ids,
        metrics={k: v for k, v in outcome.metrics.items() if v == v},
        labels_added=outcome.labels_added,
        reason=outcome.reason,
        ts=time.time(),
    )
    await ctx.send(topics.ADAPTERS_EVENTS, event, key=node.node_id)
