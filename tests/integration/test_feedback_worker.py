"""The feedback agent on the real broker, killed with -9 again and again while feedback
flows: every labelling feedback ends in exactly one training batch of its node.

A real `ecc serve --roles feedback` process joins feedback with turn batches of two nodes.
The feedback holds corrections and thumbs-up (labelled examples), thumbs-down and ratings
(no example), clients' repeats of a feedback id (dropped) and feedback for turns nobody
served (dead-lettered after the join wait). The worker gets SIGKILL at several points and
is restarted; the batches it sent (a batch may be sent again after a restart, always with
the same id and examples, which the learner applies once) must hold each expected example
exactly once.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import time
from collections import defaultdict
from pathlib import Path

import numpy as np
import pytest
from aiokafka.coordinator.assignors.roundrobin import RoundRobinPartitionAssignor
from aiokafka.errors import KafkaError

from harness.processes import stop
from harness.workers import start_worker
from streams import topics
from streams.kafka import consumer, producer, read_all
from streams.schemas import DeadLetter, Feedback, TrainingBatch, TurnBatch
from streams.settings import Settings
from tests.integration.conftest import isolated, served_batch

pytestmark = pytest.mark.integration

NODES = ("store-a", "store-b")
TURNS_PER_BATCH = 20
BATCHES_PER_NODE = 10
KINDS = ("correction", "thumbs_up", "thumbs_down", "rating")


def _turn_batches() -> list[TurnBatch]:
    out = []
    for b in range(BATCHES_PER_NODE):
        for node in NODES:
            ids = range(b * TURNS_PER_BATCH, (b + 1) * TURNS_PER_BATCH)
            turns = [(f"{node}-t{t}", f"turn {t} of batch {b} at {node}") for t in ids]
            out.append(served_batch(node, turns))
    return out


def _feedback(batches: list[TurnBatch]) -> tuple[list[Feedback], dict[str, str], list[str]]:
    """Feedback on every turn (kinds in turn), 20 repeats, 4 for unknown turns; returns
    it, the expected examples (example id -> node) and the unknown turns' feedback ids."""
    items: list[Feedback] = []
    expected: dict[str, str] = {}
    for batch in batches:
        for k, turn_id in enumerate(batch.turn_ids):
            kind = KINDS[k % len(KINDS)]
            fb = Feedback(
                feedback_id=f"fb-{turn_id}",
                turn_id=turn_id,
                node_id=batch.node_id,
                kind=kind,
                label="refund_status" if kind == "correction" else None,
                rating=3 if kind == "rating" else None,
            )
            items.append(fb)
            if kind in ("correction", "thumbs_up"):
                expected[f"feedback:{fb.feedback_id}"] = batch.node_id
    items += items[:40:2]  # a client's retries: same ids, later offsets
    unknown = [
        Feedback(
            feedback_id=f"fb-ghost-{i}", turn_id=f"ghost-{i}", node_id="store-a", kind="thumbs_up"
        )
        for i in range(4)
    ]
    return items + unknown, expected, [fb.feedback_id for fb in unknown]


async def _produce(s: Settings, records: list[tuple[str, str, bytes]]) -> None:
    async with producer(s) as p:
        for topic, key, value in records:
            await p.send_and_wait(s.topic_prefix + topic, value, key=key.encode())


def _examples_by_batch(s: Settings) -> dict[str, TrainingBatch]:
    """Distinct training batches by id; a resent batch must equal the first copy."""
    batches: dict[str, TrainingBatch] = {}
    for msg in asyncio.run(read_all(s, topics.TRAINING_BATCHES)):
        batch = TrainingBatch.model_validate_json(msg.value)
        first = batches.setdefault(batch.batch_id, batch)
        assert first.examples == batch.examples, (
            f"batch {batch.batch_id} resent with other examples"
        )
        assert msg.key == batch.node_id.encode()
    return batches


def _wait_for_examples(s: Settings, n: int, timeout: float) -> list[tuple[str, str]]:
    """(example id, node) of every example in a training batch, once there are ``n`` or
    ``timeout`` seconds passed."""
    deadline = time.monotonic() + timeout
    while True:
        batches = _examples_by_batch(s)
        taken = [(e.example_id, b.node_id) for b in batches.values() for e in b.examples]
        if len(taken) >= n or time.monotonic() > deadline:
            return taken
        time.sleep(1)


