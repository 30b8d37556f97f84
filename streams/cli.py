"""The ``ecc`` command line: demo, serve, topics, nodes, adapters, settings."""

from __future__ import annotations

import asyncio
import functools
import json
import logging
import signal
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, get_args

import click

from scenarios.scenario import Kind
from streams.settings import Settings


def _settings(**overrides: Any) -> Settings:
    try:
        return Settings.from_env(None, **{k: v for k, v in overrides.items() if v is not None})
    except ValueError as exc:
        raise click.UsageError(str(exc)) from exc


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
def main() -> None:
    """Streaming online learning for customer-service intent models.

    Edge nodes serve intents and fine-tune LoRA adapters from live feedback; drift is scored
    per intent; a cloud teacher re-annotates drifting intents. Settings come from ECC_*
    environment variables (see `ecc settings`).
    """


def _replay_options(rate: float) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """The options of a replayed scenario, shared by ``ecc demo`` and ``ecc bench loop``."""
    return functools.partial(_add_replay_options, rate=rate)


def _add_replay_options(f: Callable[..., Any], rate: float) -> Callable[..., Any]:
    options = [
        click.option(
            "--scenario",
            type=click.Choice(list(get_args(Kind))),
            default="emerging",
            show_default=True,
            help="The drift in the replayed stream: new intents emerge, one intent's phrasing "
            "shifts (at once or gradually), one known intent splits in two, or none.",
        ),
        click.option("--turns", type=int, default=6000, show_default=True, help="Turns to replay."),
        click.option(
            "--rate",
            type=float,
            default=rate,
            show_default=True,
            help="Turns per second (all nodes together). The learner works in wall-clock time "
            "and the peers per turn, so a higher rate leaves the system fewer updates per turn.",
        ),
        click.option(
            "--nodes",
            default="store-eu,store-us",
            show_default=True,
            help="Comma-separated edge node ids; each gets its own intent mix.",
        ),
        click.option(
            "--label-rate",
            type=float,
            default=0.02,
            show_default=True,
            help="Share of turns whose user gives the right intent (correction/confirmation).",
        ),
        click.option(
            "--thumbs-rate",
            type=float,
            default=0.06,
            show_default=True,
            help="Share of turns that get a thumbs up or down only (a thumbs-up confirms the "
            "served intent, so it is a label too).",
        ),
        click.option(
            "--retrain-every",
            type=int,
            default=500,
            show_default=True,
            help="The periodic-retraining peer refits every this many turns of its node.",
        ),
        click.option("--no-peers", is_flag=True, help="Skip the static, river and periodic peers."),
        click.option("--seed", type=int, default=7, show_default=True),
    ]
    for option in reversed(options):
        f = option(f)
    return f


def _demo_options(data: str | None, out: Path, nodes: str, no_peers: bool, **kw: Any) -> Any:
    from streams.demo import DemoOptions

    node_ids = tuple(n for n in nodes.split(",") if n)
    if len(set(node_ids)) != len(node_ids) or not node_ids:
        raise click.BadParameter(f"{nodes!r}: give one or more distinct ids", param_hint="--nodes")
    for name in ("label_rate", "thumbs_rate"):
        if not 0.0 <= kw[name] <= 1.0:
            raise click.BadParameter(
                f"must be in [0, 1], got {kw[name]}", param_hint="--" + name.replace("_", "-")
            )
    if kw["label_rate"] + kw["thumbs_rate"] > 1.0:
        raise click.BadParameter("--label-rate + --thumbs-rate must be at most 1")
    if kw["turns"] < 1 or kw["rate"] <= 0 or kw["retrain_every"] < 1:
        raise click.BadParameter("--turns, --rate and --retrain-every must be positive")
    return DemoOptions(data=data, out=out, nodes=node_ids, peers=not no_peers, **kw)


def _run_demo(options: Any) -> dict[str, Any]:
    """Run the demo; Ctrl-C and `kill` stop it cleanly, also when started with SIGINT
    ignored (background)."""
    from streams.demo import run_demo

    signal.signal(signal.SIGTERM, _interrupt)
    signal.signal(signal.SIGINT, _interrupt)
    try:
        return run_demo(options, _settings())
    except KeyboardInterrupt:
        click.echo("\ninterrupted: broker and worker stopped", err=True)
        sys.exit(130)


