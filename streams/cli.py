"""The ``ecc`` command line of the service: serve, webhook, topics, nodes, adapters, settings.

Other installed packages add commands through the ``ecc.commands`` entry points: the
harness adds ``ecc demo``, ``ecc bench ...`` and ``ecc soak`` (``harness/cli.py``). They are
loaded only when asked for, so the service never imports its harness.
"""

from __future__ import annotations

import asyncio
import json
import logging
from importlib.metadata import EntryPoint, entry_points
from pathlib import Path
from typing import Any

import click

from streams.settings import Settings
from streams.topics import ROLES, SERVICE_ROLES

PLUGINS = "ecc.commands"


def settings_from_env(**overrides: Any) -> Settings:
    """The ``ECC_*`` settings (``overrides`` win); a mistake in them is a usage error."""
    try:
        return Settings.from_env(None, **{k: v for k, v in overrides.items() if v is not None})
    except ValueError as exc:
        raise click.UsageError(str(exc)) from exc


class _Commands(click.Group):
    """The service's own commands, then those of the ``ecc.commands`` entry points."""

    def _plugins(self) -> dict[str, EntryPoint]:
        return {ep.name: ep for ep in entry_points(group=PLUGINS)}

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted({*super().list_commands(ctx), *self._plugins()})

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        own = super().get_command(ctx, name)
        if own is not None:
            return own
        plugin = self._plugins().get(name)
        return plugin.load() if plugin is not None else None


@click.group(cls=_Commands, context_settings={"help_option_names": ["-h", "--help"]})
def main() -> None:
    """Streaming online learning for customer-service intent models.

    Edge nodes serve intents and fine-tune LoRA adapters from live feedback; drift is scored
    per intent; a cloud teacher re-annotates drifting intents. Settings come from ECC_*
    environment variables (see `ecc settings`).
    """


@main.command()
@click.option(
    "--roles",
    default=",".join(SERVICE_ROLES),
    show_default=True,
    help=f"Which agents this worker runs (comma-separated, of {', '.join(ROLES)}; fleet: the "
    "cloud's fleet aggregator, in a worker of its own).",
)
def serve(roles: str) -> None:
    """Run the stream worker against the Kafka cluster in ECC_BROKER.

    Scale out by starting more workers with the same ECC_APP_ID and the same --roles:
    partitions (and the nodes keyed to them) are shared by consumer-group rebalancing.
    Workers with other roles form their own group (ECC_APP_ID-<roles>), so every role
    sees every partition of the topics it reads.
    """
    from faust.worker import Worker

    from streams import metrics
    from streams.app import create_app

    settings = settings_from_env()
    if not settings.broker:
        raise click.UsageError("set ECC_BROKER to the Kafka bootstrap servers (host:port)")
    settings.state_dir.mkdir(parents=True, exist_ok=True)
    chosen = tuple(r for r in roles.split(",") if r)
    try:  # settings mistakes (roles, PII kinds) before any connection
        app, ctx = create_app(settings, chosen)
    except ValueError as exc:
        raise click.UsageError(str(exc)) from exc
    asyncio.run(_ensure(settings, chosen))
    metrics.serve(settings.metrics_port)
    logging.basicConfig(level=settings.log_level.upper())
    try:
        Worker(app, loglevel=settings.log_level, quiet=True).execute_from_commandline()
    finally:  # before the interpreter joins the pools' threads: a consolidation gives up
        ctx.stopping.set()


async def _ensure(settings: Settings, roles: tuple[str, ...] | None = None) -> list[str]:
    from streams.kafka import ensure_topics

    return await ensure_topics(settings, roles=roles or SERVICE_ROLES)


@main.group()
def topics() -> None:
    """Manage the service's topics."""


@topics.command("create")
def topics_create() -> None:
    """Create every topic and dead-letter topic that is missing (ECC_TOPIC_PARTITIONS each)."""
    settings = settings_from_env()
    if not settings.broker:
        raise click.UsageError("set ECC_BROKER to the Kafka bootstrap servers (host:port)")
    created = asyncio.run(_ensure(settings))
    click.echo(f"created {len(created)} topics" + (": " + ", ".join(created) if created else ""))