def test_every_feedback_ends_in_exactly_one_batch_across_kill_9(
    settings: Settings, tmp_path_factory: pytest.TempPathFactory
) -> None:
    s = isolated(
        settings, tmp_path_factory, "feedback", batch_size=8, batch_max_age_s=2.0, log_level="info"
    )
    log: Path = tmp_path_factory.mktemp("feedback-log") / "worker.log"
    turn_batches = _turn_batches()
    items, expected, ghosts = _feedback(turn_batches)
    asyncio.run(_produce(s, [(topics.CHAT_TURNS, b.node_id, b.dumps()) for b in turn_batches]))
    rng = np.random.default_rng(3)
    worker = start_worker(s, log, roles="feedback")
    kills = 0
    try:
        chunks = np.array_split(np.arange(len(items)), 6)
        for chunk in chunks:
            records = [(topics.CHAT_FEEDBACK, items[i].node_id, items[i].dumps()) for i in chunk]
            asyncio.run(_produce(s, records))
            time.sleep(float(rng.uniform(0.2, 2.5)))  # the worker is somewhere in this chunk
            os.kill(worker.pid, signal.SIGKILL)
            worker.wait(10)
            kills += 1
            worker = start_worker(s, log, roles="feedback")

        taken = _wait_for_examples(s, len(expected), timeout=120)
        letters = [
            DeadLetter.model_validate_json(m.value)
            for m in asyncio.run(read_all(s, topics.dlq(topics.CHAT_FEEDBACK), idle_s=20))
        ]
    finally:
        stop(worker, timeout=20)

    counts: dict[str, int] = defaultdict(int)
    for example_id, node in taken:
        counts[example_id] += 1
        assert expected.get(example_id) == node, f"{example_id} in a batch of {node}"
    assert kills == 6
    assert set(counts) == set(expected), (
        f"lost {sorted(set(expected) - set(counts))[:5]}, "
        f"unexpected {sorted(set(counts) - set(expected))[:5]}"
    )
    assert max(counts.values()) == 1, [k for k, v in counts.items() if v > 1][:5]
    missed = sorted(Feedback.model_validate_json(x.original()).feedback_id for x in letters)
    assert missed == sorted(ghosts), missed
    assert all("unknown or expired turn" in x.error for x in letters)


class _AsFaust(RoundRobinPartitionAssignor):
    """Joins a Faust app's group: the broker refuses a member whose protocol differs."""

    name = "faust"


async def _commit_to_end(s: Settings, topic: str, group: str, timeout: float = 60.0) -> None:
    """Join ``group`` (once its killed member is gone) and commit its offsets of every
    partition of ``topic`` to the end, as a worker that skipped those records would have."""
    name = s.topic_prefix + topic
    deadline = time.monotonic() + timeout
    while True:
        try:
            async with consumer(
                s, [name], group_id=group, partition_assignment_strategy=(_AsFaust,)
            ) as c:
                while not c.assignment():
                    await c.getmany(timeout_ms=500)
                    if time.monotonic() > deadline:
                        raise TimeoutError(f"no assignment in group {group}")
                ends = await c.end_offsets(list(c.assignment()))
                await c.commit(dict(ends))
                return
        except KafkaError:
            if time.monotonic() > deadline:
                raise
            await asyncio.sleep(1.0)


