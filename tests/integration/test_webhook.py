"""The feedback webhook through real HTTP, on its own real broker (it gets stopped here).

A real `ecc webhook` process and a real `ecc serve --roles feedback` worker: signed
feedback flows to a training batch of its node; unsigned, badly signed, stale, oversized
and malformed requests are refused with their status and produce nothing; a repeated
feedback id is produced once; with the broker stopped the webhook answers 503 with
Retry-After, and once the broker is back the retried request is accepted.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given
from hypothesis import settings as hyp_settings
from hypothesis import strategies as st

from harness.broker import EmbeddedBroker
from harness.processes import free_port, stop
from harness.workers import start_webhook, start_worker
from streams import topics
from streams.kafka import ensure_topics, producer, read_all
from streams.schemas import TrainingBatch
from streams.settings import Settings
from streams.webhook.requests import MAX_BATCH, MAX_BODY_BYTES
from streams.webhook.signing import sign
from tests.integration.conftest import served_batch

pytestmark = pytest.mark.integration

SECRET = b"s3cret-crm"
NODE = "store-hook"


@pytest.fixture(scope="module")
def hook_broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedBroker]:
    with EmbeddedBroker(log=tmp_path_factory.mktemp("hook-broker") / "tansu.log") as b:
        yield b


@pytest.fixture(scope="module")
def hook_settings(
    hook_broker: EmbeddedBroker, tmp_path_factory: pytest.TempPathFactory
) -> Settings:
    s = Settings(
        broker=hook_broker.bootstrap,
        state_dir=tmp_path_factory.mktemp("hook-state"),
        app_id="ecc-hook-test",
        metrics_port=0,
        webhook_host="127.0.0.1",
        webhook_port=free_port("127.0.0.1"),
        webhook_secrets=f"crm={SECRET.decode()},widget=other-secret",
        webhook_produce_timeout_s=2.0,
        webhook_retry_after_s=1,
        batch_size=4,
        batch_max_age_s=1.0,
    )
    asyncio.run(ensure_topics(s))
    return s


@pytest.fixture(scope="module")
def hook_log(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("hook-log") / "webhook.log"


@pytest.fixture(scope="module")
def webhook(hook_settings: Settings, hook_log: Path) -> Iterator[str]:
    proc, url = start_webhook(hook_settings, hook_log)
    try:
        yield url
    finally:
        stop(proc)


def post(
    url: str,
    body: bytes | dict[str, Any],
    path: str = "/v1/feedback",
    secret: bytes | None = SECRET,
    client: str | None = "crm",
    timestamp: int | None = None,
    content_type: str = "application/json",
    headers: dict[str, str] | None = None,
) -> tuple[int, dict[str, Any], dict[str, str]]:
    """POST signed (unless ``secret`` is None); returns (status, JSON body, headers)."""
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    h = {"Content-Type": content_type, **(headers or {})}
    if client is not None:
        h["X-ECC-Client"] = client
    if secret is not None:
        h["X-ECC-Signature"] = sign(secret, raw, timestamp or int(time.time()))
    request = urllib.request.Request(url + path, data=raw, headers=h, method="POST")
    try:
        with urllib.request.urlopen(request, timeout=30) as r:
            return r.status, json.loads(r.read()), dict(r.headers)
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read() or b"{}"), dict(exc.headers)


def feedback(fid: str, turn: str = "t1", kind: str = "thumbs_up", **extra: Any) -> dict[str, Any]:
    return {"feedback_id": fid, "turn_id": turn, "node_id": NODE, "kind": kind, **extra}


def retry_until_accepted(webhook: str, fid: str, timeout_s: float = 60) -> dict[str, Any]:
    """What a client does after a 503: retry the same feedback until a 202."""
    deadline = time.monotonic() + timeout_s
    while True:
        status, body, _ = post(webhook, feedback(fid))
        if status == 202:
            return body
        assert time.monotonic() < deadline, (status, body)
        time.sleep(1)


def produced_ids(s: Settings) -> list[str]:
    return [
        json.loads(m.value)["feedback_id"]
        for m in asyncio.run(read_all(s, topics.CHAT_FEEDBACK, idle_s=1.5))
    ]


def test_signed_feedback_reaches_a_training_batch_of_its_node(
    webhook: str, hook_settings: Settings, tmp_path_factory: pytest.TempPathFactory
) -> None:
    s = hook_settings
    batch = served_batch(NODE, [(f"w-t{i}", f"where is parcel {i}") for i in range(4)])

    async def send_turns() -> None:
        async with producer(s) as p:
            await p.send_and_wait(topics.CHAT_TURNS, batch.dumps(), key=NODE.encode())

    asyncio.run(send_turns())
    worker = start_worker(
        s, tmp_path_factory.mktemp("hook-worker") / "worker.log", roles="feedback"
    )
    try:
        status, body, _ = post(
            webhook,
            {
                "feedback": [
                    feedback("ok-1", "w-t1", "correction", label="refund_status"),
                    feedback("ok-2", "w-t2", "thumbs_up"),
                    feedback("ok-3", "w-t3", "thumbs_down"),
                ]
            },
            path="/v1/feedback/batch",
        )
        assert status == 202, body
        assert body == {"accepted": ["ok-1", "ok-2", "ok-3"], "duplicates": []}
        # The client retries one of them: acknowledged, not learnt twice.
        again = post(webhook, feedback("ok-1", "w-t1", "correction", label="refund_status"))
        assert again[:2] == (202, {"accepted": [], "duplicates": ["ok-1"]})
        deadline = time.monotonic() + 60
        examples: dict[str, tuple[str, str, str]] = {}
        while len(examples) < 2 and time.monotonic() < deadline:
            for m in asyncio.run(read_all(s, topics.TRAINING_BATCHES, idle_s=1.5)):
                b = TrainingBatch.model_validate_json(m.value)
                examples |= {e.example_id: (b.node_id, e.text, e.label) for e in b.examples}
        time.sleep(2 * s.batch_max_age_s)  # a second copy would have been batched by now
        for m in asyncio.run(read_all(s, topics.TRAINING_BATCHES, idle_s=1.5)):
            b = TrainingBatch.model_validate_json(m.value)
            ids = [e.example_id for e in b.examples]
            assert len(ids) == len(set(ids)) and set(ids) <= set(examples), ids
        assert examples == {
            "feedback:ok-1": (NODE, "where is parcel 1", "refund_status"),
            "feedback:ok-2": (NODE, "where is parcel 2", "track_order"),
        }
    finally:
        stop(worker, timeout=20)


def test_bad_requests_are_refused_with_their_status_and_produce_nothing(
    webhook: str, hook_settings: Settings
) -> None:
    good = json.dumps(feedback("bad-0")).encode()
    now = int(time.time())
    cases: list[tuple[str, int, str, dict[str, Any]]] = [
        ("unsigned", 401, "X-ECC-Signature", {"body": feedback("bad-1"), "secret": None}),
        ("no client", 401, "X-ECC-Client", {"body": feedback("bad-2"), "client": None}),
        ("unknown client", 401, "unknown client", {"body": feedback("bad-3"), "client": "eve"}),
        ("wrong secret", 401, "does not match", {"body": feedback("bad-4"), "secret": b"guess"}),
        (
            "other client's secret",
            401,
            "does not match",
            {"body": feedback("bad-5"), "client": "widget"},
        ),
        ("stale", 401, "timestamp", {"body": feedback("bad-6"), "timestamp": now - 3600}),
        ("future", 401, "timestamp", {"body": feedback("bad-7"), "timestamp": now + 3600}),
        ("oversized", 413, "at most", {"body": good + b" " * MAX_BODY_BYTES}),
        ("not JSON", 400, "not JSON", {"body": b'{"feedback_id": "bad-8",'}),
        ("not UTF-8", 400, "UTF-8", {"body": b'{"feedback_id": "bad-9\xff"}'}),
        (
            "form post",
            415,
            "application/json",
            {"body": feedback("bad-10"), "content_type": "application/x-www-form-urlencoded"},
        ),
        (
            "missing field",
            422,
            "turn_id",
            {"body": {"feedback_id": "bad-11", "node_id": NODE, "kind": "thumbs_up"}},
        ),
        ("unknown kind", 422, "kind", {"body": feedback("bad-12", kind="love")}),
        ("correction without label", 422, "label", {"body": feedback("bad-13", kind="correction")}),
        (
            "rating out of range",
            422,
            "rating",
            {"body": feedback("bad-14", kind="rating", rating=9)},
        ),
        ("rating null", 422, "rating", {"body": feedback("bad-20", kind="rating", rating=None)}),
        (
            "batch over maxItems",
            422,
            "per batch",
            {
                "body": {"feedback": [feedback(f"bad-21-{i}") for i in range(MAX_BATCH + 1)]},
                "path": "/v1/feedback/batch",
            },
        ),
        ("NaN", 400, "not a JSON number", {"body": b'{"feedback_id": "bad-15", "ts": NaN}'}),
        (
            "batch with a bad item",
            422,
            "1 of 2",
            {
                "body": {"feedback": [feedback("bad-16"), feedback("bad-17", kind="?")]},
                "path": "/v1/feedback/batch",
            },
        ),
        (
            "single to batch route",
            400,
            "feedback",
            {"body": feedback("bad-18"), "path": "/v1/feedback/batch"},
        ),
        (
            "tampered after signing",
            401,
            "does not match",
            {
                "body": json.dumps(feedback("bad-19", kind="thumbs_down")).encode(),
                "secret": None,
                "headers": {"X-ECC-Signature": sign(SECRET, good, now)},
            },
        ),
    ]
    for name, want, words, kwargs in cases:
        status, body, _ = post(webhook, **kwargs)
        assert status == want, (name, status, body)
        assert words in body["error"], (name, body)
    assert post(webhook, feedback("x"), path="/v2/feedback")[0] == 404
    try:  # RFC 9110: a 405 says which methods the resource has
        urllib.request.urlopen(webhook + "/v1/feedback", timeout=30)
        raise AssertionError("GET /v1/feedback was answered")
    except urllib.error.HTTPError as exc:
        assert (exc.code, exc.headers["Allow"]) == (405, "POST")
    produced = produced_ids(hook_settings)
    assert not [fid for fid in produced if fid.startswith("bad-")], produced
    with urllib.request.urlopen(webhook + "/metrics") as r:
        text = r.read().decode()
    assert 'ecc_webhook_requests_total{route="/v1/feedback",status="401"}' in text
    with urllib.request.urlopen(webhook + "/openapi.json") as r:
        spec = json.loads(r.read())
    assert set(spec["paths"]) >= {"/v1/feedback", "/v1/feedback/batch"}


def test_a_repeated_feedback_id_is_acknowledged_and_produced_once(
    webhook: str, hook_settings: Settings
) -> None:
    first = post(webhook, feedback("dup-1"))
    again = post(webhook, feedback("dup-1"), timestamp=int(time.time()) - 5)  # a retry
    in_batch = post(
        webhook,
        {"feedback": [feedback("dup-1"), feedback("dup-2"), feedback("dup-2")]},
        path="/v1/feedback/batch",
    )
    assert first[:2] == (202, {"accepted": ["dup-1"], "duplicates": []})
    assert again[:2] == (202, {"accepted": [], "duplicates": ["dup-1"]})
    assert in_batch[:2] == (202, {"accepted": ["dup-2"], "duplicates": ["dup-1", "dup-2"]})
    produced = produced_ids(hook_settings)
    assert produced.count("dup-1") == 1 and produced.count("dup-2") == 1


@given(
    body=st.one_of(
        st.binary(max_size=300),
        st.recursive(
            st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
            lambda c: (
                st.lists(c, max_size=4) | st.dictionaries(st.text(max_size=12), c, max_size=5)
            ),
            max_leaves=12,
        ).map(lambda v: json.dumps(v).encode()),
        st.fixed_dictionaries(
            {
                "feedback_id": st.text(max_size=140),
                "turn_id": st.text(max_size=5),
                "node_id": st.text(max_size=70),
            },
            optional={
                "kind": st.text(max_size=12),
                "label": st.text(max_size=5),
                "rating": st.integers(),
            },
        ).map(lambda v: json.dumps(v).encode()),
    ),
    signed=st.booleans(),
    batch=st.booleans(),
    content_type=st.sampled_from(
        ["application/json", "application/json; charset=utf-8", "text/plain", ""]
    ),
)
@hyp_settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
def test_no_request_gets_a_5xx(
    webhook: str, body: bytes, signed: bool, batch: bool, content_type: str
) -> None:
    status, _, _ = post(
        webhook,
        body,
        path="/v1/feedback/batch" if batch else "/v1/feedback",
        secret=SECRET if signed else None,
        content_type=content_type,
    )
    assert 200 <= status < 500


def test_no_secret_reaches_the_logs(webhook: str, hook_log: Path) -> None:
    """After signed, unsigned and wrongly signed posts (the tests above), the webhook's log
    holds neither client's secret."""
    assert post(webhook, feedback("log-check"))[0] == 202
    assert post(webhook, feedback("log-bad"), secret=b"guess")[0] == 401
    text = hook_log.read_text()
    assert "webhook" in text.lower(), "not the webhook's log"
    for secret in (SECRET.decode(), "other-secret"):
        assert secret not in text


