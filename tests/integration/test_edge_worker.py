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

from harness.clients import send_labelled
from harness.processes import free_port, stop
from harness.scrape import samples
from harness.workers import start_worker
from models.registry import AdapterRegistry
from scenarios.generator import sample
from streams import topics
from streams.kafka import consumer, ensure_topics, producer
from streams.schemas import ChatInbound, TurnBatch, decode
from streams.settings import Settings
from tests.integration.conftest import adapter_event, ask, bootstrap_node

pytestmark = pytest.mark.integration

NODE = "store-new"
NEW_INTENT = "gift_card_balance"


@pytest.fixture(scope="module")
def edge_settings(settings: Settings, tmp_path_factory: pytest.TempPathFactory) -> Settings:
    state = tmp_path_factory.mktemp("edge-state")
    s = settings.replace(
        state_dir=state,
        app_id="ecc-edge-test",
        topic_prefix="edge-test.",
        metrics_port=free_port(),
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


def test_edge_worker_learns_a_new_intent_and_serves_it(
    edge_worker: Any, edge_settings: Settings
) -> None:
    s = edge_settings
    train = sample([NEW_INTENT], 40, seed=21)
    fresh = sample([NEW_INTENT], 60, seed=21)[40:]  # same intent, utterances not trained on
    before = asyncio.run(ask(s, NODE, [e.text for e in fresh], "before"))
    assert all(t.intent != NEW_INTENT and t.adapter_version == 1 for t in before)

    pairs = [(e.text, e.label) for e in train]
    batch = asyncio.run(send_labelled(s, NODE, "b-new-intent", pairs))
    event = asyncio.run(adapter_event(s, NODE, batch_id=batch.batch_id))
    assert event.status == "published", event.reason
    assert event.labels_added == [NEW_INTENT] and event.version == 2
    assert event.batch_ids == ["b-new-intent"]

    after = asyncio.run(ask(s, NODE, [e.text for e in fresh], "after"))
    assert all(t.adapter_version == 2 for t in after)
    hits = sum(t.intent == NEW_INTENT for t in after)
    assert hits >= 0.8 * len(after), f"only {hits}/{len(after)} answered {NEW_INTENT}"

    # `ecc adapters rollback` on the registry: the running worker follows within seconds
    AdapterRegistry(s.state_dir / "adapters").rollback(NODE)
    rolled = asyncio.run(adapter_event(s, NODE, ("rolled_back",)))
    assert rolled.version == 1
    again = asyncio.run(ask(s, NODE, [e.text for e in fresh[:5]], "rolled"))
    assert all(t.adapter_version == 1 and t.intent != NEW_INTENT for t in again)


STAGES = ("inbound", "queue", "inference", "redact", "encode", "publish")


def _stage_totals(s: Settings) -> dict[str, tuple[float, float]]:
    """(sum of seconds, turns) of every serving stage the worker has observed so far."""
    found = samples(f"http://127.0.0.1:{s.metrics_port}/metrics")
    out: dict[str, tuple[float, float]] = {}
    for stage in STAGES:
        picked = [x for x in found if x.labels.get("stage") == stage]
        total = sum(x.value for x in picked if x.name == "ecc_serve_stage_seconds_sum")
        count = sum(x.value for x in picked if x.name == "ecc_serve_stage_seconds_count")
        out[stage] = (total, count)
    return out


def test_the_serving_stages_account_for_the_time_of_an_answer(
    edge_worker: Any, edge_settings: Settings
) -> None:
    """Turns sent one at a time: every stage is observed for each, and the stages' sum is
    the worker's share of the end-to-end latency (all but the last hop, to this client)."""
    s = edge_settings
    texts = [e.text for e in sample([NEW_INTENT, "track_order"], 10, seed=5)]
    asyncio.run(ask(s, NODE, texts[:2], "stage-warm"))
    before = _stage_totals(s)
    latencies = asyncio.run(_one_at_a_time(s, texts))
    after = _stage_totals(s)
    per_turn = {
        stage: (after[stage][0] - before[stage][0]) / (after[stage][1] - before[stage][1])
        for stage in STAGES
        if after[stage][1] - before[stage][1] >= len(texts)
    }
    assert set(per_turn) == set(STAGES), f"stages not observed for every turn: {per_turn}"
    in_worker = sum(per_turn.values())
    end_to_end = sum(latencies) / len(latencies)
    print(f"stages {per_turn}, sum {in_worker:.4f} s, end to end mean {end_to_end:.4f} s")
    assert 0.5 * end_to_end <= in_worker <= end_to_end


async def _one_at_a_time(s: Settings, texts: list[str]) -> list[float]:
    """Seconds from sending each text to reading its answer, the next sent after."""
    latencies = []
    async with producer(s) as p, consumer(s, [s.topic_prefix + topics.CHAT_TURNS]) as c:
        for i, text in enumerate(texts):
            turn_id = f"stage-{i}"
            started = time.time()
            record = ChatInbound(turn_id=turn_id, node_id=NODE, text=text)
            await p.send_and_wait(
                s.topic_prefix + topics.CHAT_INBOUND, record.dumps(), key=NODE.encode()
            )
            answered = False
            while not answered:
                for msgs in (await c.getmany(timeout_ms=100)).values():
                    for m in msgs:
                        answered |= turn_id in decode(TurnBatch, m.value).turn_ids
                assert time.time() - started < 60, f"{turn_id} was not answered"
            latencies.append(time.time() - started)
    return latencies
