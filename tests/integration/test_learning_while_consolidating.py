"""A label posted to the webhook changes what the node serves within seconds, while a LoRA
consolidation of that node runs in the same worker.

Real `ecc webhook` and `ecc serve --roles edge,feedback` processes on the real broker, the
packaged MiniLM. A first training batch starts a consolidation that outlasts the test
(``ECC_CONSOLIDATE_STEPS`` huge); a customer's turn is answered wrongly; the user's
correction (an intent the node has never seen) is posted to the webhook; from its
acknowledgement, the same text is sent again and again until the node answers it with the
corrected intent. The consolidation is still running then, and the worker stops promptly
(the consolidation gives up).
"""

from __future__ import annotations

import asyncio
import json
import time
import urllib.request
from collections.abc import Iterator
from typing import Any

import pytest

from harness.clients import send_labelled
from harness.processes import free_port, stop
from harness.workers import start_webhook, start_worker
from learners.holdout import HoldoutRouter
from scenarios.generator import BASE_INTENTS, sample
from streams import topics
from streams.kafka import consumer, producer, read_all
from streams.schemas import AdapterEvent, ChatInbound, TurnBatch, decode
from streams.settings import Settings
from streams.webhook.signing import sign
from tests.integration.conftest import adapter_event, ask, bootstrap_node, isolated

pytestmark = pytest.mark.integration

NODE = "store-busy"
NEW_INTENT = "gift_card_balance"
SECRET = "s3cret-busy"
SERVED_WITHIN_S = 5.0  # the bound: acknowledgement to a changed answer


@pytest.fixture(scope="module")
def busy_settings(settings: Settings, tmp_path_factory: pytest.TempPathFactory) -> Settings:
    s = isolated(
        settings,
        tmp_path_factory,
        "busy",
        webhook_host="127.0.0.1",
        webhook_port=free_port("127.0.0.1"),
        webhook_secrets=f"crm={SECRET}",
        consolidate_every=4,
        consolidate_steps=1_000_000,  # runs for the whole test
    )
    bootstrap_node(s, NODE, seed=31, per_intent=8)
    return s


@pytest.fixture(scope="module")
def processes(
    busy_settings: Settings, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[Any, str]]:
    logs = tmp_path_factory.mktemp("busy-logs")
    worker = start_worker(busy_settings, logs / "worker.log", roles="edge,feedback")
    hook, url = start_webhook(busy_settings, logs / "webhook.log")
    try:
        yield worker, url
    finally:
        stop(hook)
        stop(worker, timeout=30)


def _post(url: str, body: dict[str, Any]) -> int:
    raw = json.dumps(body).encode()
    headers = {
        "Content-Type": "application/json",
        "X-ECC-Client": "crm",
        "X-ECC-Signature": sign(SECRET.encode(), raw, int(time.time())),
    }
    request = urllib.request.Request(url + "/v1/feedback", data=raw, headers=headers)
    with urllib.request.urlopen(request, timeout=30) as answer:
        return int(answer.status)


async def _first_answer_as(
    s: Settings, text: str, intent: str, timeout: float = 60, every_s: float = 0.25
) -> float:
    """Send ``text`` every ``every_s`` seconds; the send time of the first turn the node
    answers with ``intent``."""
    sent: dict[str, float] = {}
    async with producer(s) as p, consumer(s, [s.topic_prefix + topics.CHAT_TURNS]) as c:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            turn_id = f"probe-{len(sent)}"
            record = ChatInbound(turn_id=turn_id, node_id=NODE, text=text)
            sent[turn_id] = time.monotonic()
            await p.send(s.topic_prefix + topics.CHAT_INBOUND, record.dumps(), key=NODE.encode())
            for msgs in (await c.getmany(timeout_ms=int(every_s * 1000))).values():
                for m in msgs:
                    for turn in decode(TurnBatch, m.value).chat_turns():
                        if turn.turn_id in sent and turn.intent == intent:
                            return sent[turn.turn_id]
    raise TimeoutError(f"the node never answered {intent!r} for {text!r}")


def _held_out(s: Settings, example_id: str) -> bool:
    return HoldoutRouter(s.holdout_every).is_holdout(example_id)


def test_a_posted_label_serves_within_seconds_while_lora_consolidates(
    processes: tuple[Any, str], busy_settings: Settings
) -> None:
    worker, url = processes
    s = busy_settings
    start = sample(BASE_INTENTS[:3], 4, seed=41)
    asyncio.run(send_labelled(s, NODE, "b-kick", [(e.text, e.label) for e in start]))
    began = asyncio.run(adapter_event(s, NODE, ("consolidating",)))
    assert began.metrics["memory_size"] > 0 and began.version == 2  # after the kick batch

    text = sample([NEW_INTENT], 1, seed=43)[0].text
    [turn] = asyncio.run(ask(s, NODE, [text], "customer"))
    assert turn.intent != NEW_INTENT
    feedback_id = next(f"fix-{i}" for i in range(100) if not _held_out(s, f"feedback:fix-{i}"))
    correction = {
        "feedback_id": feedback_id,
        "turn_id": turn.turn_id,
        "node_id": NODE,
        "kind": "correction",
        "label": NEW_INTENT,
    }
    assert _post(url, correction) == 202
    acknowledged = time.monotonic()
    delay = asyncio.run(_first_answer_as(s, text, NEW_INTENT)) - acknowledged
    print(f"acknowledged label to a changed answer: {delay:.2f} s")
    assert delay <= SERVED_WITHIN_S, f"the label changed the answer {delay:.1f} s after"

    events = _adapter_events(s)
    assert any(NEW_INTENT in e.labels_added and e.status == "published" for e in events)
    ended = [e for e in events if e.status in ("published", "rejected") and not e.batch_ids]
    assert not ended, f"the consolidation was meant to outlast the label: {ended}"
    stopped = time.monotonic()
    assert stop(worker, timeout=30) == 0
    assert time.monotonic() - stopped < 30


def _adapter_events(s: Settings) -> list[AdapterEvent]:
    records = asyncio.run(read_all(s, topics.ADAPTERS_EVENTS, idle_s=1.5))
    return [AdapterEvent.model_validate_json(m.value) for m in records]