def test_with_the_broker_stopped_it_answers_503_and_a_retry_is_accepted(
    webhook: str, hook_settings: Settings, hook_broker: EmbeddedBroker
) -> None:
    pid = hook_broker.pid
    assert pid is not None
    os.kill(pid, signal.SIGSTOP)  # the broker stops answering (a hung or partitioned broker)
    try:
        started = time.monotonic()
        status, body, headers = post(webhook, feedback("outage-1"))
        took = time.monotonic() - started
        assert status == 503, body
        assert headers.get("Retry-After") == "1" and "retry" in body["error"]
        assert took < 10
    finally:
        os.kill(pid, signal.SIGCONT)
    body = retry_until_accepted(webhook, "outage-1")
    assert "outage-1" in body["accepted"] + body["duplicates"]
    assert "outage-1" in produced_ids(hook_settings)


def test_with_the_broker_killed_it_answers_503_and_takes_writes_once_it_is_back(
    webhook: str, hook_settings: Settings, hook_broker: EmbeddedBroker
) -> None:
    hook_broker.stop()  # connection refused from now on
    try:
        status, body, headers = post(webhook, feedback("restart-1"))
        assert status == 503, body
        assert headers.get("Retry-After") == "1"
    finally:
        hook_broker.start()  # same port; an empty in-memory broker
        asyncio.run(ensure_topics(hook_settings))
    retry_until_accepted(webhook, "restart-1")
    assert "restart-1" in produced_ids(hook_settings)
