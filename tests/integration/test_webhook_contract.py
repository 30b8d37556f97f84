"""The webhook keeps its OpenAPI contract: schemathesis generates requests from the served
`/openapi.json` (valid and invalid ones) against a real `ecc webhook` on the real broker,
each signed as a real client signs it, and every check of schemathesis passes."""

from __future__ import annotations

import asyncio
import json
import time
import urllib.request
from collections.abc import Iterator
from typing import Any

import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis import GenerationMode

from harness.broker import EmbeddedBroker
from harness.processes import free_port, stop
from harness.workers import start_webhook
from streams.kafka import ensure_topics
from streams.settings import Settings
from streams.webhook.signing import sign

pytestmark = pytest.mark.integration

SECRET = b"contract-secret"


class Signed(requests.auth.AuthBase):
    """Signs the exact bytes about to be sent, as a client does (streams/webhook/client.py),
    when the generated request carries both security headers (a case that leaves one out,
    to test that it is refused, goes as generated)."""

    def __call__(self, r: requests.PreparedRequest) -> requests.PreparedRequest:
        if {"X-ECC-Client", "X-ECC-Signature"} <= set(r.headers):
            body = r.body if isinstance(r.body, bytes) else (r.body or "").encode()
            r.headers["X-ECC-Client"] = "crm"
            r.headers["X-ECC-Signature"] = sign(SECRET, body, int(time.time()))
        return r


@pytest.fixture(scope="module")
def contract_webhook(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    folder = tmp_path_factory.mktemp("contract")
    with EmbeddedBroker(log=folder / "tansu.log") as broker:
        s = Settings(
            broker=broker.bootstrap,
            state_dir=folder / "state",
            app_id="ecc-contract-test",
            metrics_port=0,
            webhook_host="127.0.0.1",
            webhook_port=free_port("127.0.0.1"),
            webhook_secrets=f"crm={SECRET.decode()}",
        )
        asyncio.run(ensure_topics(s))
        proc, url = start_webhook(s, folder / "webhook.log")
        try:
            yield url
        finally:
            stop(proc)


@pytest.fixture(scope="module")
def served_schema(contract_webhook: str) -> Any:
    with urllib.request.urlopen(contract_webhook + "/openapi.json", timeout=30) as r:
        document = json.loads(r.read())
    return schemathesis.openapi.from_dict(document)


def every_check() -> list[Any]:
    from schemathesis import checks

    names = [
        "not_a_server_error",
        "status_code_conformance",
        "content_type_conformance",
        "response_headers_conformance",
        "response_schema_conformance",
        "negative_data_rejection",
        "positive_data_acceptance",
        "missing_required_header",
        "unsupported_method",
        "use_after_free",
        "ensure_resource_availability",
        "ignored_auth",
    ]
    return [getattr(checks, name) for name in names]


@pytest.mark.parametrize("mode", list(GenerationMode))
def test_the_webhook_keeps_its_contract(
    served_schema: Any, contract_webhook: str, mode: Any
) -> None:
    session = requests.Session()
    for result in served_schema.get_all_operations():
        operation = result.ok()
        if mode == GenerationMode.NEGATIVE and not list(operation.body):
            continue  # (GET /healthz takes nothing: there is nothing to get wrong)

        @given(case=operation.as_strategy(generation_mode=mode))
        @settings(max_examples=150, deadline=None, suppress_health_check=list(HealthCheck))
        def check(case: Any) -> None:
            # Signed is an explicit auth: schemathesis then also sends each case with the
            # security headers left out or wrong (left unsigned: signing needs both)
            case.call_and_validate(
                base_url=contract_webhook, session=session, checks=every_check(), auth=Signed()
            )

        check()