@main.group()
def node() -> None:
    """Manage edge nodes."""


@node.command("init")
@click.argument("node_id")
@click.option(
    "--data",
    required=True,
    type=click.Path(exists=True, dir_okay=False),
    help="CSV with text,label: the node's first labelled examples.",
)
@click.option(
    "--from-fleet",
    is_flag=True,
    help="Start from the latest fleet prior too (`ecc serve --roles fleet` writes it): the "
    "node also answers the fleet's intents its examples lack.",
)
def node_init(node_id: str, data: str, from_fleet: bool) -> None:
    """Create NODE_ID's first adapter version from labelled examples."""
    from learners.edge_node import EdgeNode
    from learners.fleet.aggregator import latest_prior
    from models.registry import AdapterRegistry
    from scenarios.datasets import read_csv

    settings = settings_from_env()
    examples = read_csv(data)
    registry = AdapterRegistry(settings.state_dir / "adapters", keep_last=settings.keep_versions)
    prior = latest_prior(registry) if from_fleet else None
    if from_fleet and prior is None:
        raise click.UsageError(
            f"no fleet prior in {registry.root} yet: run `ecc serve --roles fleet` beside "
            "the edge workers (it writes one once a node has published a version)"
        )
    version = EdgeNode.bootstrap(
        node_id,
        registry,
        settings.state_dir,
        [e.text for e in examples],
        [e.label for e in examples],
        settings.edge_options(),
        prior=prior,
    )
    served = registry.current(node_id)
    intents = len(served.labels) if served else 0
    fleet = f" (fleet prior v{prior.version})" if prior is not None else ""
    click.echo(f"{node_id}: version {version} with {intents} intents{fleet}")


@main.group()
def adapters() -> None:
    """Inspect and roll back adapter versions in the registry (ECC_STATE_DIR/adapters)."""


def _registry():  # type: ignore[no-untyped-def]
    from models.registry import AdapterRegistry

    settings = settings_from_env()
    return AdapterRegistry(settings.state_dir / "adapters", keep_last=settings.keep_versions)


@adapters.command("list")
@click.argument("node_id", required=False)
def adapters_list(node_id: str | None) -> None:
    """List versions of NODE_ID (or of every node); * marks the serving one."""
    registry = _registry()
    for n in [node_id] if node_id else registry.nodes():
        for v in registry.versions(n):
            mark = "*" if v.is_current else " "
            acc = v.metrics.get("holdout_accuracy")
            acc_s = f"holdout {acc:.3f}" if acc is not None else ""
            click.echo(
                f"{mark} {n} v{v.version:<4} parent {v.parent!s:<5} {len(v.labels):>3} "
                f"intents  {v.created_at}  {acc_s}"
            )


@adapters.command("show")
@click.argument("node_id")
@click.argument("version", type=int, required=False)
def adapters_show(node_id: str, version: int | None) -> None:
    """Print the manifest of VERSION (default: the serving one) of NODE_ID."""
    registry = _registry()
    v = registry.get(node_id, version) if version else registry.current(node_id)
    if v is None:
        raise click.ClickException(f"node {node_id!r} has no versions")
    click.echo((Path(v.path) / "manifest.json").read_text())


@adapters.command("rollback")
@click.argument("node_id")
@click.argument("version", type=int, required=False)
def adapters_rollback(node_id: str, version: int | None) -> None:
    """Serve VERSION of NODE_ID again (default: the parent of the serving version)."""
    registry = _registry()
    try:
        v = registry.rollback(node_id, version)
    except (LookupError, ValueError) as exc:
        raise click.ClickException(str(exc)) from exc
    click.echo(f"{node_id}: now serving v{v.version}")


