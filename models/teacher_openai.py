"""A cloud teacher behind an OpenAI-compatible chat-completions endpoint (vLLM, Ollama, a
hosted API): one label per redacted utterance, from the known intents or ``new:<name>``.

The model is asked for a strict JSON answer, ``{"intent": "...", "confidence": 0.0-1.0}``.
Every request has a timeout; a timeout, a connection error, 429 or a 5xx is retried with
exponential backoff; anything it cannot use (another 4xx, malformed JSON, an intent not in
the list, a confidence out of range, no answer after the retries) is an **abstention**
(label None, confidence 0), never an exception: a bad answer must not stop the teacher
worker or become a training label.

>>> parse_answer('{"intent": "track_order", "confidence": 0.9}', {"track_order"})
Annotation(label='track_order', confidence=0.9)
>>> parse_answer('{"intent": "new:price_match", "confidence": 0.7}', {"track_order"})
Annotation(label='price_match', confidence=0.7)
>>> parse_answer('sure! it is track_order', {"track_order"})
Annotation(label=None, confidence=0.0)
"""

from __future__ import annotations

import json
import logging
import re
import time
import urllib.error
import urllib.request
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from models.options import TEACHER_RETRIES, TEACHER_TIMEOUT_S
from models.teacher import Annotation

log = logging.getLogger("ecc.teacher")

ABSTAIN = Annotation(None, 0.0)
_NEW = re.compile(r"^new:([a-z][a-z0-9_]{0,59})$")
_RETRYABLE = {408, 409, 429, 500, 502, 503, 504}

SYSTEM_PROMPT = """\
You label customer-service messages of an e-commerce shop with their intent.
Known intents: {intents}.
Answer with one JSON object and nothing else:
{{"intent": "<one known intent>", "confidence": <0..1>}}.
If the message fits none of them, answer
{{"intent": "new:<snake_case_name>", "confidence": <0..1>}}.
Placeholders such as <EMAIL> or <ORDER_ID> stand for redacted personal data."""


def parse_answer(content: str, intents: set[str]) -> Annotation:
    """The annotation in a model's answer, or an abstention if it is not a valid one."""
    try:
        data = json.loads(content)
        intent, confidence = data["intent"], data["confidence"]
    except (ValueError, TypeError, KeyError):
        return ABSTAIN
    if not isinstance(intent, str) or isinstance(confidence, bool):
        return ABSTAIN
    if not isinstance(confidence, int | float) or not 0.0 <= confidence <= 1.0:
        return ABSTAIN
    if intent in intents:
        return Annotation(intent, float(confidence))
    new = _NEW.match(intent.strip())
    if new and new.group(1) not in intents:
        return Annotation(new.group(1), float(confidence))
    return ABSTAIN


class OpenAITeacher:
    """Chat-completions client; ``annotate`` blocks (the worker runs it on a thread)."""

    def __init__(
        self,
        base_url: str,
        model: str,
        intents: Sequence[str],
        api_key: str = "",
        timeout_s: float = TEACHER_TIMEOUT_S,
        retries: int = TEACHER_RETRIES,
        backoff_s: float = 0.5,
        concurrency: int = 4,
    ) -> None:
        if not base_url or not model:
            raise ValueError("the openai teacher needs ECC_TEACHER_URL and ECC_TEACHER_MODEL")
        if not intents:
            raise ValueError("the openai teacher needs the known intents (ECC_TEACHER_CORPUS)")
        self.url = base_url.rstrip("/") + "/chat/completions"
        self.model = model
        self.intents = set(intents)
        self.api_key = api_key
        self.timeout_s = timeout_s
        self.retries = retries
        self.backoff_s = backoff_s
        self.name = f"openai:{model}"
        self._system = SYSTEM_PROMPT.format(intents=", ".join(sorted(self.intents)))
        self._pool = ThreadPoolExecutor(concurrency, thread_name_prefix="teacher-http")

    def annotate(self, texts: Sequence[str]) -> list[Annotation]:
        return list(self._pool.map(self._one, texts))

    def _one(self, text: str) -> Annotation:
        body = json.dumps(
            {
                "model": self.model,
                "temperature": 0,
                "response_format": {"type": "json_object"},
                "messages": [
                    {"role": "system", "content": self._system},
                    {"role": "user", "content": text},
                ],
            }
        ).encode()
        headers = {"Content-Type": "application/json"}
        if self.api_key:
            headers["Authorization"] = f"Bearer {self.api_key}"
        for attempt in range(self.retries + 1):
            if attempt:
                time.sleep(self.backoff_s * 2 ** (attempt - 1))
            request = urllib.request.Request(self.url, data=body, headers=headers, method="POST")
            try:
                with urllib.request.urlopen(request, timeout=self.timeout_s) as r:
                    answer: Any = json.loads(r.read())
                return parse_answer(str(answer["choices"][0]["message"]["content"]), self.intents)
            except urllib.error.HTTPError as exc:
                if exc.code not in _RETRYABLE:
                    log.warning("teacher endpoint refused a request: HTTP %d", exc.code)
                    return ABSTAIN
            except (OSError, TimeoutError) as exc:  # connection refused or reset, timeout
                log.warning("teacher endpoint unreachable (attempt %d): %r", attempt + 1, exc)
            except (ValueError, KeyError, IndexError, TypeError):  # not a chat completion
                return ABSTAIN
        return ABSTAIN
