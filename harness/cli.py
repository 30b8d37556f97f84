"""The harness's ``ecc`` commands: ``ecc demo``, ``ecc bench ...`` and ``ecc soak``.

They reach the ``ecc`` command line through the ``ecc.commands`` entry points (see
``pyproject.toml``), so the service's own CLI (:mod:`streams.cli`) never imports the
harness. Every default comes from :mod:`harness.options`; the work is imported only when a
command runs.
"""

from __future__ import annotations

import functools
import signal
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, get_args

import click

from harness.options import (
    DRIFT_QUICK,
    FLEET_QUICK,
    LEARNER_QUICK_STREAM,
    LEARNER_QUICK_TEST,
    LOOP_BENCH_RATE,
    NODES_QUICK,
    PRECISION_QUICK_PER_INTENT,
    SERVING_QUICK,
    TEACHER_QUICK_TURNS,
    WEBHOOK_BENCH_S,
    DemoOptions,
    DriftBenchOptions,
    FleetBenchOptions,
    LearnerBenchOptions,
    NodesBenchOptions,
    ServingBenchOptions,
    SoakOptions,
    TeacherBenchOptions,
)
from scenarios.scenario import Kind
from streams.cli import settings_from_env

DEMO, SOAK, DRIFT, TEACHER = (
    DemoOptions(),
    SoakOptions(),
    DriftBenchOptions(),
    TeacherBenchOptions(),
)
LEARNER = LearnerBenchOptions()
SERVING = ServingBenchOptions()
NODES = NodesBenchOptions()


def _replay_options(rate: float) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """The options of a replayed scenario, shared by ``ecc demo`` and ``ecc bench loop``."""
    return functools.partial(_add_replay_options, rate=rate)


def _add_replay_options(f: Callable[..., Any], rate: float) -> Callable[..., Any]:
    options = [
        click.option(
            "--scenario",
            type=click.Choice(list(get_args(Kind))),
            default=DEMO.scenario,
            show_default=True,
            help="The drift in the replayed stream: new intents emerge, one intent's phrasing "
            "shifts (at once or gradually), one known intent splits in two, or none.",
        ),
        click.option(
            "--turns", type=int, default=DEMO.turns, show_default=True, help="Turns to replay."
        ),
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
            default=",".join(DEMO.nodes),
            show_default=True,
            help="Comma-separated edge node ids; each gets its own intent mix.",
        ),
        click.option(
            "--label-rate",
            type=float,
            default=DEMO.label_rate,
            show_default=True,
            help="Share of turns whose user gives the right intent (correction/confirmation).",
        ),
        click.option(
            "--thumbs-rate",
            type=float,
            default=DEMO.thumbs_rate,
            show_default=True,
            help="Share of turns that get a thumbs up or down only (a thumbs-up confirms the "
            "served intent, so it is a label too).",
        ),
        click.option(
            "--retrain-every",
            type=int,
            default=DEMO.retrain_every,
            show_default=True,
            help="The periodic-retraining peer refits every this many turns of its node.",
        ),
        click.option("--no-peers", is_flag=True, help="Skip the static, river and periodic peers."),
        click.option("--seed", type=int, default=DEMO.seed, show_default=True),
    ]
    for option in reversed(options):
        f = option(f)
    return f


def _demo_options(data: str | None, out: Path, nodes: str, no_peers: bool, **kw: Any) -> Any:
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
    from harness.demo import run_demo

    signal.signal(signal.SIGTERM, _interrupt)
    signal.signal(signal.SIGINT, _interrupt)
    try:
        return run_demo(options, settings_from_env())
    except KeyboardInterrupt:
        click.echo("\ninterrupted: broker and worker stopped", err=True)
        sys.exit(130)


