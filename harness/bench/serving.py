"""``ecc bench serving``: answers through the real broker, idle and while the node learns.

One run, on an embedded broker with a real ``ecc serve --roles edge`` worker:

1. The limits: the model alone in this process (utterances per second in micro-batches of
   ``ECC_INFER_BATCH``, and one utterance at a time), and the raw broker round trip (one
   record produced and consumed, one at a time, by aiokafka).
2. ``max_turns_per_s``: a burst of turns sent at once, answered per second.
3. Load points: turns offered at each share of that maximum for a fixed time, first with
   the learner idle, then with it busy (a LoRA consolidation running for the whole phase,
   and a training batch, so a head refit, every ``learn_every_s``). For each: the rate
   achieved, the end-to-end latency (sent to answer read back) p50, p99 and mean, and
   the worker's own account of where a turn's time went: the mean seconds per turn of
   each stage of ``ecc_serve_stage_seconds`` over the point (``stage_ms_mean``; what is
   left of the mean latency is the answer's way back: the broker, the reader's fetch).

``serving.json`` holds every figure; ``latency.png`` draws latency against load.
"""

from __future__ import annotations

import asyncio
import os
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from harness.bench.report import environment, fmt, one_at_a_time_ms_p50, table, write_json
from harness.broker import EmbeddedBroker
from harness.clients import send_labelled
from harness.console import say
from harness.options import ServingBenchOptions
from harness.processes import free_port, stop
from harness.scrape import samples
from harness.workers import start_worker
from learners.edge_node import EdgeNode
from models.compute import resolve_precision, serving_threads
from models.registry import AdapterRegistry
from scenarios.datasets import Example
from streams import topics
from streams.kafka import consumer, ensure_topics, producer
from streams.schemas import AdapterEvent, ChatInbound, TurnBatch, decode
from streams.settings import Settings

NODE = "bench-node"
STAGE_METRIC = "ecc_serve_stage_seconds"
BUSY_STEPS = 10**9  # the busy phase's consolidation outlasts it


def model_alone(node: EdgeNode, texts: list[str], batch: int, threads: int) -> dict[str, float]:
    """Utterances per second in micro-batches of ``batch``, and single-utterance ms, with
    ``threads`` torch threads."""
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        return _model_alone(node, texts, batch)
    finally:
        torch.set_num_threads(before)


def _model_alone(node: EdgeNode, texts: list[str], batch: int) -> dict[str, float]:
    node.predict(texts[:batch])  # warm up
    started = time.perf_counter()
    for i in range(0, len(texts), batch):
        node.predict(texts[i : i + batch])
    batched = len(texts) / (time.perf_counter() - started)
    return {"utt_per_s": batched, "single_ms_p50": one_at_a_time_ms_p50(node.predict, texts[:200])}


async def broker_round_trip(s: Settings, n: int) -> float:
    """p50 milliseconds from producing one record to consuming it, one at a time (on a
    service topic nothing reads yet: the worker is not started)."""
    topic = s.topic_prefix + topics.CHAT_FEEDBACK
    seconds = []
    async with producer(s, linger_ms=0) as p, consumer(s, [topic]) as c:
        for i in range(n + 5):
            started = time.perf_counter()
            await p.send_and_wait(topic, str(i).encode())
            got = False
            while not got:
                got = any((await c.getmany(timeout_ms=1000)).values())
            if i >= 5:  # the first ones join and fetch metadata
                seconds.append(time.perf_counter() - started)
    return 1000 * float(np.percentile(seconds, 50))


async def exchange(
    s: Settings, texts: Sequence[str], tag: str, rate: float | None, duration_s: float | None
) -> dict[str, Any]:
    """Send turns (all at once, or at ``rate`` for ``duration_s``) and read every answer."""
    sent: dict[str, float] = {}
    got: dict[str, float] = {}
    prefix = s.topic_prefix
    count = len(texts) if rate is None or duration_s is None else int(rate * duration_s)
    async with (
        consumer(s, [prefix + topics.CHAT_TURNS]) as cons,
        producer(s, linger_ms=0 if rate else 2) as prod,
    ):

        async def send() -> None:
            start = time.monotonic()
            for i in range(count):
                if rate:
                    delay = start + i / rate - time.monotonic()
                    if delay > 0:
                        await asyncio.sleep(delay)
                turn_id = f"{tag}-{i}"
                record = ChatInbound(turn_id=turn_id, node_id=NODE, text=texts[i % len(texts)])
                sent[turn_id] = time.time()
                await prod.send(prefix + topics.CHAT_INBOUND, record.dumps(), key=NODE.encode())
            await prod.flush()

        task = asyncio.create_task(send())
        deadline = time.monotonic() + 60 + count / 20
        while (len(got) < count or not task.done()) and time.monotonic() < deadline:
            for msgs in (await cons.getmany(timeout_ms=50)).values():
                now = time.time()
                for m in msgs:
                    for turn_id in decode(TurnBatch, m.value).turn_ids:
                        if turn_id in sent:
                            got.setdefault(turn_id, now)
        await task
    latencies = [got[t] - sent[t] for t in got]
    span = max(got.values()) - min(sent.values()) if got else float("nan")
    return {
        "turns": count,
        "answered": len(got),
        "achieved_turns_per_s": len(got) / span if got else 0.0,
        "latency_ms_p50": 1000 * float(np.percentile(latencies, 50)) if latencies else None,
        "latency_ms_p99": 1000 * float(np.percentile(latencies, 99)) if latencies else None,
        "latency_ms_mean": 1000 * float(np.mean(latencies)) if latencies else None,
    }


