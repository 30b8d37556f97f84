"""`ecc lag` on the real broker: the edge group's true lag on chat.inbound grows while its
worker is stopped (a worker's own lag gauge cannot, it is gone) and drains to 0 once a
worker runs again. Records are produced one per batch, the way the embedded broker reports
end offsets right (streams/lag.py)."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time

import pytest

from harness.processes import stop
from harness.workers import start_worker
from streams import topics
from streams.kafka import producer
from streams.lag import LagReader, by_topic
from streams.schemas import ChatInbound
from streams.settings import Settings
from tests.integration.conftest import ask, bootstrap_node, isolated

pytestmark = pytest.mark.integration

NODE = "store-lag"


async def send_one_by_one(s: Settings, tag: str, n: int) -> None:
    async with producer(s) as p:
        for i in range(n):
            record = ChatInbound(turn_id=f"{tag}-{i}", node_id=NODE, text="where is my parcel")
            await p.send_and_wait(
                s.topic_prefix + topics.CHAT_INBOUND, record.dumps(), key=NODE.encode()
            )


def ecc_lag(s: Settings, group: str) -> int:
    """`ecc lag --json --group GROUP` as a user runs it: the group's lag on chat.inbound."""
    done = subprocess.run(
        [sys.executable, "-m", "streams.cli", "lag", "--json", "--group", group],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, **s.to_env()},
    )
    assert done.returncode == 0, done.stderr[-2000:]
    rows = [json.loads(line) for line in done.stdout.splitlines()]
    return sum(r["lag"] for r in rows if r["topic"] == topics.CHAT_INBOUND)


def test_lag_grows_while_the_worker_is_stopped_and_drains_after(
    settings: Settings, tmp_path_factory: pytest.TempPathFactory
) -> None:
    s = isolated(settings, tmp_path_factory, "lag")
    bootstrap_node(s, NODE, seed=4, per_intent=4)
    group = f"{s.app_id}-edge"
    log = tmp_path_factory.mktemp("lag-log") / "worker.log"
    worker = start_worker(s, log, roles="edge")
    try:
        asyncio.run(ask(s, NODE, ["hello, where is my order"], "lag-warm"))
    finally:
        stop(worker, timeout=30)
    before = ecc_lag(s, group)  # (0 if the stop committed all it answered)

    asyncio.run(send_one_by_one(s, "down-a", 10))
    assert ecc_lag(s, group) == before + 10
    asyncio.run(send_one_by_one(s, "down-b", 15))
    assert ecc_lag(s, group) == before + 25

    worker = start_worker(s, log, roles="edge")
    reader = LagReader(s, [group])
    try:
        deadline = time.monotonic() + 120
        lag = -1
        while time.monotonic() < deadline:
            lag = by_topic(reader.read()).get((group, topics.CHAT_INBOUND), -1)
            if lag == 0:
                break
            time.sleep(1)
        assert lag == 0, f"the lag did not drain: {lag}"
    finally:
        reader.close()
        stop(worker, timeout=30)
