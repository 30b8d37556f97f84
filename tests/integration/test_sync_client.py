"""The synchronous kafka-python client against a real edge worker on the real broker: each
message gets its answer, a message for a node that does not exist is refused with the
worker's reason (not a hang), a bad message is refused before it is sent, and no worker
at all is a timeout that says what to check."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import Any

import pytest

from harness.processes import stop
from harness.workers import start_worker
from learners.edge_node import EdgeNode
from models.registry import AdapterRegistry
from scenarios.generator import sample
from streams.clients import ChatClient, TurnRefused
from streams.settings import Settings
from tests.integration.conftest import bootstrap_node, isolated

pytestmark = pytest.mark.integration

NODE = "store-sync"


@pytest.fixture(scope="module")
def sync_settings(settings: Settings, tmp_path_factory: pytest.TempPathFactory) -> Settings:
    # float32: an answer does not depend on what else was in its micro-batch (bf16 rounding
    # does, by about 1e-3), so the worker's answers can be compared with this process's
    s = isolated(settings, tmp_path_factory, "sync", model_precision="float32")
    bootstrap_node(s, NODE, seed=3, per_intent=6)
    return s


@pytest.fixture(scope="module")
def worker(sync_settings: Settings, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    log = tmp_path_factory.mktemp("sync-log") / "worker.log"
    proc = start_worker(sync_settings, log, roles="edge")
    yield proc
    stop(proc, timeout=20)


def test_each_message_gets_its_answer(worker: Any, sync_settings: Settings) -> None:
    s = sync_settings
    examples = sample(["track_order", "cancel_order", "refund_status"], 4, seed=8)
    with ChatClient(s, timeout_s=60) as chat:
        answers = [chat.ask(NODE, e.text) for e in examples]
    assert all(a.node_id == NODE and a.adapter_version == 1 for a in answers)
    assert len({a.turn_id for a in answers}) == len(examples)
    # what the node's served version answers to the same texts, here
    node = EdgeNode(NODE, AdapterRegistry(s.state_dir / "adapters"), s.state_dir, s.edge_options())
    local, _ = node.predict([e.text for e in examples])
    assert [a.intent for a in answers] == [p.intent for p in local]
    for answer, mine in zip(answers, local, strict=True):
        assert answer.confidence == pytest.approx(mine.confidence, abs=1e-4)


def test_clients_in_threads_each_get_their_own_answers(
    worker: Any, sync_settings: Settings
) -> None:
    got: dict[str, str] = {}

    def one(i: int) -> None:
        with ChatClient(sync_settings, timeout_s=60) as chat:
            got[f"thread-{i}"] = chat.ask(NODE, "where is my parcel", turn_id=f"thread-{i}").turn_id

    threads = [threading.Thread(target=one, args=(i,)) for i in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(90)
    assert got == {f"thread-{i}": f"thread-{i}" for i in range(3)}


def test_a_message_for_an_unknown_node_is_refused_with_the_reason(
    worker: Any, sync_settings: Settings
) -> None:
    with ChatClient(sync_settings, timeout_s=60) as chat:
        with pytest.raises(TurnRefused, match="ecc node init"):
            chat.ask("store-nobody", "hello there")
        with pytest.raises(ValueError, match="text"):
            chat.ask(NODE, "")  # refused by the schema: nothing sent


def test_no_worker_is_a_timeout_that_says_what_to_check(
    settings: Settings, tmp_path_factory: pytest.TempPathFactory
) -> None:
    s = isolated(settings, tmp_path_factory, "sync-idle")
    with ChatClient(s) as chat, pytest.raises(TimeoutError, match="is an edge worker"):
        chat.ask(NODE, "anyone there?", timeout_s=2)
