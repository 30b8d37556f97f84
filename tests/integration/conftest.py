"""Integration fixtures: a real Tansu broker for the session, and a real stream worker."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator

import numpy as np
import pytest

from harness.broker import EmbeddedBroker
from learners.edge_node import EdgeNode
from models.registry import AdapterRegistry
from scenarios.generator import BASE_INTENTS, sample
from streams.kafka import ensure_topics
from streams.schemas import ServedTurn, TurnBatch
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
