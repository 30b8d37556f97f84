"""Integration fixtures: a real Tansu broker for the session, and a real stream worker."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from harness.broker import EmbeddedBroker
from learners.edge_node import EdgeNode
from models.registry import AdapterRegistry
from scenarios.generator import BASE_INTENTS, sample
from streams import topics
from streams.kafka import consumer, ensure_topics, producer
from streams.schemas import AdapterEvent, ChatInbound, ChatTurn, ServedTurn, TurnBatch, decode
from streams.settings import Settings

pytestmark = pytest.mark.integration


@pytest.fixture(scope="session")
def broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedBroker]:
    log = tmp_path_factory.mktemp("broker") / "tansu.log"
    with EmbeddedBroker(log=log) as b:
        yield b


@pytest.fixture(scope="session")
def settings(broker: EmbeddedBroker, tmp_path_factory: pytest.TempPathFactory) -> Settings:
    s = Settings(broker=broker.bootstrap, state_dir=tmp_path_factory.mktemp("state"))
    asyncio.run(ensure_topics(s))
    return s


def isolated(
    settings: Settings, tmp_path_factory: pytest.TempPathFactory, name: str, **changes: Any
) -> Settings:
    """``settings`` for one test's workers: their own state dir, app id (consumer groups
    and changelogs) and topic prefix, no metrics port, with ``changes`` (which win); topics
    created."""
    s = settings.replace(
        **{
            "state_dir": tmp_path_factory.mktemp(f"{name}-state"),
            "app_id": f"ecc-{name}-test",
            "topic_prefix": f"{name}-test.",
            "metrics_port": 0,
            **changes,
        }
    )
    asyncio.run(ensure_topics(s))
    return s


def served_batch(
    node_id: str, turns: list[tuple[str, str]], intent: str = "track_order"
) -> TurnBatch:
    """What an edge node publishes for ``turns`` ((turn id, redacted text), all predicted
    as ``intent``), for tests that need turns to join with but no model."""
    served = [
        ServedTurn(turn_id=t, text=text, intent=intent, confidence=0.8, ts=time.time())
        for t, text in turns
    ]
    return TurnBatch.of(node_id, 1, served, np.zeros((len(served), 8)), time.time())


def bootstrap_node(settings: Settings, node_id: str, seed: int, per_intent: int = 5) -> None:
    """Give ``node_id`` its first adapter version from generated examples of every base
    intent (what `ecc node init` does from a CSV)."""
    seeds = sample(BASE_INTENTS, per_intent, seed=seed)
    EdgeNode.bootstrap(
        node_id,
        AdapterRegistry(settings.state_dir / "adapters"),
        settings.state_dir,
        [e.text for e in seeds],
        [e.label for e in seeds],
        settings.edge_options(),
    )


async def ask(
    s: Settings, node: str, texts: list[str], tag: str, timeout: float = 90
) -> list[ChatTurn]:
    """Send ``texts`` to edge node ``node`` and wait for every answer on chat.turns."""
    ids = {f"{tag}-{i}" for i in range(len(texts))}
    async with producer(s) as p:
        for i, text in enumerate(texts):
            record = ChatInbound(turn_id=f"{tag}-{i}", node_id=node, text=text)
            await p.send(s.topic_prefix + topics.CHAT_INBOUND, record.dumps(), key=node.encode())
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


async def adapter_event(
    s: Settings,
    node: str,
    statuses: tuple[str, ...] = ("published", "rejected", "skipped"),
    batch_id: str | None = None,
    timeout: float = 180,
    reason: str = "",
) -> AdapterEvent:
    """The first adapter event of ``node`` with one of ``statuses`` (and, given a
    ``batch_id``, the decision on that batch: not an earlier event of the same kind; given
    a ``reason``, one whose reason says it)."""
    async with consumer(s, [s.topic_prefix + topics.ADAPTERS_EVENTS]) as c:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for msgs in (await c.getmany(timeout_ms=300)).values():
                for m in msgs:
                    event = AdapterEvent.model_validate_json(m.value)
                    if (
                        event.node_id == node
                        and event.status in statuses
                        and (batch_id is None or batch_id in event.batch_ids)
                        and reason in event.reason
                    ):
                        return event
    raise TimeoutError(f"no adapter event {statuses}")


def quick_bench(
    name: str, out: Path, report: str, timeout: float = 600
) -> tuple[dict[str, Any], str]:
    """``ecc bench NAME --quick --out OUT`` as a user runs it: its JSON report ``report``
    (a path under ``out``) and what it printed; fails with the end of its output if it
    exits non-zero."""
    done = subprocess.run(
        [sys.executable, "-m", "streams.cli", "bench", name, "--quick", "--out", str(out)],
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    assert done.returncode == 0, (done.stdout + done.stderr)[-4000:]
    return json.loads((out / report).read_text()), done.stdout
