"""Integration fixtures: a real Tansu broker for the session, and a real stream worker."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from learners.edge_node import EdgeNode
from models.registry import AdapterRegistry
from scenarios.generator import BASE_INTENTS, sample
from streams.app import edge_options
from streams.broker import EmbeddedBroker
from streams.kafka import ensure_topics
from streams.processes import spawn, stop
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


def start_worker(
    settings: Settings,
    log: Path,
    timeout: float = 120.0,
    roles: str = "edge,drift,feedback,teacher",
) -> object:
    """An `ecc serve` process on the test broker; returns once partitions are assigned."""
    env = {**os.environ, **settings.to_env(), "PYTHONUNBUFFERED": "1"}
    proc = spawn(
        [sys.executable, "-m", "streams.cli", "serve", "--roles", roles],
        env=env,
        log=log,
        death_signal=signal.SIGKILL,
    )
    marker = settings.state_dir / "worker.ready"
    deadline = time.time() + timeout
    while not marker.exists():
        if proc.poll() is not None:
            raise RuntimeError(f"worker exited {proc.returncode}:\n{log.read_text()[-4000:]}")
        if time.time() > deadline:
            stop(proc)
            raise TimeoutError(f"worker not ready in {timeout} s:\n{log.read_text()[-4000:]}")
        time.sleep(0.2)
    return proc


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
        edge_options(settings),
    )