def stage_totals(url: str) -> dict[str, tuple[float, float]]:
    """Seconds and turns so far of each serving stage, from the worker's ``/metrics``."""
    totals: dict[str, list[float]] = {}
    for sample in samples(url):
        if sample.name in (STAGE_METRIC + "_sum", STAGE_METRIC + "_count"):
            pair = totals.setdefault(sample.labels["stage"], [0.0, 0.0])
            pair[sample.name.endswith("_count")] += sample.value
    return {stage: (total, count) for stage, (total, count) in totals.items()}


def stage_means_ms(
    before: dict[str, tuple[float, float]], after: dict[str, tuple[float, float]]
) -> dict[str, float]:
    """Mean milliseconds per turn of each stage between two :func:`stage_totals`."""
    means = {}
    for stage, (total, count) in after.items():
        total0, count0 = before.get(stage, (0.0, 0.0))
        if count > count0:
            means[stage] = 1000 * (total - total0) / (count - count0)
    return means


class BusyLearner:
    """Keeps the worker's learner busy: one consolidation begun, then a training batch
    every ``every_s`` seconds until stopped."""

    def __init__(self, s: Settings, examples: Sequence[Example], every_s: float) -> None:
        self.s, self.examples, self.every_s = s, list(examples), every_s
        self.sent = 0
        self.began = False
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        await self._send()
        await self._consolidating()
        self._task = asyncio.create_task(self._loop())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()

    async def _loop(self) -> None:
        while True:
            await asyncio.sleep(self.every_s)
            await self._send()

    async def _send(self) -> None:
        chunk = self.examples[(self.sent * 32) % len(self.examples) :][:32]
        pairs = [(e.text, e.label) for e in chunk]
        await send_labelled(self.s, NODE, f"busy-{self.sent}", pairs)
        self.sent += 1

    async def _consolidating(self, timeout_s: float = 120) -> None:
        async with consumer(self.s, [self.s.topic_prefix + topics.ADAPTERS_EVENTS]) as c:
            deadline = time.monotonic() + timeout_s
            while time.monotonic() < deadline:
                for msgs in (await c.getmany(timeout_ms=200)).values():
                    for m in msgs:
                        if AdapterEvent.model_validate_json(m.value).status == "consolidating":
                            self.began = True
                            return
        raise TimeoutError("the worker did not begin a consolidation")


def run_serving(
    seeds: list[Example],
    texts: list[str],
    learn: list[Example],
    base: Settings,
    out: Path,
    o: ServingBenchOptions,
) -> dict[str, Any]:
    """Every figure of the serving bench (see the module docstring)."""
    out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp, EmbeddedBroker(log=out / "broker.log") as b:
        state = Path(tmp)
        s = base.replace(
            broker=b.bootstrap,
            state_dir=state,
            app_id="ecc-bench-serving",
            topic_prefix="bench.",
            metrics_port=free_port(),
            consolidate_every=1,
            consolidate_steps=BUSY_STEPS,
        )
        asyncio.run(ensure_topics(s))
        registry = AdapterRegistry(state / "adapters")
        opts = s.edge_options()
        EdgeNode.bootstrap(
            NODE, registry, state, [e.text for e in seeds], [e.label for e in seeds], opts
        )
        say("      the model alone, in this process")
        node = EdgeNode(NODE, registry, state, opts)
        alone = model_alone(node, texts, s.infer_batch, os.cpu_count() or 1)
        threads = serving_threads(s.infer_threads)
        alone_serving = model_alone(node, texts, s.infer_batch, threads)
        del node
        say("      the raw broker round trip")
        round_trip = asyncio.run(broker_round_trip(s, o.round_trips))
        worker = start_worker(s, out / "serving-worker.log", roles="edge")
        try:
            asyncio.run(exchange(s, texts[:64], "warm", None, None))
            say(f"      a burst of {o.burst_turns} turns")
            burst = asyncio.run(exchange(s, texts[: o.burst_turns], "burst", None, None))
            top = burst["achieved_turns_per_s"]
            points = asyncio.run(_points(s, texts, top, o, None))
            busy = BusyLearner(s, learn, o.learn_every_s)
            points += asyncio.run(_points(s, texts, top, o, busy))
        finally:
            stop(worker, timeout=30)
    report = {
        "benchmark": "serving",
        "infer_batch": s.infer_batch,
        "fetch_max_wait_ms": s.fetch_max_wait_ms,
        "model_alone_utt_per_s": alone["utt_per_s"],
        "single_utterance_ms_p50": alone["single_ms_p50"],
        "model_alone_serving_threads": {
            "torch_threads": threads,
            "utt_per_s": alone_serving["utt_per_s"],
            "single_utterance_ms_p50": alone_serving["single_ms_p50"],
        },
        "model_precision": str(resolve_precision(s.model_precision)).removeprefix("torch."),
        "broker_round_trip_ms_p50": round_trip,
        "max_turns_per_s": top,
        "burst": burst,
        "load_points": points,
        "busy_learner": {"consolidation_began": busy.began, "training_batches": busy.sent},
        "options": {"seconds_per_point": o.seconds_per_point, "learn_every_s": o.learn_every_s},
        "environment": environment(),
    }
    write_json(out / "serving.json", report)
    plot_latency(out / "latency.png", report)
    print(render(report, out))
    return report


