"""Feedback agent: joins chat.feedback and teacher.annotations with their turns and batches
labelled examples per node into training.batches (by size or age).

A correction or a thumbs-up (a confirmed prediction) becomes a labelled example; a
thumbs-down without a label is the teacher-request agent's (and counts as an error in the
drift agent). Feedback whose turn has not arrived yet waits up to ``JOIN_WAIT_S``, and up
to ``BEHIND_GRACE_S`` more while this worker has not read all of its node's chat.turns
(a backlog after a restart); after that, or for an expired turn, it goes to the DLQ with
the reason. A feedback id or an annotated turn seen before (a client's retry) is counted
and dropped.

Nothing accepted is lost and nothing is learnt twice, across crashes too: all state lives
in the Faust table ``feedback-state`` (changelog ``<ECC_APP_ID>-feedback-state-changelog``),
by the rules of :mod:`learners.feedback_ledger`. Its keys:

- ``node:<node>``: the node's ledger record (offsets, open batch, outbox, waiting feedback);
- ``id:<example id>``: a taken id and the record that took it, until ``ECC_TURN_TTL_S``;
- ``turns:<topic>/<partition>/<offset>``: one chat.turns record's ids, redacted texts and
  predictions (the join side), until ``ECC_TURN_TTL_S``.

Records go to the partition of the input record, which is the node's (co-partitioning), so
the worker that takes over a node's partitions recovers its state before it reads on.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass
from typing import Any

from faust.types import TP, EventT

from learners.agreement import Agreement
from learners.batching import FeedbackBatcher, LabelledExample, feedback_label
from learners.batching import TrainingBatch as Batch
from learners.feedback_ledger import FeedbackLedger, Origin, SeenIds, WaitingFeedback
from learners.join import TurnCache
from streams import metrics, topics
from streams.context import Context
from streams.schemas import Example, Feedback, TeacherAnnotation, TrainingBatch, TurnBatch
from streams.state_table import StateTable

log = logging.getLogger("ecc.feedback")

JOIN_WAIT_S = 15.0
BEHIND_GRACE_S = 300.0
MAX_TURNS = 200_000


@dataclass(frozen=True)
class TurnInfo:
    node_id: str
    text: str
    intent: str


class FeedbackStore:
    """The agent's in-memory state and its mirror in the ``feedback-state`` table."""

    def __init__(self, ctx: Context) -> None:
        s = ctx.settings
        self.ctx = ctx
        self.ledger = FeedbackLedger(FeedbackBatcher(s.batch_size, s.batch_max_age_s))
        self.seen = SeenIds(ttl_s=s.turn_ttl_s)
        self.turns: TurnCache[TurnInfo] = TurnCache(ttl_s=s.turn_ttl_s, max_items=MAX_TURNS)
        self.table = StateTable(ctx.app, topics.FEEDBACK_STATE_TABLE, s.topic_partitions)
        self.loaded = False
        self.ready = False  # the table is recovered (between a rebalance and its end: not)
        self.lock = asyncio.Lock()

    # -- the table ----------------------------------------------------------------------

    def ensure_loaded(self) -> None:
        """After a start or a rebalance: rebuild memory from the recovered table."""
        if self.loaded:
            return
        self.loaded = True
        feedback_topic = self.ctx.names(topics.CHAT_FEEDBACK)
        assignment = self.ctx.app.consumer.assignment()
        mine = {tp.partition for tp in assignment if tp.topic == feedback_topic}
        for node_id in self.ledger.nodes():
            self.ledger.forget(node_id)
        self.seen.clear()
        self.turns.clear()
        turn_records = []
        for key, value in list(self.table.data.items()):
            kind, _, name = key.partition(":")
            if kind == "node" and value["partition"] in mine:
                self.ledger.restore(name, value)
            elif kind == "id":
                self.seen.restore(name, (value[0], value[1], value[2]), value[3])
            elif kind == "turns":
                turn_records.append((value["exp"], key, value))
        for expiry, key, value in sorted(turn_records, key=lambda r: r[0]):
            infos = (
                (t, TurnInfo(value["node"], x, i))
                for t, x, i in zip(value["ids"], value["texts"], value["intents"], strict=True)
            )
            self.turns.restore_many(infos, expiry, tag=key)
        log.info(
            "feedback state loaded: %d nodes, %d ids, %d turns",
            len(self.ledger.nodes()),
            len(self.seen),
            len(self.turns),
        )

    def put_turns(self, batch: TurnBatch, origin: Origin, now: float) -> None:
        key = "turns:{}/{}/{}".format(*origin)
        rows = zip(batch.turn_ids, batch.texts, batch.intents, strict=True)
        self.turns.put_many(((t, TurnInfo(batch.node_id, x, i)) for t, x, i in rows), now, key)
        value = {
            "node": batch.node_id,
            "ids": batch.turn_ids,
            "texts": batch.texts,
            "intents": batch.intents,
            "exp": now + self.turns.ttl_s,
        }
        self.table.put(key, value, origin[1])

    def claim(self, example_id: str, origin: Origin, now: float) -> bool:
        """Take ``example_id`` for the record at ``origin``; False for a duplicate."""
        if not self.seen.claim(example_id, origin, now):
            return False
        held, expiry = self.seen.entry(example_id)
        self.table.put(f"id:{example_id}", [*held, expiry], origin[1])
        return True

    def expire(self, now: float) -> None:
        """Forget ids and turns past their time, in memory and in the table."""
        for example_id, origin in self.seen.expire(now):
            self.table.delete(f"id:{example_id}", origin[1])
        self.turns.purge(now)
        for key in self.turns.take_dropped():
            self.table.delete(key, int(key.rsplit("/", 2)[1]))

    async def commit(self) -> None:
        """Store changed node records, then send closed batches (rule 1 and 2).

        Returns once every state record written so far is acknowledged by the broker, so
        the input records processed before the call may be acknowledged after it.
        """
        for node_id in self.ledger.take_dirty():
            if node_id in self.ledger:
                partition = self.ledger.partition(node_id)
                self.table.put(f"node:{node_id}", self.ledger.export(node_id), partition)
        await self.table.delivered()  # the outbox is stored before its batches go out
        out = self.ledger.outbox()
        if not out:
            return
        deliveries = [
            await self.ctx.send(topics.TRAINING_BATCHES, _record(batch), key=batch.node_id)
            for batch in out
        ]
        # Acknowledged, each of them: now they may leave the outbox. A failed delivery
        # raises here, and its batch stays in the outbox to be sent again.
        await asyncio.gather(*deliveries)
        for batch in out:
            metrics.BATCHES.labels(batch.node_id, batch.reason).inc()
            metrics.BATCH_SIZE.observe(len(batch.examples))
            metrics.BATCH_AGE.observe(max(batch.created_at - batch.started, 0.0))
        self.ledger.sent(out)


