"""Fleet learning on the real broker: an intent learnt at one node becomes servable at
another through a fleet prior it adopted, and no text reaches the fleet's topic or files.

One `ecc serve --roles edge` worker holds two nodes; an `ecc serve --roles fleet` worker
(its own consumer group) aggregates their published versions. Store A learns a new intent
from one batch; B has never seen a label of it, receives the prior on fleet.priors, gates
it, and answers the intent.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest

from harness.clients import send_labelled
from harness.processes import stop
from harness.workers import start_worker
from models.registry import FLEET_ID
from scenarios.generator import BASE_INTENTS, sample
from streams import topics
from streams.kafka import consumer
from streams.schemas import FleetPriorReady
from streams.settings import Settings
from tests.integration.conftest import adapter_event, ask, bootstrap_node, isolated

pytestmark = pytest.mark.integration

NEW_INTENT = "gift_card_balance"


async def _read(s: Settings, topic: str, idle_s: float = 3.0) -> list[bytes]:
    """Every record of ``topic`` so far (until it is idle for ``idle_s``)."""
    out: list[bytes] = []
    async with consumer(s, [s.topic_prefix + topic]) as c:
        idle_until = time.monotonic() + idle_s
        while time.monotonic() < idle_until:
            batch = await c.getmany(timeout_ms=300)
            for msgs in batch.values():
                out += [m.value for m in msgs if m.value is not None]
            if batch:
                idle_until = time.monotonic() + idle_s
    return out


def test_an_intent_learnt_at_one_node_is_served_at_another_through_the_fleet(
    settings: Settings, tmp_path_factory: pytest.TempPathFactory
) -> None:
    s = isolated(settings, tmp_path_factory, "fleet", fleet_interval_s=1.0)
    bootstrap_node(s, "store-eu", seed=11, per_intent=8)
    bootstrap_node(s, "store-us", seed=12, per_intent=8)
    logs: Path = tmp_path_factory.mktemp("fleet-log")
    edge = start_worker(s, logs / "edge.log", roles="edge")
    fleet = start_worker(s, logs / "fleet.log", roles="fleet")
    try:
        train = sample([NEW_INTENT], 40, seed=21)
        fresh = sample([NEW_INTENT], 60, seed=22)[40:]  # utterances no node learnt from
        before = asyncio.run(ask(s, "store-us", [e.text for e in fresh], "before"))
        assert all(t.intent != NEW_INTENT for t in before)

        pairs = [(e.text, e.label) for e in train]
        asyncio.run(send_labelled(s, "store-eu", "eu-gift", pairs))
        adoption = adapter_event(s, "store-us", ("published", "rejected"), reason="fleet prior")
        adopted = asyncio.run(adoption)
        assert adopted.status == "published", adopted.reason
        assert adopted.labels_added == [NEW_INTENT]

        after = asyncio.run(ask(s, "store-us", [e.text for e in fresh], "after"))
        hits = sum(t.intent == NEW_INTENT for t in after)
        assert hits >= 0.7 * len(after), f"store-us answered {NEW_INTENT} {hits}/{len(after)}"
        assert all(t.adapter_version == adopted.version for t in after)

        priors = [
            FleetPriorReady.model_validate_json(v)
            for v in asyncio.run(_read(s, topics.FLEET_PRIORS))
        ]
        assert {p.node_id for p in priors} == {"store-eu", "store-us"}
        assert any("store-eu" in p.contributors for p in priors)
    finally:
        stop(edge, timeout=20)
        stop(fleet, timeout=20)

    # Privacy: only weights and counts left the stores. No utterance (trained on, asked,
    # or a seed) is on the fleet's topics or in the fleet's registry folder.
    texts = {e.text for e in [*train, *fresh]} | {
        e.text for seed in (11, 12) for e in sample(BASE_INTENTS, 8, seed=seed)
    }
    records = [
        *asyncio.run(_read(s, topics.FLEET_PRIORS)),
        *asyncio.run(_read(s, topics.ADAPTERS_EVENTS)),
    ]
    files = [
        p.read_bytes() for p in (s.state_dir / "adapters" / FLEET_ID).rglob("*") if p.is_file()
    ]
    assert files and records
    leaks = [t for t in texts for blob in [*records, *files] if t.encode() in blob]
    assert not leaks, f"stream text reached the fleet: {leaks[:3]}"