@main.command()
def webhook() -> None:
    """Run the feedback webhook: POST /v1/feedback and /v1/feedback/batch (signed with
    HMAC-SHA256), /openapi.json, /healthz, /metrics.

    Needs ECC_BROKER and ECC_WEBHOOK_SECRETS (client=secret,...); listens on
    ECC_WEBHOOK_HOST:ECC_WEBHOOK_PORT. Answers 202 once the broker acknowledged the write.
    """
    import logging

    from streams.webhook.server import parse_secrets, serve

    settings = settings_from_env()
    if not settings.broker:
        raise click.UsageError("set ECC_BROKER to the Kafka bootstrap servers (host:port)")
    try:
        secrets = parse_secrets(settings.webhook_secrets)
    except ValueError as exc:
        raise click.UsageError(str(exc)) from exc
    if not secrets:
        raise click.UsageError(
            "set ECC_WEBHOOK_SECRETS to client=secret[,client2=secret2]: every request must "
            "be signed with its client's secret"
        )
    logging.basicConfig(level=settings.log_level.upper())
    click.echo(
        f"feedback webhook on http://{settings.webhook_host}:{settings.webhook_port} "
        f"(OpenAPI at /openapi.json), producing to {settings.broker}",
        err=True,
    )
    serve(settings)


@main.command()
@click.option("--group", "groups", multiple=True, help="Only this consumer group (repeatable).")
@click.option("--json", "as_json", is_flag=True, help="One JSON object per partition.")
@click.option("--serve", is_flag=True, help="Export ecc_group_lag to Prometheus until stopped.")
@click.option("--port", type=int, help="Port of --serve (default: ECC_LAG_PORT).")
def lag(groups: tuple[str, ...], as_json: bool, serve: bool, port: int | None) -> None:
    """Consumer lag of every consumer group: committed offsets against end offsets.

    Computed from outside the workers (kafka-python's admin client), so it keeps growing
    while a group's workers are down. With --serve, a Prometheus exporter that reads it at
    every scrape (`ecc_group_lag{group, topic}`). See streams/lag.py.
    """
    import contextlib
    import dataclasses
    import signal
    import threading

    from streams.lag import LagCollector, LagReader, by_topic

    s = settings_from_env()
    if not s.broker:
        raise click.UsageError("ECC_BROKER is empty: set it to the Kafka bootstrap servers")
    reader = LagReader(s, groups)
    try:
        if serve:
            from prometheus_client import CollectorRegistry, start_http_server

            registry = CollectorRegistry()
            registry.register(LagCollector(reader))
            port = port or s.lag_port
            start_http_server(port, registry=registry)
            click.echo(f"ecc lag: exporting ecc_group_lag on :{port}/metrics (Ctrl-C stops)")
            done = threading.Event()
            signal.signal(signal.SIGTERM, lambda *_: done.set())
            with contextlib.suppress(KeyboardInterrupt):
                done.wait()
            return
        rows = reader.read()
        if as_json:
            for row in rows:
                click.echo(json.dumps({**dataclasses.asdict(row), "lag": row.lag}))
            return
        if not rows:
            click.echo("no consumer group has committed offsets yet")
        for (group, topic), total in sorted(by_topic(rows).items()):
            click.echo(f"{group:<32} {topic:<32} {total:>10}")
    finally:
        reader.close()


@main.command("settings")
@click.option("--json", "as_json", is_flag=True, help="Print as JSON.")
def show_settings(as_json: bool) -> None:
    """Print every ECC_* setting with its current value, default and meaning."""
    current = settings_from_env()
    rows = [
        (name, str(getattr(current, name[4:].lower())), default, doc)
        for name, default, doc in Settings.describe()
    ]
    if as_json:
        click.echo(json.dumps({r[0]: r[1] for r in rows if not Settings.is_secret(r[0])}, indent=2))
        return
    for name, value, default, doc in rows:
        shown = "***" if Settings.is_secret(name) and value else value
        click.echo(
            f"{name:<32} {shown!s:<24} {doc}"
            + (f" [default {default}]" if shown != default else "")
        )


if __name__ == "__main__":
    main()