def _record(batch: Batch) -> TrainingBatch:
    return TrainingBatch(
        batch_id=batch.batch_id,
        node_id=batch.node_id,
        examples=[
            Example(
                example_id=e.example_id,
                turn_id=e.turn_id,
                text=e.text,
                label=e.label,
                source=e.source,
                confidence=e.confidence,
            )
            for e in batch.examples
        ],
        created_at=batch.created_at,
        reason=batch.reason,
    )


def register(ctx: Context) -> None:
    s = ctx.settings
    store = FeedbackStore(ctx)
    ledger = store.ledger
    agreement = Agreement(ttl_s=s.turn_ttl_s)

    def agreed(node_id: str, result: bool | None) -> None:
        if result is not None:
            metrics.TEACHER_AGREEMENT.labels(node_id, "yes" if result else "no").inc()

    source = ctx.topic(topics.CHAT_TURNS, topics.CHAT_FEEDBACK, topics.TEACHER_ANNOTATIONS)

    async def turns_behind() -> set[str]:
        """Nodes whose chat.turns partition holds records this worker has not processed
        (by the highwater of its last fetch)."""
        consumer = ctx.app.consumer
        behind = set()
        for node_id in ledger.nodes():
            partition = ledger.partition(node_id)
            tp = TP(ctx.names(topics.CHAT_TURNS), partition)
            try:
                high = consumer.highwater(tp)
                done = store.table.next_offset(tp)
                if done is None:  # nothing read since the start: where reading resumes
                    done = await consumer.position(tp)
            except Exception:  # not assigned or not fetched yet: not known to be behind
                continue
            if high is not None and done is not None and done < high:
                behind.add(node_id)
        return behind

    def learn(fb: Feedback, turn: TurnInfo, now: float) -> None:
        label = feedback_label(fb.kind, fb.label, turn.intent)
        if label is not None:
            example = LabelledExample(
                example_id=f"feedback:{fb.feedback_id}",
                node_id=fb.node_id,
                turn_id=fb.turn_id,
                text=turn.text,
                label=label,
                source="feedback",
            )
            ledger.add(example, now)
            agreed(fb.node_id, agreement.user(fb.turn_id, label, now))

    async def handle(event: EventT, now: float) -> None:
        kind = ctx.topic_of(event)
        msg = event.message
        origin: Origin = (kind, msg.partition, msg.offset)
        store.table.read(msg.topic, msg.partition, msg.offset)
        if kind == topics.CHAT_TURNS:
            batch = await ctx.decode(event, TurnBatch, owner=False)
            if batch is not None:
                store.put_turns(batch, origin, now)
        elif kind == topics.CHAT_FEEDBACK:
            fb = await ctx.decode(event, Feedback)
            if fb is None or not ledger.fresh(fb.node_id, msg.partition, kind, msg.offset):
                return
            if not store.claim(f"feedback:{fb.feedback_id}", origin, now):
                metrics.FEEDBACK_DUPLICATES.labels(fb.node_id).inc()
                return
            metrics.FEEDBACK.labels(fb.node_id, fb.kind).inc()
            info = store.turns.get(fb.turn_id, now)
            if info is None:
                fields = fb.model_dump(mode="json")
                ledger.wait(fb.node_id, WaitingFeedback(fields, origin, now + JOIN_WAIT_S))
            else:
                learn(fb, info, now)
        else:
            ann = await ctx.decode(event, TeacherAnnotation)
            if ann is None or ann.label is None:
                return
            if not ledger.fresh(ann.node_id, msg.partition, kind, msg.offset):
                return
            agreed(ann.node_id, agreement.teacher(ann.turn_id, ann.label, now))
            if ann.confidence < s.teacher_min_confidence:
                return
            example_id = f"teacher:{ann.turn_id}"
            if store.claim(example_id, origin, now):
                example = LabelledExample(
                    example_id=example_id,
                    node_id=ann.node_id,
                    turn_id=ann.turn_id,
                    text=ann.text,
                    label=ann.label,
                    source="teacher",
                    confidence=ann.confidence,
                )
                ledger.add(example, now)

    @ctx.app.agent(source, name="feedback")
    async def feedback(stream: Any) -> None:
        async for events in stream.take_events(500, within=0.05):
            async with store.lock:
                store.ensure_loaded()
                now = time.time()
                for event in events:
                    try:
                        await handle(event, now)
                    except Exception as exc:  # one bad record must not stop the feedback loop
                        log.exception("feedback handling failed on a record")
                        await ctx.dead_letter(event, f"feedback handling failed: {exc!r}"[:500])
                # Stored (acknowledged by the broker) before these events are acknowledged,
                # so no committed offset is ahead of the state (rule 1 of
                # learners.feedback_ledger).
                await store.commit()

    # a batch due by age closes at most a quarter of ECC_BATCH_MAX_AGE_S (and 1 s) late
    @ctx.app.timer(interval=min(1.0, s.batch_max_age_s / 4))
    async def tick() -> None:
        if not store.ready:
            return
        async with store.lock:
            store.ensure_loaded()
            now = time.time()
            known = lambda turn_id: store.turns.get(turn_id, now) is not None  # noqa: E731
            behind = await turns_behind() if ledger.has_waiting() else set()
            waited = ledger.take_waiting(now, known, behind, BEHIND_GRACE_S)
            for node_id, item, joined in list(waited):
                fb = Feedback.model_validate(item.feedback)
                info = store.turns.get(fb.turn_id, now)
                if joined and info is not None:
                    learn(fb, info, now)
                    continue
                metrics.JOIN_MISSES.labels(node_id).inc()
                waited_s = now - item.deadline + JOIN_WAIT_S
                topic, partition, offset = item.origin
                await ctx.dead_letter_record(
                    ctx.names(topic),
                    partition,
                    offset,
                    node_id.encode(),
                    fb.dumps(),
                    f"unknown or expired turn {fb.turn_id!r} (waited {waited_s:.0f} s)",
                )
            ledger.due(now)
            store.expire(now)
            await store.commit()
            metrics.FEEDBACK_OPEN.set(ledger.batcher.pending())

    # A rebalance brings partitions whose state is recovered from the changelog before
    # on_rebalance_complete; memory is rebuilt from the table after that, never during.
    @ctx.app.on_partitions_assigned.connect
    async def on_assigned(app: Any, /, *args: Any, signal: Any, **kwargs: Any) -> None:
        store.ready = store.loaded = False
        store.table.forget_reads()

    @ctx.app.on_rebalance_complete.connect
    async def on_recovered(app: Any, /, *args: Any, signal: Any, **kwargs: Any) -> None:
        store.ready = True