async def _points(
    s: Settings,
    texts: list[str],
    top: float,
    o: ServingBenchOptions,
    busy: BusyLearner | None,
) -> list[dict[str, Any]]:
    if busy is not None:
        say(
            "      the learner busy: a LoRA consolidation and a training batch every "
            f"{o.learn_every_s:g} s"
        )
        await busy.start()
    points = []
    try:
        for share in o.shares:
            rate = max(1.0, share * top)
            tag = f"{'busy' if busy else 'idle'}-{share:g}"
            say(f"      {tag}: {rate:.0f} turns/s for {o.seconds_per_point:g} s")
            url = f"http://127.0.0.1:{s.metrics_port}/metrics"
            before = stage_totals(url)
            got = await exchange(s, texts, tag, rate, o.seconds_per_point)
            stages = stage_means_ms(before, stage_totals(url))
            points.append(
                {
                    "offered_share": share,
                    "offered_turns_per_s": rate,
                    "achieved_turns_per_s": got["achieved_turns_per_s"],
                    "learning": busy is not None,
                    "latency_ms_p50": got["latency_ms_p50"],
                    "latency_ms_p99": got["latency_ms_p99"],
                    "latency_ms_mean": got["latency_ms_mean"],
                    "stage_ms_mean": stages,
                    "answered": got["answered"],
                    "turns": got["turns"],
                }
            )
    finally:
        if busy is not None:
            await busy.stop()
    return points


def plot_latency(path: Path, r: dict[str, Any]) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 5))
    for learning, colour in ((False, "tab:blue"), (True, "tab:red")):
        pts = [p for p in r["load_points"] if p["learning"] == learning]
        x = [p["offered_turns_per_s"] for p in pts]
        name = "learner busy" if learning else "learner idle"
        ax.plot(x, [p["latency_ms_p50"] for p in pts], "o-", color=colour, label=f"p50, {name}")
        ax.plot(x, [p["latency_ms_p99"] for p in pts], "s--", color=colour, label=f"p99, {name}")
    ax.axvline(r["max_turns_per_s"], color="gray", linestyle=":", label="measured maximum")
    ax.set_xlabel("offered turns per second")
    ax.set_ylabel("end-to-end latency (ms)")
    ax.set_yscale("log")
    ax.set_title("Answers through the broker: latency against load")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def render(r: dict[str, Any], out: Path) -> str:
    rows = [
        (
            "model alone utt/s (batch " + str(r["infer_batch"]) + ")",
            fmt(r["model_alone_utt_per_s"]),
        ),
        ("single utterance ms p50", fmt(r["single_utterance_ms_p50"])),
        (
            f"  with the worker's {r['model_alone_serving_threads']['torch_threads']} torch "
            "thread(s): utt/s, single ms",
            f"{fmt(r['model_alone_serving_threads']['utt_per_s'])}, "
            f"{fmt(r['model_alone_serving_threads']['single_utterance_ms_p50'])}",
        ),
        ("inference precision", r["model_precision"]),
        ("raw broker round trip ms p50", fmt(r["broker_round_trip_ms_p50"], digits=2)),
        ("served through the broker: max turns/s", fmt(r["max_turns_per_s"])),
    ]
    for p in r["load_points"]:
        rows.append(
            (
                f"{100 * p['offered_share']:.0f} % ({p['offered_turns_per_s']:.0f}/s), "
                f"{'learner busy' if p['learning'] else 'learner idle'}",
                f"achieved {fmt(p['achieved_turns_per_s'])}/s, latency ms p50 "
                f"{fmt(p['latency_ms_p50'])} p99 {fmt(p['latency_ms_p99'])}",
            )
        )
        stages = ", ".join(f"{k} {v:.1f}" for k, v in p["stage_ms_mean"].items())
        if stages and p["latency_ms_mean"] is not None:
            back = p["latency_ms_mean"] - sum(p["stage_ms_mean"].values())
            stages += f"; the way back {back:.1f} (of a mean {p['latency_ms_mean']:.1f})"
        rows.append(("  in the worker, mean ms per turn", stages or "none observed"))
    rows.append(("report", f"{out / 'serving.json'}, {out / 'latency.png'}"))
    return "\n==== ecc bench serving " + "=" * 40 + "\n" + table(rows) + "\n"
