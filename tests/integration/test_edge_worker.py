"""An edge worker on the real broker learns a new intent from one batch and then serves it.

A real `ecc serve --roles edge` process with the packaged MiniLM: it serves chat.inbound,
receives a training batch with examples of an intent it has never seen, publishes a new
adapter version (head grown by one row), and answers that intent for new utterances of it.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from typing import Any

import pytest

from harness.processes import stop
from harness.workers import start_worker
from models.registry import AdapterRegistry
from scenarios.generator import sample
from streams import topics
from streams.kafka import consumer, ensure_topics, producer
from streams.schemas import (
    AdapterEvent,
    ChatInbound,
    ChatTurn,
    Example,
    TrainingBatch,
    TurnBatch,
    decode,
)
from streams.settings import Settings
from tests.integration.conftest import bootstrap_node

pytestmark = pytest.mark.integration

NODE = "store-new"
NEW_INTENT = "gift_card_balance"


@pytest.fixture(scope="module")
def edge_settings(settings: Settings, tmp_path_factory: pytest.TempPathFactory) -> Settings:
    state = tmp_path_factory.mktemp("edge-state")
    s = settings.replace(
        state_dir=state, app_id="ecc-edge-test", topic_prefix="edge-test.", metrics_port=0
    )
    asyncio.run(ensure_topics(s))
    bootstrap_node(s, NODE, seed=11, per_intent=8)
    return s


@pytest.fixture(scope="module")
def edge_worker(edge_settings: Settings, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    log = tmp_path_factory.mktemp("edge-log") / "worker.log"
    proc = start_worker(edge_settings, log, roles="edge")
    yield proc
    stop(proc, timeout=20)


async def _ask(s: Settings, texts: list[str], tag: str, timeout: float = 90) -> list[ChatTurn]:
    """Send ``texts`` to the node and wait for every answer on chat.turns."""
    ids = {f"{tag}-{i}" for i in range(len(texts))}
    async with producer(s) as p:
        for i, text in enumerate(texts):
            record = ChatInbound(turn_id=f"{tag}-{i}", node_id=NODE, text=text)
            await p.send(s.topic_prefix + topics.CHAT_INBOUND, record.dumps(), key=NODE.encode())
        await p.flush()
    got: dict[str, ChatTurn] = {}
    async with consumer(s, [s.topic_prefix + topics.CHAT_TURNS]) as c:
        deadline = time.monotonic() + timeout
        while ids - set(got) and time.monotonic() < deadline:
            for msgs in (await c.getmany(timeout_ms=300)).values():
                for m in msgs:
                    for turn in decode(TurnBatch, m.value).chat_turns():
                        if turn.turn_id in ids:
                            got[turn.turn_id] = turn
    assert set(got) == ids, f"{len(ids - set(got))} turns were not answered"
    return [got[f"{tag}-{i}"] for i in range(len(texts))]


async def _published(
    s: Settings,
    statuses: tuple[str, ...] = ("published", "rejected", "skipped"),
    batch_id: str | None = None,
    timeout: float = 180,
) -> AdapterEvent:
    """The first adapter event of the node with one of ``statuses`` (and, given a
    ``batch_id``, the decision on that batch: not an earlier event of the same kind)."""
    async with consumer(s, [s.topic_prefix + topics.ADAPTERS_EVENTS]) as c:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for msgs in (await c.getmany(timeout_ms=300)).values():
                for m in msgs:
                    event = AdapterEvent.model_validate_json(m.value)
                    if (
                        event.node_id == NODE
                        and event.status in statuses
                        and (batch_id is None or batch_id in event.batch_ids)
                    ):
                        return event
    raise TimeoutError(f"no adapter event {statuses}")


def test_edge_worker_learns_a_new_intent_and_serves_it(
    edge_worker: Any, edge_settings: Settings
) -> None:
    s = edge_settings
    train = sample([NEW_INTENT], 40, seed=21)
    fresh = sample([NEW_INTENT], 60, seed=21)[40:]  # same intent, utterances not trained on
    before = asyncio.run(_ask(s, [e.text for e in fresh], "before"))
    assert all(t.intent != NEW_INTENT and t.adapter_version == 1 for t in before)

    batch = TrainingBatch(
        batch_id="b-new-intent",
        node_id=NODE,
        examples=[
            Example(
                example_id=f"ex-{i}",
                turn_id=f"t-{i}",
                text=e.text,
                label=e.label,
                source="feedback",
            )
            for i, e in enumerate(train)
        ],
        created_at=time.time(),
    )

    async def send_batch() -> None:
        async with producer(s) as p:
            await p.send_and_wait(
                s.topic_prefix + topics.TRAINING_BATCHES, batch.dumps(), key=NODE.encode()
            )

    asyncio.run(send_batch())
    event = asyncio.run(_published(s, batch_id=batch.batch_id))
    assert event.status == "published", event.reason
    assert event.labels_added == [NEW_INTENT] and event.version == 2
    assert event.batch_ids == ["b-new-intent"]

    after = asyncio.run(_ask(s, [e.text for e in fresh], "after"))
    assert all(t.adapter_version == 2 for t in after)
    hits = sum(t.intent == NEW_INTENT for t in after)
    assert hits >= 0.8 * len(after), f"only {hits}/{len(after)} answered {NEW_INTENT}"

    # `ecc adapters rollback` on the registry: the running worker follows within seconds
    AdapterRegistry(s.state_dir / "adapters").rollback(NODE)
    rolled = asyncio.run(_published(s, ("rolled_back",)))
    assert rolled.version == 1
    again = asyncio.run(_ask(s, [e.text for e in fresh[:5]], "rolled"))
    assert all(t.adapter_version == 1 and t.intent != NEW_INTENT for t in again)
