"""The feedback webhook service (``ecc webhook``): signed client posts become chat.feedback
records.

Each ``POST`` goes through these steps and stops at the first that fails:

1. size: a body over :data:`~streams.webhook.requests.MAX_BODY_BYTES` is 413, unread;
2. signature (:mod:`streams.webhook.signing`): 401, and nothing of it reaches Kafka;
3. body (:mod:`streams.webhook.requests`): 415, 400 or 422 with the field and the reason;
4. idempotency: a feedback id this webhook has had acknowledged (or one repeated within the
   request) is answered as a duplicate and not produced again;
5. produce to ``chat.feedback`` (keyed by node, ``acks=all``) and wait for the broker:
   202 with the accepted and duplicate ids; no acknowledgement within
   ``ECC_WEBHOOK_PRODUCE_TIMEOUT_S``: 503 with ``Retry-After``.

A 503 means "not acknowledged". A write cannot be taken back, so some items may still reach
the broker later; the client retries the same request, and ids make that safe: this
process remembers acknowledged ids, and the feedback agent drops an id it has taken before
(across webhook replicas and restarts too).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web
from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaError
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from learners.join import RecentKeys
from streams import metrics, topics
from streams.kafka import client_options, start_with_retry
from streams.schemas import Feedback
from streams.settings import Settings
from streams.webhook.openapi import openapi
from streams.webhook.requests import MAX_BODY_BYTES, RequestError, parse_feedback
from streams.webhook.signing import SignatureError, verify

log = logging.getLogger("ecc.webhook")

ROUTES = ("/v1/feedback", "/v1/feedback/batch", "/openapi.json", "/healthz", "/metrics")
REMEMBERED_IDS = 200_000


def parse_secrets(spec: str) -> dict[str, bytes]:
    """``client=secret,other=secret2`` -> {client: secret}; ValueError names a bad entry.

    >>> parse_secrets("crm=abc, widget=d=e")
    {'crm': b'abc', 'widget': b'd=e'}
    """
    secrets: dict[str, bytes] = {}
    for i, part in enumerate(p.strip() for p in spec.split(",") if p.strip()):
        client, sep, secret = part.partition("=")
        if not sep or not client.strip() or len(secret) < 3:
            raise ValueError(
                f"ECC_WEBHOOK_SECRETS entry {i + 1}: expected client=secret (3+ characters)"
            )
        secrets[client.strip()] = secret.encode()
    return secrets


class BrokerUnavailable(Exception):
    """The broker did not acknowledge a write in time."""


class FeedbackWriter:
    """Produces feedback once per id: acknowledged ids are remembered, and a write in
    flight is waited for by a second request carrying the same id."""

    def __init__(self, producer: AIOKafkaProducer, topic: str, timeout_s: float) -> None:
        self.producer = producer
        self.topic = topic
        self.timeout_s = timeout_s
        self.acked: RecentKeys[str] = RecentKeys(REMEMBERED_IDS)
        self.inflight: dict[str, asyncio.Future[bool]] = {}

    async def write(self, items: list[Feedback]) -> tuple[list[str], list[str]]:
        """(accepted ids, duplicate ids); :class:`BrokerUnavailable` if not acknowledged."""
        fresh: list[Feedback] = []
        duplicates: list[str] = []
        others: list[tuple[str, asyncio.Future[bool]]] = []
        seen: set[str] = set()
        for fb in items:
            fid = fb.feedback_id
            if fid in seen or fid in self.acked:
                duplicates.append(fid)
            elif (pending := self.inflight.get(fid)) is not None:
                others.append((fid, pending))
            else:
                fresh.append(fb)
            seen.add(fid)
        loop = asyncio.get_running_loop()
        mine = {fb.feedback_id: loop.create_future() for fb in fresh}
        self.inflight.update(mine)
        ok = False
        try:
            ok = await self._produce(fresh)
        finally:
            for fid, fut in mine.items():
                fut.set_result(ok)
                del self.inflight[fid]
                if ok:
                    self.acked.add(fid)
        for fid, pending in others:
            if not await asyncio.shield(pending):
                raise BrokerUnavailable(f"a concurrent write of {fid!r} was not acknowledged")
            duplicates.append(fid)
        if fresh and not ok:
            raise BrokerUnavailable(
                f"the broker did not acknowledge the write within {self.timeout_s:g} s"
            )
        return [fb.feedback_id for fb in fresh], duplicates

    async def _produce(self, items: list[Feedback]) -> bool:
        if not items:
            return True
        try:
            async with asyncio.timeout(self.timeout_s):
                sent = [
                    await self.producer.send(self.topic, fb.dumps(), key=fb.node_id.encode())
                    for fb in items
                ]
                await asyncio.gather(*sent)
            return True
        except (TimeoutError, KafkaError) as exc:
            log.warning("feedback write not acknowledged: %r", exc)
            return False


def _error(status: int, message: str, **extra: Any) -> web.Response:
    return web.json_response({"error": message, **extra}, status=status)


@web.middleware
async def _observe(
    request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
) -> web.StreamResponse:
    """Count every answer by route and status, time it, and turn errors into JSON."""
    route = request.path if request.path in ROUTES else "other"
    started = time.perf_counter()
    try:
        response = await handler(request)
    except web.HTTPException as exc:  # 404, 405 from routing
        response = _error(exc.status, exc.reason)
        if isinstance(exc, web.HTTPMethodNotAllowed):  # RFC 9110: a 405 names what is
            response.headers["Allow"] = ", ".join(sorted(exc.allowed_methods))
    except Exception:
        log.exception("webhook handler failed")
        response = _error(500, "internal error; the request may be retried")
    metrics.WEBHOOK_REQUESTS.labels(route, str(response.status)).inc()
    metrics.WEBHOOK_SECONDS.labels(route).observe(time.perf_counter() - started)
    return response


class Webhook:
    """The aiohttp application and what its handlers share."""

    def __init__(self, settings: Settings, secrets: dict[str, bytes]) -> None:
        if not secrets:
            raise ValueError(
                "ECC_WEBHOOK_SECRETS is empty: give at least one client=secret "
                "(the webhook refuses every unsigned request)"
            )
        self.settings = settings
        self.secrets = secrets
        self.writer: FeedbackWriter | None = None
        self.app = web.Application(client_max_size=MAX_BODY_BYTES, middlewares=[_observe])
        self.app.router.add_post("/v1/feedback", self._single)
        self.app.router.add_post("/v1/feedback/batch", self._batch)
        self.app.router.add_get("/openapi.json", self._openapi)
        self.app.router.add_get("/healthz", self._health)
        self.app.router.add_get("/metrics", self._metrics)
        self.app.cleanup_ctx.append(self._kafka)

    async def _kafka(self, app: web.Application) -> Any:
        s = self.settings
        producer = await _start_producer(s)
        self.writer = FeedbackWriter(
            producer,
            topics.TopicNames(s.topic_prefix)(topics.CHAT_FEEDBACK),
            s.webhook_produce_timeout_s,
        )
        yield
        await producer.stop()

    async def _single(self, request: web.Request) -> web.Response:
        return await self._post(request, batch=False)

    async def _batch(self, request: web.Request) -> web.Response:
        return await self._post(request, batch=True)

    async def _post(self, request: web.Request, batch: bool) -> web.Response:
        s = self.settings
        try:
            if (request.content_length or 0) > MAX_BODY_BYTES:
                raise RequestError(
                    413, f"body of {request.content_length} bytes; at most {MAX_BODY_BYTES}"
                )
            try:
                body = await request.read()
            except web.HTTPRequestEntityTooLarge:
                raise RequestError(413, f"body over {MAX_BODY_BYTES} bytes") from None
            verify(
                self.secrets,
                request.headers.get("X-ECC-Client"),
                request.headers.get("X-ECC-Signature"),
                body,
                now=time.time(),
                tolerance_s=s.webhook_tolerance_s,
            )
            items = parse_feedback(body, request.headers.get("Content-Type"), batch)
        except SignatureError as exc:
            return _error(401, str(exc))
        except RequestError as exc:
            return _error(exc.status, exc.message, **({"items": exc.items} if exc.items else {}))
        assert self.writer is not None
        try:
            accepted, duplicates = await self.writer.write(items)
        except BrokerUnavailable as exc:
            retry = s.webhook_retry_after_s
            response = _error(
                503,
                f"{exc}; retry the same request (feedback ids make a retry safe)",
                retry_after_s=retry,
            )
            response.headers["Retry-After"] = str(retry)
            return response
        kinds = {fb.feedback_id: fb.kind for fb in items}
        for fid in accepted:
            metrics.WEBHOOK_FEEDBACK.labels(kinds[fid], "accepted").inc()
        for fid in duplicates:
            metrics.WEBHOOK_FEEDBACK.labels(kinds[fid], "duplicate").inc()
        return web.json_response({"accepted": accepted, "duplicates": duplicates}, status=202)

    async def _openapi(self, request: web.Request) -> web.Response:
        return web.json_response(openapi())

    async def _health(self, request: web.Request) -> web.Response:
        return web.json_response({"status": "ok"})

    async def _metrics(self, request: web.Request) -> web.Response:
        response = web.Response(body=generate_latest())
        response.headers["Content-Type"] = CONTENT_TYPE_LATEST
        return response


async def _start_producer(s: Settings, timeout_s: float = 60.0) -> AIOKafkaProducer:
    """An ``acks=all`` producer, started; waits up to ``timeout_s`` for the broker."""
    producer = AIOKafkaProducer(
        **client_options(s),
        acks="all",
        linger_ms=1,
        request_timeout_ms=int(max(s.webhook_produce_timeout_s, 1.0) * 1000),
    )
    try:
        await start_with_retry(producer.start, timeout_s)
    except KafkaError as exc:
        await producer.stop()
        raise RuntimeError(f"no Kafka broker answered at {s.broker}: {exc!r}") from exc
    return producer


def serve(settings: Settings) -> None:
    """Run the webhook until interrupted."""
    hook = Webhook(settings, parse_secrets(settings.webhook_secrets))
    web.run_app(
        hook.app,
        host=settings.webhook_host,
        port=settings.webhook_port,
        print=lambda msg: log.warning("%s", msg),
        access_log=None,
    )
