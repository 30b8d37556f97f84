"""One edge worker on the real broker serves many nodes over one shared encoder.

A real `ecc serve --roles edge` process holds at most 3 of 6 nodes (ECC_RESIDENT_NODES),
so answering all six loads and lets nodes go; the turns of all six arrive together and
are answered in mixed micro-batches. One node then learns a new intent: it answers it,
and every other node answers exactly as before, from the version it served before.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import pytest

from harness.clients import send_labelled
from harness.processes import free_port, stop
from harness.scrape import samples
from harness.workers import start_worker
from scenarios.generator import BASE_INTENTS, sample
from streams.schemas import ChatTurn
from streams.settings import Settings
from tests.integration.conftest import adapter_event, ask, bootstrap_node, isolated

pytestmark = pytest.mark.integration

NODES = [f"store-{i}" for i in range(6)]
NEW_INTENT = "gift_card_balance"


@pytest.fixture(scope="module")
def many(settings: Settings, tmp_path_factory: pytest.TempPathFactory) -> Settings:
    # float32: an answer does not depend on what else was in its micro-batch (bf16 rounding
    # does, by about 1e-3, which could flip a near tie between two intents)
    s = isolated(
        settings,
        tmp_path_factory,
        "many",
        resident_nodes=3,
        metrics_port=free_port(),
        model_precision="float32",
    )
    for i, node in enumerate(NODES):
        bootstrap_node(s, node, seed=30 + i, per_intent=4)
    return s


@pytest.fixture(scope="module")
def worker(many: Settings, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    proc = start_worker(many, tmp_path_factory.mktemp("many-log") / "worker.log", roles="edge")
    yield proc
    stop(proc, timeout=20)


async def ask_all(s: Settings, texts: list[str], tag: str) -> dict[str, list[ChatTurn]]:
    """Every node's answers to ``texts``, all sent at once (mixed micro-batches)."""
    answers = await asyncio.gather(*(ask(s, node, texts, f"{tag}-{node}") for node in NODES))
    return dict(zip(NODES, answers, strict=True))


def test_one_node_learns_and_the_others_answer_as_before(worker: Any, many: Settings) -> None:
    s = many
    questions = [e.text for e in sample(BASE_INTENTS, 2, seed=77)][:16]
    fresh = [e.text for e in sample([NEW_INTENT], 50, seed=23)[40:]]
    before = asyncio.run(ask_all(s, questions + fresh, "before"))
    assert all(t.adapter_version == 1 for turns in before.values() for t in turns)

    pairs = [(e.text, e.label) for e in sample([NEW_INTENT], 40, seed=23)[:40]]
    batch = asyncio.run(send_labelled(s, NODES[0], "b-many", pairs))
    event = asyncio.run(adapter_event(s, NODES[0], batch_id=batch.batch_id))
    assert event.status == "published" and event.labels_added == [NEW_INTENT], event.reason

    after = asyncio.run(ask_all(s, questions + fresh, "after"))
    learnt = after[NODES[0]][len(questions) :]
    assert sum(t.intent == NEW_INTENT for t in learnt) >= 0.8 * len(learnt)
    assert all(t.adapter_version == 2 for t in after[NODES[0]])
    for node in NODES[1:]:
        assert all(t.adapter_version == 1 for t in after[node]), node
        assert [t.intent for t in after[node]] == [t.intent for t in before[node]], node
        for old, new in zip(before[node], after[node], strict=True):
            assert new.confidence == pytest.approx(old.confidence, abs=1e-4), node

    found = samples(f"http://127.0.0.1:{s.metrics_port}/metrics")
    value = {x.name: x.value for x in found if not x.labels}
    assert value["ecc_node_evictions_total"] > 0  # 6 nodes through a set of 3
    assert value["ecc_node_load_seconds_count"] > len(NODES)  # let go, then loaded again
    assert value["ecc_resident_nodes"] <= 3 + 1  # (a node learning stays, even over)
