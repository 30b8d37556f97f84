"""Webhook request signatures: HMAC-SHA256 of a timestamp and the body, per client secret.

The scheme common webhook providers use (Stripe, Slack): the client sends

    X-ECC-Client: <client id>
    X-ECC-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256 of "<t>.<raw body>">

with the secret it shares with this service. The timestamp is inside the signed bytes, so
a captured request cannot be replayed outside ``tolerance_s`` of its time; within that
window, the feedback's own id makes a replay a no-op (idempotency, not this module).
Comparison is constant-time. Every refusal says why, without echoing the secret or the
expected signature.

>>> secrets = {"crm": b"s3cret"}
>>> body = b'{"feedback_id": "f1"}'
>>> header = sign(b"s3cret", body, timestamp=1_700_000_000)
>>> header.startswith("t=1700000000,v1=")
True
>>> verify(secrets, "crm", header, body, now=1_700_000_030)
'crm'
>>> verify(secrets, "crm", header, body + b" ", now=1_700_000_030)
Traceback (most recent call last):
...
streams.webhook.signing.SignatureError: signature does not match the body
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Mapping

SCHEME = "v1"
DEFAULT_TOLERANCE_S = 300.0


class SignatureError(ValueError):
    """A request whose signature is missing, malformed, stale or wrong; the message says
    which (it is safe to return to the client)."""


def sign(secret: bytes, body: bytes, timestamp: int) -> str:
    """The ``X-ECC-Signature`` header value for ``body`` sent at ``timestamp``."""
    return f"t={timestamp},{SCHEME}={_mac(secret, timestamp, body)}"


def verify(
    secrets: Mapping[str, bytes],
    client: str | None,
    header: str | None,
    body: bytes,
    now: float,
    tolerance_s: float = DEFAULT_TOLERANCE_S,
) -> str:
    """The client id if ``header`` is its valid signature of ``body`` at about ``now``;
    otherwise :class:`SignatureError` with the reason."""
    if not client:
        raise SignatureError("missing X-ECC-Client header")
    secret = secrets.get(client)
    if secret is None:
        raise SignatureError(f"unknown client {client[:64]!r}")
    if not header:
        raise SignatureError("missing X-ECC-Signature header")
    timestamp, signatures = _parse(header)
    if abs(now - timestamp) > tolerance_s:
        raise SignatureError(
            f"timestamp {timestamp} is {abs(now - timestamp):.0f} s from the server's clock "
            f"(at most {tolerance_s:.0f} s allowed)"
        )
    expected = _mac(secret, timestamp, body)
    # Every candidate is compared (no early exit), each in constant time.
    if not sum(hmac.compare_digest(expected, s) for s in signatures):
        raise SignatureError("signature does not match the body")
    return client


def _mac(secret: bytes, timestamp: int, body: bytes) -> str:
    return hmac.new(secret, b"%d." % timestamp + body, hashlib.sha256).hexdigest()


def _parse(header: str) -> tuple[int, list[str]]:
    """``t=<int>`` and one or more ``v1=<hex>`` (several while a secret is rotated)."""
    timestamp: int | None = None
    signatures: list[str] = []
    for part in header.split(",")[:16]:
        key, sep, value = part.strip().partition("=")
        if not sep:
            raise SignatureError("malformed X-ECC-Signature: expected t=<unix seconds>,v1=<hex>")
        if key == "t":
            if not (value.isascii() and value.isdigit()) or len(value) > 12:
                raise SignatureError("malformed X-ECC-Signature: t must be unix seconds")
            timestamp = int(value)
        elif key == SCHEME and len(value) == 64:
            signatures.append(value.lower())
    if timestamp is None:
        raise SignatureError("malformed X-ECC-Signature: no t=<unix seconds>")
    if not signatures:
        raise SignatureError(f"malformed X-ECC-Signature: no {SCHEME}=<64 hex digits>")
    return timestamp, signatures