@click.command()
@click.option(
    "--data",
    type=click.Path(exists=True),
    help="CSV (text,label) folder/file or "
    "CLINC150 data_full.json. Default: the built-in e-commerce generator.",
)
@_replay_options(rate=DEMO.rate)
@click.option(
    "--out",
    type=click.Path(path_type=Path),
    default=DEMO.out,
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


@click.group()
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
@click.option(
    "--lora-ablation",
    is_flag=True,
    help="After the stream, one LoRA consolidation (ECC_CONSOLIDATE_STEPS steps) over the "
    "node's memory: test accuracy of the head alone against head + LoRA.",
)
@_out_option("reports/bench-learner", "learner.json and the prequential-accuracy plot")
@click.option("--seed", type=int, default=LEARNER.seed, show_default=True)
def bench_learner(
    data: str | None,
    quick: bool,
    stream_limit: int | None,
    test_limit: int | None,
    serving: bool,
    lora_ablation: bool,
    out: Path,
    seed: int,
) -> None:
    """The edge learner on real data next to river and offline peers; latency; serving.

    Starts each node from 10 labelled examples per intent and streams the rest of the
    training split as 32-example feedback batches through the production learner (memory,
    head refit, held-out gate; LoRA consolidation if ECC_CONSOLIDATE_EVERY is set). See
    harness/bench/learner.py for every figure's definition.
    """
    from harness.bench.run import run_learner_bench

    if quick:
        stream_limit = stream_limit or LEARNER_QUICK_STREAM
        test_limit = test_limit or LEARNER_QUICK_TEST
    o = LearnerBenchOptions(
        stream_limit=stream_limit, test_limit=test_limit, lora_ablation=lora_ablation, seed=seed
    )
    run_learner_bench(data, o, serving, out, settings_from_env())


@bench.command("drift")
@_datasets_option
@click.option("--quick", is_flag=True, help="Short streams, one seed (a few minutes).")
@click.option("--turns", type=int, default=DRIFT.turns, show_default=True, help="Turns per stream.")
@click.option(
    "--seeds", type=int, default=DRIFT.seeds, show_default=True, help="Streams per scenario."
)
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
    dataset. See harness/bench/drift.py for every figure's definition.
    """
    from harness.bench.drift import run_drift_bench

    specs = _datasets(datasets)
    o = DriftBenchOptions(turns=turns, seeds=seeds)
    if quick:
        o = DRIFT_QUICK
    run_drift_bench(specs, o, out, throughput)


@bench.command("teacher")
@_datasets_option
@click.option(
    "--turns", type=int, default=TEACHER.turns, show_default=True, help="Turns per stream."
)
@click.option(
    "--budget",
    type=int,
    default=TEACHER.budget_per_minute,
    show_default=True,
    help="Teacher requests/min.",
)
@click.option("--quick", is_flag=True, help="A short stream (2,000 turns) for a smoke run.")
@_out_option("reports/bench-teacher", "teacher.json")
def bench_teacher(
    datasets: tuple[str, ...], turns: int, budget: int, quick: bool, out: Path
) -> None:
    """Accuracy recovered per teacher request: the request policy against random turns at
    the same budget, on an emerging-intent stream. See harness/bench/teacher.py."""
    from harness.bench.teacher import run_teacher_bench

    specs = _datasets(datasets)
    o = TeacherBenchOptions(turns=TEACHER_QUICK_TURNS if quick else turns, budget_per_minute=budget)
    run_teacher_bench(specs, o, out, settings_from_env())


@bench.command("serving")
@click.option(
    "--data",
    type=click.Path(exists=True),
    help="Dataset whose test texts are served (its seeds bootstrap the node). Default: the "
    "generator.",
)
@click.option(
    "--quick", is_flag=True, help="Short load points (6 s each) and a small burst, for CI."
)
@click.option(
    "--seconds-per-point",
    type=float,
    default=SERVING.seconds_per_point,
    show_default=True,
    help="Seconds each load point is offered.",
)
@_out_option("reports/bench-serving", "serving.json and latency.png")
def bench_serving(data: str | None, quick: bool, seconds_per_point: float, out: Path) -> None:
    """Answers through the embedded broker and a real edge worker: latency against load.

    Measures the model alone and the raw broker round trip, the most turns per second the
    worker answers, then offers 25, 50 and 90 % of that, first with the learner idle, then
    busy (a LoRA consolidation and a head refit every few seconds). See
    harness/bench/serving.py.
    """
    import dataclasses

    from harness.bench.learner import plan_stream
    from harness.bench.serving import run_serving
    from scenarios.datasets import load_dataset
    from scenarios.generator import generated_dataset

    o = (
        SERVING_QUICK
        if quick
        else dataclasses.replace(SERVING, seconds_per_point=seconds_per_point)
    )
    dataset = load_dataset(data) if data else generated_dataset(o.seed)
    plan = plan_stream(dataset, LearnerBenchOptions(seed=o.seed))
    texts = [e.text for e in plan.test][:2000]
    run_serving(plan.seeds, texts, plan.stream, settings_from_env(), out, o)


@bench.command("nodes")
@click.option(
    "--data",
    type=click.Path(exists=True),
    help="Dataset the nodes' seeds and the turns come from. Default: the generator.",
)
@click.option("--quick", is_flag=True, help="10 and 40 nodes, fewer turns (for CI).")
@_out_option("reports/bench-nodes", "nodes.json and nodes.png")
def bench_nodes(data: str | None, quick: bool, out: Path) -> None:
    """Many nodes in one worker: memory per node, mixed-node throughput, cold loads.

    Bootstraps 10, 100 and 1,000 nodes (each its own head and LoRA adapter), loads them
    into one fresh process and answers a Zipf mix of turns over them in micro-batches,
    against the same turns for one node. See harness/bench/nodes.py.
    """
    import tempfile

    from harness.bench.nodes import run_nodes
    from scenarios.datasets import load_dataset
    from scenarios.generator import generated_dataset

    o = NODES_QUICK if quick else NODES
    dataset = load_dataset(data) if data else generated_dataset(o.seed)
    s = settings_from_env()
    with tempfile.TemporaryDirectory(prefix="ecc-bench-nodes-") as folder:
        run_nodes(dataset, s.edge_options(), s.infer_threads, Path(folder), out, o)


@bench.command("fleet-learning")
@click.option(
    "--data",
    type=click.Path(exists=True),
    help="Dataset the nodes' seeds, labels and test split come from. Default: the generator.",
)
@click.option("--quick", is_flag=True, help="Fewer intents and rounds (for CI).")
@_out_option("reports/bench-fleet", "fleet_learning.json and fleet_learning.png")
def bench_fleet(data: str | None, quick: bool, out: Path) -> None:
    """Fleet learning: a new intent learnt at one node, answered at the others.

    Four nodes learn the same stream twice, alone and with a fleet aggregation round
    after every round of batches (adopted only through each node's gate); new intents
    reach the first node early and the others late. Then a new node starts from a few
    seeds alone and from the fleet's prior. See harness/bench/fleet.py.
    """
    import tempfile

    from harness.bench.fleet import run_fleet
    from scenarios.datasets import load_dataset
    from scenarios.generator import generated_dataset

    o = FLEET_QUICK if quick else FleetBenchOptions()
    dataset = load_dataset(data) if data else generated_dataset(o.seed)
    s = settings_from_env()
    with tempfile.TemporaryDirectory(prefix="ecc-bench-fleet-") as folder:
        run_fleet(dataset, s.edge_options(), s.fleet_options(), Path(folder), out, o)


@bench.command("precision")
@click.option(
    "--data",
    type=click.Path(exists=True),
    help="Dataset whose train and test splits are embedded. Default: the generator.",
)
@click.option(
    "--quick", is_flag=True, help="A small generated dataset (for CI), unless --data is given."
)
@_out_option("reports/bench-precision", "precision.json")
def bench_precision(data: str | None, quick: bool, out: Path) -> None:
    """Accuracy and speed of the end model at float32 and at bfloat16 (ECC_MODEL_PRECISION).

    Embeds the train and test splits at each precision through the production inference
    path, fits one LogisticRegression per precision (C by 5-fold CV on float32) and scores
    the test split; also utterances per second and one utterance's latency. See
    harness/bench/precision.py.
    """
    from harness.bench.precision import run_precision
    from scenarios.datasets import load_dataset
    from scenarios.generator import generated_dataset

    if data:
        dataset = load_dataset(data)
    elif quick:
        dataset = generated_dataset(0, *PRECISION_QUICK_PER_INTENT)
    else:
        dataset = generated_dataset(0)
    run_precision(dataset, out)


@bench.command("webhook")
@click.option(
    "--duration", type=float, default=WEBHOOK_BENCH_S, show_default=True, help="Seconds per run."
)
@click.option("--quick", is_flag=True, help="One run (32 connections) instead of three.")
@_out_option("reports/bench-webhook", "webhook.json")
def bench_webhook(duration: float, quick: bool, out: Path) -> None:
    """Accepted feedback per second and latency percentiles of the webhook under wrk.

    Starts an embedded broker and an `ecc webhook`, then drives it with wrk (Debian package
    `wrk`; `make tools` installs it) using distinct pre-signed requests: single feedback at
    32 and at 4 connections, and batches of 50. Every accepted id is checked on
    chat.feedback. See harness/bench/webhook.py.
    """
    from harness.bench.webhook import run_webhook_bench

    try:
        run_webhook_bench(out, duration, settings_from_env(), quick)
    except RuntimeError as exc:
        raise click.ClickException(str(exc)) from exc


@bench.command("loop")
@_datasets_option
@_replay_options(rate=LOOP_BENCH_RATE)
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
    harness/bench/loop.py for every figure's definition.
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


@click.command()
@click.option(
    "--kills", type=int, default=SOAK.kills, show_default=True, help="kill -9 + restarts."
)
@click.option(
    "--kill-every",
    type=float,
    default=SOAK.kill_every_s,
    show_default=True,
    help="Mean seconds between kills.",
)
@click.option(
    "--load",
    "load_s",
    type=float,
    default=SOAK.load_s,
    show_default=True,
    help="Seconds of load after.",
)
@click.option("--rate", type=float, default=SOAK.rate, show_default=True, help="Turns per second.")
@click.option("--quick", is_flag=True, help="4 kills (one per worker kind) and 60 s of load.")
@_out_option(str(SOAK.out), "soak.json and soak.png")
def soak(kills: int, kill_every: float, load_s: float, rate: float, quick: bool, out: Path) -> None:
    """Crash and load soak: kill -9 each worker kind in turn while traffic and feedback
    flow, then sustained load; then audit what was accepted against what was learnt.

    Runs one `ecc serve` per worker kind (edge, drift, feedback, teacher) and an `ecc
    webhook` on the embedded broker, and prints kills survived, feedback accepted /
    applied / lost, DLQ counts, peak RSS and lag. Exits 1 if anything was lost or corrupt.
    See harness/soak.py.
    """
    from harness.soak import run_soak, verdict

    if quick:
        kills, load_s = min(kills, 4), min(load_s, 60.0)
    if kills < 0 or kill_every <= 0 or load_s < 0 or rate <= 0:
        raise click.BadParameter("--kills, --kill-every, --load and --rate must be positive")
    options = SoakOptions(kills=kills, kill_every_s=kill_every, load_s=load_s, rate=rate, out=out)
    signal.signal(signal.SIGTERM, _interrupt)
    try:
        report = run_soak(options, settings_from_env())
    except KeyboardInterrupt:
        click.echo("\ninterrupted: workers, webhook and broker stopped", err=True)
        sys.exit(130)
    problems = verdict(report)
    for p in problems:
        click.echo(f"FAILED: {p}", err=True)
    if problems:
        sys.exit(1)
