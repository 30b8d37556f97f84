"""A drift worker on the real broker: killed with -9 after an alarm, restarted, it resumes.

A real `ecc serve --roles drift` process scores synthetic turn batches of one node (three
intents with their own embedding clusters). Intent ``track`` then shifts (its turns come
from elsewhere, at low confidence): one alarm. The worker is killed with SIGKILL while more
shifted traffic flows, and restarted. Its state comes back from the ``drift-state`` table:
the intent is still drifting, turn counts go on from where they were (neither reset nor
counted twice), no second alarm is raised for the same shift, and when a new adapter
serves normal traffic again the intent recovers.
"""

from __future__ import annotations

import asyncio
import os
import signal
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from harness.processes import stop
from harness.workers import start_worker
from streams import topics
from streams.kafka import consumer, producer
from streams.schemas import AdapterEvent, DriftEvent, ServedTurn, TurnBatch
from streams.settings import Settings
from tests.integration.conftest import isolated

pytestmark = pytest.mark.integration

NODE = "store-drift"
INTENTS = ("track", "cancel", "refund")
DIM = 32
BATCH = 30


class Traffic:
    """Turn batches of one node: each intent a cluster; ``shifted`` intents elsewhere."""

    def __init__(self) -> None:
        self.rng = np.random.default_rng(5)
        self.centres = {i: np.eye(DIM)[k] for k, i in enumerate(INTENTS)}
        self.sent = 0

    def batch(self, shifted: set[str], version: int = 1) -> TurnBatch:
        intents = [INTENTS[k] for k in self.rng.integers(0, len(INTENTS), BATCH)]
        rows, turns = [], []
        for intent in intents:
            off = intent in shifted
            centre = np.eye(DIM)[10] if off else self.centres[intent]
            v = centre + 0.25 * self.rng.normal(size=DIM)
            rows.append(v / np.linalg.norm(v))
            conf = float(np.clip(self.rng.normal(0.35 if off else 0.9, 0.05), 0, 1))
            self.sent += 1
            turns.append(
                ServedTurn(
                    turn_id=f"t{self.sent}",
                    text="hello",
                    intent=intent,
                    confidence=conf,
                    ts=time.time(),
                )
            )
        return TurnBatch.of(NODE, version, turns, np.stack(rows), served_at=time.time())


async def _send(s: Settings, records: list[tuple[str, bytes]]) -> None:
    async with producer(s) as p:
        for topic, value in records:
            await p.send_and_wait(s.topic_prefix + topic, value, key=NODE.encode())


async def _drift_events(
    s: Settings, until: Callable[[list[DriftEvent]], bool], timeout: float = 120
) -> list[DriftEvent]:
    """Every drift event so far, read from the start until ``until`` holds."""
    events: list[DriftEvent] = []
    async with consumer(s, [s.topic_prefix + topics.DRIFT_EVENTS]) as c:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for msgs in (await c.getmany(timeout_ms=300)).values():
                events += [DriftEvent.model_validate_json(m.value) for m in msgs]
            if until(events):
                return events
    raise AssertionError(f"timed out; last events: {[e.model_dump() for e in events[-5:]]}")


def _alarms(events: list[DriftEvent]) -> list[DriftEvent]:
    return [e for e in events if e.kind == "transition" and e.state == "drifting"]


def _turns_seen(events: list[DriftEvent]) -> int:
    latest = {e.intent: e.turns for e in events if e.kind == "snapshot"}
    return sum(latest.values())


def test_drift_state_survives_a_kill_9(
    settings: Settings, tmp_path_factory: pytest.TempPathFactory
) -> None:
    s = isolated(settings, tmp_path_factory, "drift", drift_snapshot_s=1.0, drift_checkpoint_s=0.5)
    log: Path = tmp_path_factory.mktemp("drift-log") / "worker.log"
    traffic = Traffic()
    turns = [(topics.CHAT_TURNS, traffic.batch(set()).dumps()) for _ in range(60)]
    asyncio.run(_send(s, turns))
    worker = start_worker(s, log, roles="drift")
    try:
        stationary = traffic.sent
        asyncio.run(_drift_events(s, lambda ev: _turns_seen(ev) >= stationary))

        shift = [(topics.CHAT_TURNS, traffic.batch({"track"}).dumps()) for _ in range(10)]
        asyncio.run(_send(s, shift))
        events = asyncio.run(_drift_events(s, lambda ev: len(_alarms(ev)) >= 1))
        (alarm,) = _alarms(events)
        assert alarm.intent == "track" and alarm.previous_state in ("stable", "warning")
        before_kill = traffic.sent

        # More shifted traffic; the worker dies while it is scoring it.
        more = [(topics.CHAT_TURNS, traffic.batch({"track"}).dumps()) for _ in range(40)]
        asyncio.run(_send(s, more))
        os.kill(worker.pid, signal.SIGKILL)
        worker.wait(10)
        worker = start_worker(s, log, roles="drift")
        total = traffic.sent
        events = asyncio.run(_drift_events(s, lambda ev: _turns_seen(ev[-50:]) >= total))
        snap = {e.intent: e for e in events if e.kind == "snapshot"}
        assert snap["track"].state == "drifting", "the alarm state was lost in the restart"
        assert before_kill <= _turns_seen(events[-50:]) <= total, "turns lost or counted twice"
        assert len(_alarms(events)) == 1, "the same shift alarmed twice"

        # A new adapter serves the intent's traffic well again: it recovers.
        published = AdapterEvent(node_id=NODE, status="published", version=2, ts=time.time())
        healed = [(topics.ADAPTERS_EVENTS, published.dumps())]
        healed += [(topics.CHAT_TURNS, traffic.batch(set(), version=2).dumps()) for _ in range(12)]
        asyncio.run(_send(s, healed))
        # Wait for the recovery itself (recovering -> stable), not for any transition to
        # stable: an early warning -> stable flip, before the alarm, would satisfy that.
        events = asyncio.run(
            _drift_events(
                s,
                lambda ev: any(
                    e.intent == "track"
                    and e.kind == "transition"
                    and e.previous_state == "recovering"
                    and e.state == "stable"
                    for e in ev
                ),
            )
        )
        path = [e.state for e in events if e.kind == "transition" and e.intent == "track"]
        after_alarm = path[len(path) - path[::-1].index("drifting") :]
        assert after_alarm == ["recovering", "stable"], path
        assert len(_alarms(events)) == 1
        assert not [e for e in _alarms(events) if e.intent != "track"], "false alarm"
    finally:
        stop(worker, timeout=20)
