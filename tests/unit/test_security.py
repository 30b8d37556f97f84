"""Connection security and secrets: the SASL/TLS settings reach both kinds of Kafka client
(aiokafka and Faust), a wrong protocol is refused before any connection, and secrets never
show in a repr or in `ecc settings`."""

from __future__ import annotations

import json
import ssl

import certifi
import faust
import pytest
from click.testing import CliRunner

from streams.cli import main
from streams.kafka import client_options, faust_credentials
from streams.settings import Settings

SASL = {
    "security_protocol": "SASL_SSL",
    "sasl_mechanism": "SCRAM-SHA-512",
    "sasl_username": "ecc",
    "sasl_password": "pa55-word-xyz",
    "ssl_cafile": certifi.where(),
}


def test_sasl_ssl_reaches_aiokafka_and_faust() -> None:
    s = Settings(broker="kafka.example:9093", **SASL)
    opts = client_options(s)
    assert opts["security_protocol"] == "SASL_SSL"
    assert opts["sasl_mechanism"] == "SCRAM-SHA-512"
    assert (opts["sasl_plain_username"], opts["sasl_plain_password"]) == ("ecc", "pa55-word-xyz")
    context = opts["ssl_context"]
    assert context.verify_mode == ssl.CERT_REQUIRED and context.check_hostname
    creds = faust_credentials(s)
    assert isinstance(creds, faust.SASLCredentials)
    assert (creds.username, creds.password) == ("ecc", "pa55-word-xyz")
    assert str(creds.mechanism.value) == "SCRAM-SHA-512"
    assert creds.ssl_context is not None and creds.ssl_context.verify_mode == ssl.CERT_REQUIRED


def test_tls_alone_reaches_faust_too() -> None:
    """SSL without SASL: the Faust app must not fall back to plaintext."""
    s = Settings(broker="kafka.example:9093", security_protocol="SSL")
    assert "sasl_mechanism" not in client_options(s)
    assert client_options(s)["ssl_context"].verify_mode == ssl.CERT_REQUIRED
    creds = faust_credentials(s)
    assert isinstance(creds, faust.SSLCredentials)
    assert creds.context.verify_mode == ssl.CERT_REQUIRED


def test_plaintext_has_no_credentials() -> None:
    s = Settings(broker="localhost:9092")
    assert "ssl_context" not in client_options(s) and faust_credentials(s) is None


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"ECC_SECURITY_PROTOCOL": "TLS"}, "ECC_SECURITY_PROTOCOL='TLS'"),
        (
            {"ECC_SECURITY_PROTOCOL": "SASL_SSL", "ECC_SASL_MECHANISM": "GSSAPI-ish"},
            "ECC_SASL_MECHANISM",
        ),
    ],
)
def test_a_wrong_protocol_is_refused_before_connecting(env: dict[str, str], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        Settings.from_env(env)
    result = CliRunner().invoke(main, ["settings"], env=env)
    assert result.exit_code == 2 and message in result.output


def test_a_missing_ca_file_is_an_error_not_an_unverified_connection() -> None:
    s = Settings(broker="kafka.example:9093", security_protocol="SSL", ssl_cafile="/nope/ca.pem")
    with pytest.raises(FileNotFoundError):
        client_options(s)


def test_secrets_never_show() -> None:
    env = {
        "ECC_SASL_PASSWORD": "pa55-word-xyz",
        "ECC_WEBHOOK_SECRETS": "crm=hook-secret-abc",
        "ECC_TEACHER_API_KEY": "sk-teacher-123",
    }
    s = Settings.from_env(env)
    for value in env.values():
        assert value not in repr(s)
    shown = CliRunner().invoke(main, ["settings"], env=env)
    as_json = CliRunner().invoke(main, ["settings", "--json"], env=env)
    assert shown.exit_code == as_json.exit_code == 0
    for value in (*env.values(), "hook-secret-abc"):
        assert value not in shown.output and value not in as_json.output
    assert "***" in shown.output
    assert "ECC_SASL_PASSWORD" not in json.loads(as_json.output)
