"""A client of the feedback webhook: signs each request and retries a 503 after its
Retry-After (the same request: feedback ids make retries safe). The demo and the
benchmarks post their simulated clients' feedback with it.
"""

from __future__ import annotations

import asyncio
import time
from types import TracebackType
from typing import Any

import aiohttp

from streams.schemas import Feedback
from streams.webhook.signing import sign


class WebhookError(RuntimeError):
    """The webhook refused a request (4xx) or stayed unavailable; the message says why."""


class FeedbackClient:
    """``async with FeedbackClient(url, "crm", secret) as c: await c.post([fb, ...])``."""

    def __init__(self, url: str, client_id: str, secret: bytes, attempts: int = 5) -> None:
        self.url = url.rstrip("/")
        self.client_id = client_id
        self.secret = secret
        self.attempts = attempts
        self._session: aiohttp.ClientSession | None = None

    async def __aenter__(self) -> FeedbackClient:
        self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30))
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._session is not None:
            await self._session.close()

    async def post(self, items: list[Feedback]) -> dict[str, Any]:
        """Post ``items`` (one request; the batch route for more than one); returns the
        answer's ``{"accepted": [...], "duplicates": [...]}``."""
        assert self._session is not None, "use FeedbackClient as an async context manager"
        if len(items) == 1:
            path, body = "/v1/feedback", items[0].dumps()
        else:
            path = "/v1/feedback/batch"
            body = b'{"feedback": [' + b",".join(fb.dumps() for fb in items) + b"]}"
        for attempt in range(1, self.attempts + 1):
            headers = {
                "Content-Type": "application/json",
                "X-ECC-Client": self.client_id,
                "X-ECC-Signature": sign(self.secret, body, int(time.time())),
            }
            async with self._session.post(self.url + path, data=body, headers=headers) as r:
                answer: dict[str, Any] = await r.json(content_type=None)
                if r.status == 202:
                    return answer
                if r.status != 503 or attempt == self.attempts:
                    raise WebhookError(f"{r.status} from {path}: {answer.get('error')}")
                await asyncio.sleep(float(r.headers.get("Retry-After", "1")))
        raise AssertionError("unreachable")