@main.command()
@click.option(
    "--data",
    type=click.Path(exists=True),
    help="CSV (text,label) folder/file or "
    "CLINC150 data_full.json. Default: the built-in e-commerce generator.",
)
@_replay_options(rate=60.0)
@click.option(
    "--out",
    type=click.Path(path_type=Path),
    default=Path("var/demo"),
    show_default=True,
    help="Folder for state, logs, the summary and the loop report (emptied first).",
)
def demo(data: str | None, out: Path, **kw: Any) -> None:
    """Run everything on an embedded broker and replay a drifting stream through it.

    Starts a Tansu broker, a stream worker (edge nodes, drift, feedback, teacher, learner)
    and the feedback webhook, replays customer turns with simulated user feedback, then
    prints what happened: drift alarms, teacher requests, batches, adapter versions,
    accuracy before and after; and the loop report (the same stream through the static,
    river and periodic-retraining peers; see `ecc bench loop`). Ctrl-C stops it cleanly
    at any point.
    """
    summary = _run_demo(_demo_options(data, out, **kw))
    if not summary.get("ok", False):
        sys.exit(1)


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


@main.command()
@click.option(
    "--roles",
    default="edge,drift,feedback,teacher",
    show_default=True,
    help="Which agents this worker runs (comma-separated).",
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

    settings = _settings()
    if not settings.broker:
        raise click.UsageError("set ECC_BROKER to the Kafka bootstrap servers (host:port)")
    settings.state_dir.mkdir(parents=True, exist_ok=True)
    chosen = tuple(r for r in roles.split(",") if r)
    try:  # settings mistakes (roles, PII kinds) before any connection
        app, _ = create_app(settings, chosen)
    except ValueError as exc:
        raise click.UsageError(str(exc)) from exc
    asyncio.run(_ensure(settings, chosen))
    metrics.serve(settings.metrics_port)
    logging.basicConfig(level=settings.log_level.upper())
    Worker(app, loglevel=settings.log_level, quiet=True).execute_from_commandline()


async def _ensure(settings: Settings, roles: tuple[str, ...] | None = None) -> list[str]:
    from streams.kafka import ensure_topics
    from streams.topics import ROLES

    return await ensure_topics(settings, roles=roles or ROLES)


@main.group()
def topics() -> None:
    """Manage the service's topics."""


@topics.command("create")
def topics_create() -> None:
    """Create every topic and dead-letter topic that is missing (ECC_TOPIC_PARTITIONS each)."""
    settings = _settings()
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
def node_init(node_id: str, data: str) -> None:
    """Create NODE_ID's first adapter version from labelled examples (head at centroids)."""
    from learners.edge_node import EdgeNode
    from models.registry import AdapterRegistry
    from scenarios.datasets import read_csv
    from streams.app import edge_options

    settings = _settings()
    examples = read_csv(data)
    registry = AdapterRegistry(settings.state_dir / "adapters", keep_last=settings.keep_versions)
    version = EdgeNode.bootstrap(
        node_id,
        registry,
        settings.state_dir,
        [e.text for e in examples],
        [e.label for e in examples],
        edge_options(settings),
    )
    click.echo(f"{node_id}: version {version} with {len({e.label for e in examples})} intents")


@main.group()
def adapters() -> None:
    """Inspect and roll back adapter versions in the registry (ECC_STATE_DIR/adapters)."""


def _registry():  # type: ignore[no-untyped-def]
    from models.registry import AdapterRegistry

    settings = _settings()
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


@main.group()
def bench() -> None:
    """Benchmarks: each prints its figures and writes them as JSON (and plots)."""


def _out_option(default: str, what: str) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """``--out``: the folder a benchmark writes its report to."""
    return click.option(
        "--out",
        type=click.Path(path_type=Path),
        default=Path(default),
        show_default=True,
        help=f"Folder for {what}.",
    )


_datasets_option = click.option(
    "--data",
    "datasets",
    multiple=True,
    help="Dataset folder/file, or `generated` for the built-in generator; repeat for more. "
    "Default: generated.",
)


def _datasets(datasets: tuple[str, ...]) -> list[str]:
    """The ``--data`` values, checked to exist (``generated`` when none is given)."""
    for spec in datasets:
        if spec != "generated" and not Path(spec).exists():
            raise click.BadParameter(f"{spec}: no such dataset", param_hint="--data")
    return list(datasets) or ["generated"]


@bench.command("learner")
@click.option(
    "--data",
    type=click.Path(exists=True),
    help="Dataset folder/file (e.g. ../shared/datasets/banking77). Default: the generator.",
)
@click.option("--quick", is_flag=True, help="A small stream and test set (a few minutes).")
@click.option("--stream-limit", type=int, help="Most labelled examples streamed.")
@click.option("--test-limit", type=int, help="Most test examples scored.")
@click.option(
    "--serving/--no-serving",
    default=True,
    show_default=True,
    help="Also measure serving through a real broker and edge worker.",
)
@_out_option("reports/bench-learner", "learner.json and the prequential-accuracy plot")
@click.option("--seed", type=int, default=7, show_default=True)
def bench_learner(
    data: str | None,
    quick: bool,
    stream_limit: int | None,
    test_limit: int | None,
    serving: bool,
    out: Path,
    seed: int,
) -> None:
    """The edge learner on real data next to river and offline peers; latency; serving.

    Starts each node from 10 labelled examples per intent and streams the rest of the
    training split as 32-example feedback batches through the production learner (LoRA,
    replay, held-out gate). See streams/bench/learner.py for every figure's definition.
    """
    from streams.bench.run import run_learner_bench

    if quick:
        stream_limit = stream_limit or 640
        test_limit = test_limit or 600
    run_learner_bench(data, stream_limit, test_limit, serving, out, seed, _settings())


@bench.command("drift")
@_datasets_option
@click.option("--quick", is_flag=True, help="Short streams, one seed (a few minutes).")
@click.option("--turns", type=int, default=40_000, show_default=True, help="Turns per stream.")
@click.option("--seeds", type=int, default=3, show_default=True, help="Streams per scenario.")
@click.option(
    "--throughput/--no-throughput",
    default=True,
    show_default=True,
    help="Also measure the drift worker's turns/s through the embedded broker.",
)
@_out_option("reports/bench-drift", "drift.json")
def bench_drift(
    datasets: tuple[str, ...], quick: bool, turns: int, seeds: int, throughput: bool, out: Path
) -> None:
    """Drift detection delay and false alarms per scenario; drift worker throughput.

    Scenarios: stationary, emerging intents, phrasing shift, gradual shift, over each
    dataset. See streams/bench/drift.py for every figure's definition.
    """
    from streams.bench.drift import DriftBenchOptions, run_drift_bench

    specs = _datasets(datasets)
    o = DriftBenchOptions(turns=turns, seeds=seeds)
    if quick:
        o = DriftBenchOptions(turns=8_000, seeds=1, throughput_turns=20_000, quick=True)
    run_drift_bench(specs, o, out, throughput)


@main.command()
def webhook() -> None:
    """Run the feedback webhook: POST /v1/feedback and /v1/feedback/batch (signed with
    HMAC-SHA256), /openapi.json, /healthz, /metrics.

    Needs ECC_BROKER and ECC_WEBHOOK_SECRETS (client=secret,...); listens on
    ECC_WEBHOOK_HOST:ECC_WEBHOOK_PORT. Answers 202 once the broker acknowledged the write.
    """
    import logging

    from streams.webhook.server import parse_secrets, serve

    settings = _settings()
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


@bench.command("teacher")
@_datasets_option
@click.option("--turns", type=int, default=6000, show_default=True, help="Turns per stream.")
@click.option("--budget", type=int, default=20, show_default=True, help="Teacher requests/min.")
@click.option("--quick", is_flag=True, help="A short stream (2,000 turns) for a smoke run.")
@_out_option("reports/bench-teacher", "teacher.json")
def bench_teacher(
    datasets: tuple[str, ...], turns: int, budget: int, quick: bool, out: Path
) -> None:
    """Accuracy recovered per teacher request: the request policy against random turns at
    the same budget, on an emerging-intent stream. See streams/bench/teacher.py."""
    from streams.bench.teacher import TeacherBenchOptions, run_teacher_bench

    specs = _datasets(datasets)
    o = TeacherBenchOptions(turns=2000 if quick else turns, budget_per_minute=budget)
    run_teacher_bench(specs, o, out, _settings())


@bench.command("webhook")
@click.option("--duration", type=float, default=15.0, show_default=True, help="Seconds per run.")
@click.option("--quick", is_flag=True, help="One run (32 connections) instead of three.")
@_out_option("reports/bench-webhook", "webhook.json")
def bench_webhook(duration: float, quick: bool, out: Path) -> None:
    """Accepted feedback per second and latency percentiles of the webhook under wrk.

    Starts an embedded broker and an `ecc webhook`, then drives it with wrk (Debian package
    `wrk`; `make tools` installs it) using distinct pre-signed requests: single feedback at
    32 and at 4 connections, and batches of 50. Every accepted id is checked on
    chat.feedback. See streams/bench/webhook.py.
    """
    from streams.bench.webhook import run_webhook_bench

    try:
        run_webhook_bench(out, duration, _settings(), quick)
    except RuntimeError as exc:
        raise click.ClickException(str(exc)) from exc


@bench.command("loop")
@_datasets_option
@_replay_options(rate=15.0)
@click.option(
    "--quick",
    is_flag=True,
    help="A short run for CI and smoke tests: 2,000 turns (at most 40/s), a refit every 150.",
)
@_out_option("reports/bench-loop", "one folder per dataset: loop.json, turns.csv, plots")
def bench_loop(datasets: tuple[str, ...], quick: bool, out: Path, **kw: Any) -> None:
    """The whole running system beside its peers on one replayed stream.

    For each --data, replays the scenario through the embedded broker, edge nodes, drift,
    feedback via the webhook, teacher and learner (as `ecc demo` does), then the same
    stream and the same user labels through a static model, a river online learner and a
    periodically retrained logistic regression on frozen embeddings. Writes loop.json
    (accuracy, recovery after the onset, labels, teacher requests, CPU seconds per arm),
    turns.csv and eval.csv (every prediction, to recompute any figure) and PNG plots. See
    streams/bench/loop.py for every figure's definition.
    """
    if quick:
        kw.update(turns=min(kw["turns"], 2000), rate=min(kw["rate"], 40.0), retrain_every=150)
    reports = []
    for spec in _datasets(datasets):
        data = None if spec == "generated" else spec
        name = (
            "generated"
            if data is None
            else Path(spec).stem
            if Path(spec).is_file()
            else Path(spec).name
        )
        options = _demo_options(data, out / name, **kw)
        click.echo(f"==== {name}: {options.scenario}, {options.turns} turns at {options.rate:g}/s")
        summary = _run_demo(options)
        if not summary.get("ok", False):
            raise click.ClickException(f"{name}: not every turn was served; see {options.out}")
        reports.append(options.out / "loop.json")
    click.echo("reports: " + ", ".join(str(p) for p in reports))


@main.command()
@click.option("--kills", type=int, default=20, show_default=True, help="kill -9 + restarts.")
@click.option(
    "--kill-every", type=float, default=12.0, show_default=True, help="Mean seconds between kills."
)
@click.option(
    "--load", "load_s", type=float, default=600.0, show_default=True, help="Seconds of load after."
)
@click.option("--rate", type=float, default=20.0, show_default=True, help="Turns per second.")
@click.option("--quick", is_flag=True, help="4 kills (one per worker kind) and 60 s of load.")
@_out_option("reports/soak", "soak.json and soak.png")
def soak(kills: int, kill_every: float, load_s: float, rate: float, quick: bool, out: Path) -> None:
    """Crash and load soak: kill -9 each worker kind in turn while traffic and feedback
    flow, then sustained load; then audit what was accepted against what was learnt.

    Runs one `ecc serve` per worker kind (edge, drift, feedback, teacher) and an `ecc
    webhook` on the embedded broker, and prints kills survived, feedback accepted /
    applied / lost, DLQ counts, peak RSS and lag. Exits 1 if anything was lost or corrupt.
    See streams/soak.py.
    """
    from streams.soak import SoakOptions, run_soak, verdict

    if quick:
        kills, load_s = min(kills, 4), min(load_s, 60.0)
    if kills < 0 or kill_every <= 0 or load_s < 0 or rate <= 0:
        raise click.BadParameter("--kills, --kill-every, --load and --rate must be positive")
    options = SoakOptions(kills=kills, kill_every_s=kill_every, load_s=load_s, rate=rate, out=out)
    signal.signal(signal.SIGTERM, _interrupt)
    try:
        report = run_soak(options, _settings())
    except KeyboardInterrupt:
        click.echo("\ninterrupted: workers, webhook and broker stopped", err=True)
        sys.exit(130)
    problems = verdict(report)
    for p in problems:
        click.echo(f"FAILED: {p}", err=True)
    if problems:
        sys.exit(1)


@main.command("settings")
@click.option("--json", "as_json", is_flag=True, help="Print as JSON.")
def show_settings(as_json: bool) -> None:
    """Print every ECC_* setting with its current value, default and meaning."""
    current = _settings()
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
