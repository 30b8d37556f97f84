"""Malformed records on every input topic land in its DLQ with a reason, and the worker
keeps serving afterwards (a real `ecc serve` process on the real broker)."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from harness.processes import stop
from harness.workers import start_worker
from scenarios.datasets import write_csv
from scenarios.generator import BASE_INTENTS, sample
from streams import topics
from streams.kafka import consumer, producer
from streams.schemas import ChatInbound, ChatTurn, DeadLetter, TurnBatch, decode
from streams.settings import Settings
from tests.integration.conftest import bootstrap_node

pytestmark = pytest.mark.integration

# What each input topic gets: bytes that are not UTF-8, not JSON, JSON of an unknown schema
# version, fields of the wrong types, and a huge field (200 kB).
BAD_RECORDS = [
    b"\xff\xfe garbage",
    b"{not json",
    json.dumps({"schema_version": 9}).encode(),
    json.dumps({"schema_version": 1, "turn_id": 5, "node_id": ["store-t"], "text": 7}).encode(),
    json.dumps(
        {"schema_version": 1, "turn_id": "h", "node_id": "store-t", "text": "x" * 200_000}
    ).encode(),
]
INPUT_TOPICS = [
    topics.CHAT_INBOUND,
    topics.CHAT_TURNS,
    topics.CHAT_FEEDBACK,
    topics.DRIFT_EVENTS,
    topics.TEACHER_REQUESTS,
    topics.TEACHER_ANNOTATIONS,
    topics.TRAINING_BATCHES,
    topics.ADAPTERS_EVENTS,
]


@pytest.fixture(scope="module")
def worker_settings(settings: Settings, tmp_path_factory: pytest.TempPathFactory) -> Settings:
    state = tmp_path_factory.mktemp("dlq-state")
    corpus = state / "corpus.csv"
    write_csv(corpus, sample(BASE_INTENTS, 10, seed=2))
    s = settings.replace(
        state_dir=state, app_id="ecc-dlq-test", teacher_corpus=str(corpus), metrics_port=0
    )
    bootstrap_node(s, "store-t", seed=1)
    return s


@pytest.fixture(scope="module")
def worker(worker_settings: Settings, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    log = tmp_path_factory.mktemp("dlq-log") / "worker.log"
    proc = start_worker(worker_settings, log)
    yield proc
    stop(proc, timeout=20)


async def _collect(s: Settings, names: list[str], want: int, timeout: float) -> list[Any]:
    got: list[Any] = []
    async with consumer(s, names) as c:
        deadline = time.monotonic() + timeout
        while len(got) < want and time.monotonic() < deadline:
            for msgs in (await c.getmany(timeout_ms=300)).values():
                got.extend(msgs)
    return got


def test_malformed_records_go_to_their_dlq_and_the_worker_keeps_serving(
    worker: Any, worker_settings: Settings
) -> None:
    s = worker_settings

    async def scenario() -> tuple[list[DeadLetter], list[ChatTurn]]:
        async with producer(s) as p:
            for topic in INPUT_TOPICS:
                for raw in BAD_RECORDS:
                    await p.send_and_wait(topic, raw, key=b"store-t")
            good = ChatInbound(turn_id="ok-1", node_id="store-t", text="where is my order #48213?")
            await p.send_and_wait(topics.CHAT_INBOUND, good.dumps(), key=b"store-t")
        want = len(INPUT_TOPICS) * len(BAD_RECORDS)
        letters = await _collect(s, [topics.dlq(t) for t in INPUT_TOPICS], want, 90)
        # chat.turns also holds the bad records sent to it: wait for those and the answer
        turns = await _collect(s, [topics.CHAT_TURNS], len(BAD_RECORDS) + 1, 60)
        return (
            [DeadLetter.model_validate_json(m.value) for m in letters],
            [
                turn
                for m in turns
                if m.value[:1] == b"{" and b"ok-1" in m.value
                for turn in decode(TurnBatch, m.value).chat_turns()
            ],
        )

    letters, turns = asyncio.run(scenario())
    by_topic: dict[str, list[DeadLetter]] = {}
    for letter in letters:
        by_topic.setdefault(letter.source_topic, []).append(letter)
    for topic in INPUT_TOPICS:
        got = by_topic.get(topic, [])
        assert sorted(letter.original() for letter in got) == sorted(BAD_RECORDS), topic
        reasons = " | ".join(letter.error for letter in got)
        assert "not UTF-8" in reasons and "not JSON" in reasons, reasons
        assert "unsupported schema_version 9" in reasons or "field required" in reasons.lower()
    assert len(letters) == len(INPUT_TOPICS) * len(BAD_RECORDS), (
        "a bad record was dead-lettered twice"
    )
    assert turns and turns[0].turn_id == "ok-1"
    assert "<ORDER_ID>" in turns[0].text and "48213" not in turns[0].text
    assert Path(worker_settings.state_dir / "worker.ready").exists()
