"""The OpenAI-compatible teacher against a small local HTTP server speaking the protocol:
good answers, new intents, malformed answers, timeouts, retries, refusals."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from models.teacher_openai import OpenAITeacher

INTENTS = ["track_order", "cancel_order", "refund_status"]


class FakeLLM:
    """Answers chat completions by a script keyed on the user's text; counts calls."""

    def __init__(self) -> None:
        self.calls: dict[str, int] = {}
        self.headers: list[dict[str, str]] = []
        self.bodies: list[dict[str, Any]] = []

    def answer(self, text: str, call: int) -> tuple[int, bytes, float]:
        """(status, body, delay in seconds) for the ``call``-th request with ``text``."""

        def content(c: str) -> bytes:
            return json.dumps(
                {"choices": [{"message": {"role": "assistant", "content": c}}]}
            ).encode()

        script: dict[str, Any] = {
            "where is my parcel": (
                200,
                content('{"intent": "track_order", "confidence": 0.92}'),
                0,
            ),
            "price match please": (
                200,
                content('{"intent": "new:price_match", "confidence": 0.8}'),
                0,
            ),
            "not json": (200, content("I think it is track_order."), 0),
            "unknown intent": (200, content('{"intent": "weather", "confidence": 0.9}'), 0),
            "confidence out of range": (
                200,
                content('{"intent": "track_order", "confidence": 7}'),
                0,
            ),
            "not a completion": (200, b'{"id": "x"}', 0),
            "refused": (400, b'{"error": "bad request"}', 0),
            "always slow": (200, content('{"intent": "track_order", "confidence": 0.9}'), 0.6),
        }
        if text == "flaky":
            return (503, b"{}", 0) if call == 1 else script["where is my parcel"]
        if text == "slow once":
            return (
                200,
                content('{"intent": "cancel_order", "confidence": 0.7}'),
                0.6 if call == 1 else 0,
            )
        return script[text]


@pytest.fixture
def llm() -> Iterator[tuple[FakeLLM, str]]:
    fake = FakeLLM()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            fake.bodies.append(body)
            fake.headers.append(dict(self.headers))
            text = body["messages"][-1]["content"]
            fake.calls[text] = fake.calls.get(text, 0) + 1
            status, payload, delay = fake.answer(text, fake.calls[text])
            time.sleep(delay)
            try:
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.end_headers()
                self.wfile.write(payload)
            except BrokenPipeError:  # the client gave up (timeout)
                pass

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    yield fake, f"http://127.0.0.1:{server.server_address[1]}/v1"
    server.shutdown()


def teacher(url: str, **kw: Any) -> OpenAITeacher:
    options: dict[str, Any] = {"timeout_s": 0.3, "retries": 2, "backoff_s": 0.01, **kw}
    return OpenAITeacher(url, "tiny-llm", INTENTS, **options)


def test_valid_answers_become_annotations(llm: tuple[FakeLLM, str]) -> None:
    fake, url = llm
    got = teacher(url, api_key="k-123").annotate(["where is my parcel", "price match please"])
    assert [(a.label, a.confidence) for a in got] == [("track_order", 0.92), ("price_match", 0.8)]
    body = fake.bodies[0]
    assert body["model"] == "tiny-llm" and body["response_format"] == {"type": "json_object"}
    assert all(i in body["messages"][0]["content"] for i in INTENTS)
    assert fake.headers[0]["Authorization"] == "Bearer k-123"


@pytest.mark.parametrize(
    "text", ["not json", "unknown intent", "confidence out of range", "not a completion"]
)
def test_unusable_answers_are_abstentions_not_retried(llm: tuple[FakeLLM, str], text: str) -> None:
    fake, url = llm
    (a,) = teacher(url).annotate([text])
    assert (a.label, a.confidence) == (None, 0.0)
    assert fake.calls[text] == 1


def test_a_refusal_is_an_abstention_without_retry(llm: tuple[FakeLLM, str]) -> None:
    fake, url = llm
    (a,) = teacher(url).annotate(["refused"])
    assert a.label is None and fake.calls["refused"] == 1


def test_5xx_and_timeouts_are_retried_with_backoff(llm: tuple[FakeLLM, str]) -> None:
    fake, url = llm
    flaky, slow = teacher(url).annotate(["flaky", "slow once"])
    assert flaky.label == "track_order" and fake.calls["flaky"] == 2
    assert slow.label == "cancel_order" and fake.calls["slow once"] == 2


def test_a_teacher_that_never_answers_in_time_abstains_after_its_retries(
    llm: tuple[FakeLLM, str],
) -> None:
    fake, url = llm
    started = time.monotonic()
    (a,) = teacher(url, retries=1).annotate(["always slow"])
    assert a.label is None and fake.calls["always slow"] == 2
    assert time.monotonic() - started < 3


def test_an_unreachable_endpoint_abstains() -> None:
    (a,) = teacher("http://127.0.0.1:9", retries=1).annotate(["where is my parcel"])
    assert a.label is None


def test_it_needs_an_endpoint_a_model_and_intents() -> None:
    with pytest.raises(ValueError, match="ECC_TEACHER_URL"):
        OpenAITeacher("", "m", INTENTS)
    with pytest.raises(ValueError, match="intents"):
        OpenAITeacher("http://x", "m", [])