def test_a_restart_reads_on_from_the_stored_state_when_the_commit_is_ahead_of_it(
    settings: Settings, tmp_path_factory: pytest.TempPathFactory
) -> None:
    """Where a restarted worker reads on is its stored state's to say: feedback that
    reached the topic while no worker ran, past a committed offset that got ahead of the
    state, is still learnt (streams/transport.py, point 3)."""
    s = isolated(
        settings, tmp_path_factory, "resume", batch_size=4, batch_max_age_s=1.0, log_level="info"
    )
    log: Path = tmp_path_factory.mktemp("resume-log") / "worker.log"
    turns = served_batch("store-r", [(f"r-t{i}", f"turn {i} at store-r") for i in range(40)])
    items = [
        Feedback(feedback_id=f"fb-{t}", turn_id=t, node_id="store-r", kind="thumbs_up")
        for t in turns.turn_ids
    ]
    expected = {f"feedback:{fb.feedback_id}" for fb in items}

    def wait_for(n: int) -> set[str]:
        return {example_id for example_id, _ in _wait_for_examples(s, n, timeout=90)}

    asyncio.run(_produce(s, [(topics.CHAT_TURNS, turns.node_id, turns.dumps())]))
    first = [(topics.CHAT_FEEDBACK, fb.node_id, fb.dumps()) for fb in items[:20]]
    asyncio.run(_produce(s, first))
    worker = start_worker(s, log, roles="feedback")
    try:
        assert len(wait_for(20)) == 20  # learnt, so its state (and position) is stored
        os.kill(worker.pid, signal.SIGKILL)
        worker.wait(10)
        second = [(topics.CHAT_FEEDBACK, fb.node_id, fb.dumps()) for fb in items[20:]]
        asyncio.run(_produce(s, second))
        group = topics.group_id(s.app_id, ["feedback"])
        asyncio.run(_commit_to_end(s, topics.CHAT_FEEDBACK, group))
        worker = start_worker(s, log, roles="feedback")
        got = wait_for(40)
    finally:
        stop(worker, timeout=20)
    assert got == expected, f"lost {sorted(expected - got)[:5]}"


async def _batches_that_left_the_outbox(s: Settings, want: int, timeout: float) -> list[str]:
    """Follow the feedback-state changelog; each time a node record no longer holds a batch
    that an earlier record held in its outbox (the worker has marked it sent), read
    ``training.batches`` at once and name the batches that are not on it. Returns once
    ``want`` batches have left the outbox."""
    (name,) = topics.changelogs(s.app_id, ["feedback"])  # Faust's name: no topic prefix
    in_outbox: set[str] = set()
    left: set[str] = set()
    missing: list[str] = []
    deadline = time.monotonic() + timeout
    async with consumer(s, [name]) as changelog:
        while len(left) < want and time.monotonic() < deadline:
            got = await changelog.getmany(timeout_ms=100)
            gone: set[str] = set()
            for msgs in got.values():
                for m in msgs:
                    if not m.key or not m.key.startswith(b'"node:') or not m.value:
                        continue
                    outbox = {b["batch_id"] for b in json.loads(m.value)["outbox"]}
                    gone |= in_outbox - outbox
                    in_outbox = (in_outbox - gone) | outbox
            if gone:
                sent = {
                    TrainingBatch.model_validate_json(r.value).batch_id
                    for r in await read_all(s, topics.TRAINING_BATCHES, idle_s=0.1)
                }
                missing += sorted(gone - sent)
                left |= gone
    assert len(left) >= want, f"only {len(left)} batches left the outbox in {timeout} s"
    return missing


def test_a_batch_leaves_the_stored_outbox_only_once_it_is_on_the_broker(
    settings: Settings, tmp_path_factory: pytest.TempPathFactory
) -> None:
    """Rule 2 of learners.feedback_ledger, observed from outside: once the stored state no
    longer holds a closed batch, a `kill -9` cannot send it again, so it must already be
    on `training.batches` (it would not be if Faust held sends until the offsets' commit,
    as its `stream_publish_on_commit` does, or if the outbox were stored after the send)."""
    s = isolated(
        settings, tmp_path_factory, "outbox", batch_size=4, batch_max_age_s=600.0, log_level="info"
    )
    log = tmp_path_factory.mktemp("outbox-log") / "worker.log"
    turns = [(f"store-a-o{t}", f"turn {t}") for t in range(12)]
    asyncio.run(
        _produce(s, [(topics.CHAT_TURNS, "store-a", served_batch("store-a", turns).dumps())])
    )
    worker = start_worker(s, log, roles="feedback")
    try:
        fbs = [
            Feedback(feedback_id=f"fb-o{t}", turn_id=t, node_id="store-a", kind="thumbs_up")
            for t, _ in turns
        ]

        async def post_and_watch() -> list[str]:
            watch = asyncio.create_task(_batches_that_left_the_outbox(s, 3, timeout=90))
            for k in range(3):  # three batches closed by size, each inside the agent's loop
                await asyncio.sleep(1.5)
                await _produce(
                    s,
                    [(topics.CHAT_FEEDBACK, "store-a", f.dumps()) for f in fbs[4 * k : 4 * k + 4]],
                )
            return await watch

        missing = asyncio.run(post_and_watch())
    finally:
        stop(worker, timeout=20)
    assert missing == [], f"batches marked sent but not on training.batches: {missing}"
