"""No injected PII value leaves the edge: a leak scan over every topic of a real run.

A real worker (edge, drift, feedback and teacher roles) serves chat turns full of personal
data: e-mail addresses, phone numbers, payment cards, order and tracking numbers, street
addresses and names. Users give thumbs-down on them (so they become teacher requests, the
one path to the cloud) and corrections (so they become training examples). Then every
record of every topic on the broker (turns, drift events, teacher requests and answers,
training batches, adapter events, dead letters, the agents' changelogs), keys and values,
is scanned for every injected value; only chat.inbound, the edge's own raw input, may hold
them.
"""

from __future__ import annotations

import asyncio
import re
import time
from pathlib import Path
from typing import Any

import pytest
from aiokafka.admin import AIOKafkaAdminClient

from harness.processes import stop
from harness.workers import start_worker
from scenarios.datasets import write_csv
from scenarios.generator import BASE_INTENTS, sample
from streams import topics
from streams.kafka import client_options, ensure_topics, producer, read_all
from streams.schemas import ChatInbound, Feedback, TeacherRequest, TurnBatch, decode
from streams.settings import Settings
from tests.integration.conftest import bootstrap_node

pytestmark = pytest.mark.integration

NODE = "store-pii"

# (customer text, the values in it that must never leave the edge)
TURNS: list[tuple[str, list[str]]] = [
    (
        "my email is jane.doe+shop@example.co.uk, where is my parcel",
        ["jane.doe+shop@example.co.uk"],
    ),
    (
        "call me on +44 20 7946 0958 about order 48213990",
        ["+44 20 7946 0958", "7946 0958", "48213990"],
    ),
    ("card 4111 1111 1111 1111 was charged twice", ["4111 1111 1111 1111", "4111111111111111"]),
    ("ship it to 221B Baker Street please", ["221B Baker Street", "Baker Street"]),
    ("my name is Ann Whitfield and I want a refund", ["Ann Whitfield", "Whitfield"]),
    ("tracking number 1Z999AA10123456784 is not moving", ["1Z999AA10123456784"]),
    ("I am Liam Kowalski, cancel order #77120934 now", ["Liam Kowalski", "Kowalski", "77120934"]),
    ("refund to my card 5555-5555-5555-4444 please", ["5555-5555-5555-4444", "5555555555554444"]),
    (
        "deliver to Hauptstraße 5, Berlin, phone 030 1234567",
        ["Hauptstraße 5", "030 1234567", "1234567"],
    ),
]


async def _all_topics(s: Settings) -> list[str]:
    admin = AIOKafkaAdminClient(**client_options(s))
    await admin.start()
    try:
        return sorted(await admin.list_topics())
    finally:
        await admin.close()


def _served(records: list[Any]) -> set[str]:
    """The turn ids answered in ``records`` of chat.turns."""
    return {t for r in records for t in decode(TurnBatch, r.value).turn_ids}


def test_no_injected_pii_reaches_any_topic_or_the_teacher(
    settings: Settings, tmp_path_factory: pytest.TempPathFactory
) -> None:
    folder = tmp_path_factory.mktemp("pii")
    corpus = folder / "teacher_corpus.csv"
    write_csv(str(corpus), sample(BASE_INTENTS, 8, seed=11))
    s = settings.replace(
        state_dir=folder / "state",
        app_id="ecc-pii-test",
        topic_prefix="pii-test.",
        metrics_port=0,
        teacher_corpus=str(corpus),
        batch_size=4,
        batch_max_age_s=1.0,
    )
    asyncio.run(ensure_topics(s))
    bootstrap_node(s, NODE, seed=5)
    log: Path = folder / "worker.log"
    worker = start_worker(s, log)
    try:

        async def send(topic: str, records: list[bytes]) -> None:
            async with producer(s) as p:
                for value in records:
                    await p.send_and_wait(s.topic_prefix + topic, value, key=NODE.encode())

        inbound = [
            ChatInbound(turn_id=f"pii-{i}", node_id=NODE, text=text).dumps()
            for i, (text, _) in enumerate(TURNS)
        ]
        asyncio.run(send(topics.CHAT_INBOUND, inbound))
        # Every turn served (not just the first): feedback on a turn must find it.
        deadline = time.monotonic() + 120
        while len(_served(asyncio.run(read_all(s, topics.CHAT_TURNS)))) < len(TURNS):
            assert time.monotonic() < deadline, log.read_text()[-3000:]
            time.sleep(1)
        feedback = [
            Feedback(
                feedback_id=f"fb-{kind}-{i}",
                turn_id=f"pii-{i}",
                node_id=NODE,
                kind=kind,  # type: ignore[arg-type]
                label="track_order" if kind == "correction" else None,
            ).dumps()
            for i in range(len(TURNS))
            for kind in ("thumbs_down", "correction")
        ]
        asyncio.run(send(topics.CHAT_FEEDBACK, feedback))

        # The thumbs-downs become teacher requests (and answers); corrections a batch.
        deadline = time.monotonic() + 180
        while True:
            requests = asyncio.run(read_all(s, topics.TEACHER_REQUESTS))
            annotations = asyncio.run(read_all(s, topics.TEACHER_ANNOTATIONS))
            batches = asyncio.run(read_all(s, topics.TRAINING_BATCHES))
            if len(requests) >= len(TURNS) and len(annotations) >= len(TURNS) and batches:
                break
            assert time.monotonic() < deadline, (len(requests), len(annotations), len(batches))
            time.sleep(2)
    finally:
        stop(worker, timeout=20)

    sent_to_teacher = [TeacherRequest.model_validate_json(m.value).text for m in requests]
    assert any("<EMAIL>" in t for t in sent_to_teacher), sent_to_teacher
    values = [v for _, vs in TURNS for v in vs]
    # A value as a whole token: a digit run inside a float or a timestamp is not a leak.
    patterns = {
        v: re.compile(rb"(?<![0-9A-Za-z])" + re.escape(v.encode()) + rb"(?![0-9A-Za-z])")
        for v in values
    }
    scanned = 0
    for topic in asyncio.run(_all_topics(s)):
        if topic == s.topic_prefix + topics.CHAT_INBOUND:
            continue  # the raw input of the edge itself
        if not (topic.startswith(s.topic_prefix) or topic.startswith(s.app_id)):
            continue  # other tests' topics on the shared broker
        for record in asyncio.run(read_all(s.replace(topic_prefix=""), topic, idle_s=0.5)):
            scanned += 1
            blob = (record.key or b"") + b"\n" + (record.value or b"")
            leaked = [v for v, pattern in patterns.items() if pattern.search(blob)]
            assert not leaked, f"{leaked} in {topic}@{record.offset}: {blob[:300]!r}"
    assert scanned > 3 * len(TURNS)
    for text in sent_to_teacher:
        assert not [v for v in values if v in text], text
