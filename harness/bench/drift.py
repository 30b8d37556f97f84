"""``ecc bench drift``: detection delay, false alarms and throughput of the drift scorer.

Detection. For each dataset and scenario kind (stationary, emerging, phrasing, gradual;
:mod:`scenarios.scenario`) and each seed, an end model (the packaged MiniLM, head at the
class centroids of 10 seed examples per initial intent, as a node starts) serves the
scenario's stream; its predictions, confidences and embeddings are fed, per node, in
micro-batches of ``batch`` turns to :class:`learners.drift.DriftMonitor`, the code the drift
agent runs, with thumbs feedback on ``feedback_rate`` of the turns. The model is not
adapted, so a shift stays in the traffic.

- *delay*: turns of the drifting traffic (emerging-intent turns, or the shifted intent's
  changed utterances) a node served from the onset up to its first alarm on a *relevant*
  intent: the shifted intent, or one that at least 5 % of the drifting turns are predicted
  as. Median and p90 over seeds x nodes; a node with no relevant alarm is a miss.
- *false alarms*: alarms per 10k turns on the stationary streams, and alarms on irrelevant
  intents or before the onset in the drifting ones.

Throughput. The stationary stream of the first dataset is written to a topic of the
embedded broker as the edge nodes write it (one TurnBatch record per micro-batch); then
(a) a raw aiokafka consumer reads the topic from the start (no decoding);
(b) a real ``ecc serve --roles drift`` worker, started on the filled topic, scores it; its
progress is read from its Prometheus counter ``ecc_drift_turns_scored_total``.
Both rates are steady-state turns/s, between the 10 % and 90 % marks of the stream
(:func:`steady_rate`), in the same run.
"""

from __future__ import annotations

import asyncio
import hashlib
import tempfile
import time
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm import tqdm

from harness import scrape
from harness.bench.drift_river import ARMS, make_arm
from harness.bench.report import environment, fmt, table, write_json
from harness.broker import EmbeddedBroker
from harness.console import say
from harness.options import DriftBenchOptions
from harness.processes import free_port, stop
from harness.workers import start_worker
from learners.drift import DriftConfig, DriftMonitor, DriftState
from models.end_model import EndModel
from scenarios.datasets import LabelledData, load_dataset
from scenarios.scenario import Scenario, ScenarioConfig, build_scenario
from streams import topics
from streams.kafka import consumer, ensure_topics, producer
from streams.schemas import ServedTurn, TurnBatch
from streams.settings import Settings

KINDS = ("stationary", "emerging", "phrasing", "gradual")
RELEVANT_SHARE = 0.05


@dataclass
class Served:
    """The model's answers to a scenario's stream, in stream order."""

    nodes: list[str]
    intents: list[str]
    confidences: np.ndarray[Any, Any]
    embeddings: np.ndarray[Any, Any]
    labels: list[str]
    drifted: np.ndarray[Any, Any]


@dataclass
class Outcome:
    delays: list[float] = field(default_factory=list)
    missed: int = 0
    false_alarms: int = 0
    turns: int = 0
    seconds: float = 0.0  # in the monitor's calls (the detector's own cost)
    named: Counter[str] = field(default_factory=Counter)
    alarms: list[dict[str, Any]] = field(default_factory=list)


class Embeddings:
    """Embeddings of the packaged encoder, computed once per text."""

    def __init__(self, model: EndModel) -> None:
        self.model = model
        self.cache: dict[str, np.ndarray[Any, Any]] = {}

    def __call__(self, texts: list[str]) -> np.ndarray[Any, Any]:
        missing = [t for t in dict.fromkeys(texts) if t not in self.cache]
        for i in range(0, len(missing), 256):
            chunk = missing[i : i + 256]
            for t, v in zip(chunk, self.model.embed(chunk), strict=True):
                self.cache[t] = v
        return np.stack([self.cache[t] for t in texts])


def serve(scenario: Scenario, model: EndModel, embed: Embeddings) -> Served:
    seeds = scenario.seed_examples
    model.fit_head([e.text for e in seeds], [e.label for e in seeds])
    emb = embed([t.text for t in scenario.stream])
    with torch.inference_mode():
        probs = torch.softmax(model.head(torch.from_numpy(emb)), dim=-1).numpy()
    top = probs.argmax(1)
    return Served(
        nodes=[t.node_id for t in scenario.stream],
        intents=[model.labels[i] for i in top],
        confidences=probs[np.arange(len(top)), top],
        embeddings=emb,
        labels=[t.label for t in scenario.stream],
        drifted=np.array([t.drifted for t in scenario.stream]),
    )


def _feedback_draw(seed: int, i: int) -> float:
    digest = hashlib.blake2b(f"{seed}:{i}".encode(), digest_size=4).digest()
    return int.from_bytes(digest, "little") / 2**32


OURS = "ecc CUSUM"


def score(
    scenario: Scenario, served: Served, o: DriftBenchOptions, seed: int, arm: str = OURS
) -> Outcome:
    """Replay ``served`` through a monitor per node (the project's, or a river arm:
    :mod:`harness.bench.drift_river`); delays and false alarms."""
    monitor: Any = DriftMonitor(DriftConfig()) if arm == OURS else make_arm(arm)
    onset = scenario.onset_index if scenario.config.kind != "stationary" else len(served.nodes)
    relevant: dict[str, set[str]] = {}
    for node in set(served.nodes):
        idx = [
            i for i, n in enumerate(served.nodes) if n == node and served.drifted[i] and i >= onset
        ]
        counts = Counter(served.intents[i] for i in idx)
        relevant[node] = {k for k, v in counts.items() if v >= RELEVANT_SHARE * max(len(idx), 1)}
        if scenario.shifted_intent:
            relevant[node].add(scenario.shifted_intent)
    pending: dict[str, list[int]] = defaultdict(list)
    drifted_seen: Counter[str] = Counter()
    detected: dict[str, float] = {}
    out = Outcome(turns=len(served.nodes))

    def flush(node: str, now: float) -> None:
        rows = np.asarray(pending.pop(node))
        started = time.perf_counter()
        changes = monitor.observe_turns(
            node,
            [served.intents[i] for i in rows],
            served.confidences[rows],
            served.embeddings[rows],
            now,
        )
        for i in rows:
            if _feedback_draw(seed, int(i)) < o.feedback_rate:
                wrong = served.intents[i] != served.labels[i]
                changes += monitor.observe_feedback(node, served.intents[i], wrong, now)
        out.seconds += time.perf_counter() - started
        for ch in changes:
            if ch.new != DriftState.DRIFTING:
                continue
            hit = now >= onset and ch.intent in relevant[node]
            out.alarms.append(
                {
                    "node": node,
                    "intent": ch.intent,
                    "turn": int(now),
                    "relevant": hit,
                    "reason": ch.reason,
                    "score": float(ch.score),
                }
            )
            if hit and node not in detected:
                detected[node] = drifted_seen[node]
                out.named[ch.intent] += 1
            elif not hit:
                out.false_alarms += 1

    for i, node in enumerate(served.nodes):
        pending[node].append(i)
        if i >= onset and served.drifted[i]:
            drifted_seen[node] += 1
        if len(pending[node]) >= o.batch:
            flush(node, float(i))
    for node in list(pending):
        flush(node, float(len(served.nodes)))
    if scenario.config.kind != "stationary":
        for node in sorted(set(served.nodes)):
            if node in detected:
                out.delays.append(detected[node])
            else:
                out.missed += 1
    return out


def _data(spec: str) -> LabelledData | None:
    return None if spec == "generated" else load_dataset(spec)


def run_detection(specs: list[str], o: DriftBenchOptions) -> dict[str, Any]:
    model = EndModel()
    embed = Embeddings(model)
    results: dict[str, Any] = {}
    for spec in specs:
        data = _data(spec)
        name = "generated" if data is None else data.name
        results[name] = {}
        arms = [OURS, *ARMS]
        results[name]["arms"] = {arm: {} for arm in arms}
        for kind in KINDS:
            totals = {arm: Outcome() for arm in arms}
            bar = tqdm(range(o.seeds), desc=f"{name:>10} {kind:<10}", unit="seed", leave=False)
            for k in bar:
                config = ScenarioConfig(
                    kind=kind,  # type: ignore[arg-type]
                    turns=o.turns,
                    onset=o.onset,
                    seed=7 + k,
                    eval_per_intent=0 if data is not None else 30,
                )
                scenario = build_scenario(config, data)
                served = serve(scenario, model, embed)
                for arm in arms:
                    got = score(scenario, served, o, seed=k, arm=arm)
                    total = totals[arm]
                    total.delays += got.delays
                    total.missed += got.missed
                    total.false_alarms += got.false_alarms
                    total.turns += got.turns
                    total.seconds += got.seconds
                    total.named += got.named
                    total.alarms += [{**a, "seed": 7 + k} for a in got.alarms]
            for arm in arms:
                summary = _summary(kind, totals[arm])
                results[name]["arms"][arm][kind] = {
                    k: v for k, v in summary.items() if k != "alarms"
                }
                if arm == OURS:
                    results[name][kind] = summary
            say(f"  {name:>10} {kind:<10} {_line(results[name][kind])}")
    return results


def _summary(kind: str, t: Outcome) -> dict[str, Any]:
    d = np.asarray(t.delays, dtype=float)
    return {
        "kind": kind,
        "turns": t.turns,
        "detections": len(t.delays),
        "missed": t.missed,
        "delay_median": float(np.median(d)) if len(d) else None,
        "delay_p90": float(np.percentile(d, 90)) if len(d) else None,
        "false_alarms": t.false_alarms,
        "false_alarms_per_10k": 1e4 * t.false_alarms / max(t.turns, 1),
        "scored_turns_per_s": t.turns / t.seconds if t.seconds else None,
        "named_intents": dict(t.named.most_common(10)),
        "alarms": t.alarms[:200],
    }


def _line(r: dict[str, Any]) -> str:
    if r["kind"] == "stationary":
        return f"false alarms {r['false_alarms']} in {r['turns']} turns"
    return (
        f"delay median {fmt(r['delay_median'])} p90 {fmt(r['delay_p90'])} turns, "
        f"missed {r['missed']}, false alarms {r['false_alarms']}, "
        f"named {list(r['named_intents'])[:3]}"
    )


def arms_table(arms: dict[str, dict[str, dict[str, Any]]]) -> str:
    """One row per detector: every drifting scenario's delay and misses, and the
    stationary stream's false alarms per 10k turns and turns scored per second (in the
    detector's calls only: one process, one thread)."""
    drifting = [k for k in KINDS if k != "stationary"]
    head = ["detector", *drifting, "false alarms / 10k", "turns/s scored"]
    lines = [head]
    for arm, kinds in arms.items():
        cells = [arm]
        for kind in drifting:
            r = kinds[kind]
            cells.append(
                f"{fmt(r['delay_median'], digits=0)} / {fmt(r['delay_p90'], digits=0)}, "
                f"missed {r['missed']}"
            )
        cells.append(fmt(kinds["stationary"]["false_alarms_per_10k"]))
        cells.append(fmt(kinds["stationary"]["scored_turns_per_s"], digits=0))
        lines.append(cells)
    widths = [max(len(row[i]) for row in lines) for i in range(len(head))]
    return "\n".join(
        "  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)) for row in lines
    )


# --- throughput --------------------------------------------------------------------------------
def _turn_batches(served: Served, batch: int, limit: int) -> list[TurnBatch]:
    out = []
    by_node: dict[str, list[int]] = defaultdict(list)
    n = min(limit, len(served.nodes))
    reps = -(-limit // n)
    for r in range(reps):
        for i in range(n):
            by_node[served.nodes[i]].append(i)
            rows = by_node[served.nodes[i]]
            if len(rows) == batch:
                turns = [
                    ServedTurn(
                        turn_id=f"r{r}-{j}",
                        text="redacted text",
                        intent=served.intents[j],
                        confidence=float(served.confidences[j]),
                        ts=0.0,
                    )
                    for j in rows
                ]
                out.append(
                    TurnBatch.of(served.nodes[i], 1, turns, served.embeddings[rows], served_at=0.0)
                )
                by_node[served.nodes[i]] = []
    return out[: limit // batch]


async def _fill(s: Settings, records: list[bytes], keys: list[bytes]) -> None:
    async with producer(s, linger_ms=5, max_request_size=4 * 1024 * 1024) as p:
        for value, key in zip(records, keys, strict=True):
            await p.send(s.topic_prefix + topics.CHAT_TURNS, value, key=key)
        await p.flush()


async def _raw_consume(s: Settings, count: int) -> list[tuple[float, float]]:
    """(time, records so far) after each fetch of a plain aiokafka consumer, no decoding."""
    async with consumer(s, [s.topic_prefix + topics.CHAT_TURNS]) as c:
        got = 0
        trace = [(time.perf_counter(), 0.0)]
        while got < count:
            for msgs in (await c.getmany(timeout_ms=500, max_records=2000)).values():
                got += len(msgs)
            trace.append((time.perf_counter(), float(got)))
        return trace


def steady_rate(trace: list[tuple[float, float]], total: float) -> float:
    """Items per second between the 10 % and 90 % marks of ``total``: start-up and the
    tail (a last partial fetch, a final poll) left out, the same way for every reader.

    >>> steady_rate([(0.0, 0), (1.0, 10), (2.0, 50), (3.0, 90), (9.0, 100)], 100)
    40.0
    """

    def when(mark: float) -> float:
        return next(t for t, n in trace if n >= mark)

    lo, hi = 0.1 * total, 0.9 * total
    span = when(hi) - when(lo)
    return (hi - lo) / span if span > 0 else float("nan")


def _scored(port: int) -> float:
    return scrape.total(f"http://127.0.0.1:{port}/metrics", "ecc_drift_turns_scored_total")


def run_throughput(served: Served, o: DriftBenchOptions, log_dir: Path) -> dict[str, Any]:
    batches = _turn_batches(served, 64, o.throughput_turns)
    turns = sum(len(b) for b in batches)
    records = [b.dumps() for b in batches]
    keys = [b.node_id.encode() for b in batches]
    with tempfile.TemporaryDirectory() as tmp, EmbeddedBroker(log=log_dir / "broker.log") as b:
        port = free_port()
        s = Settings(
            broker=b.bootstrap,
            state_dir=Path(tmp),
            app_id="ecc-bench-drift",
            topic_prefix="bench.",
            metrics_port=port,
            drift_snapshot_s=30.0,
        )
        asyncio.run(ensure_topics(s))
        say(f"  writing {turns} turns as {len(records)} TurnBatch records to the broker")
        asyncio.run(_fill(s, records, keys))
        raw_trace = asyncio.run(_raw_consume(s, len(records)))
        raw = steady_rate(raw_trace, len(records)) * turns / len(records)
        say(f"  raw aiokafka consume: {raw:,.0f} turns/s")
        worker = start_worker(s, log_dir / "drift-worker.log", roles="drift")
        trace: list[tuple[float, float]] = []
        try:
            deadline = time.monotonic() + 600
            done = 0.0
            with tqdm(total=turns, desc="  drift worker", unit="turn", leave=False) as bar:
                while done < turns and time.monotonic() < deadline:
                    now_done = _scored(port)
                    trace.append((time.perf_counter(), now_done))
                    bar.update(now_done - done)
                    done = now_done
                    time.sleep(0.1)  # each poll is a scrape of the worker's /metrics
        finally:
            stop(worker, timeout=20)
    agent = steady_rate(trace, turns) if done >= turns else 0.0
    say(f"  drift agent: {agent:,.0f} turns/s ({agent / raw:.2f} of the raw consume rate)")
    return {
        "turns": turns,
        "records": len(records),
        "turns_per_record": 64,
        "rates": "steady state: turns/s between the 10 % and 90 % marks of the stream",
        "raw_consume_turns_per_s": raw,
        "drift_agent_turns_per_s": agent,
        "ratio": agent / raw if raw else None,
        "scored": done,
    }


def run_drift_bench(
    specs: list[str], o: DriftBenchOptions, out: Path, throughput: bool
) -> dict[str, Any]:
    started = time.time()
    out.mkdir(parents=True, exist_ok=True)
    say(
        f"[1/2] detection: {len(specs)} dataset(s) x {len(KINDS)} scenarios x {o.seeds} seeds, "
        f"{o.turns} turns each, batches of {o.batch}, feedback on {o.feedback_rate:.0%}"
    )
    detection = run_detection(specs, o)
    report: dict[str, Any] = {
        "options": o.__dict__,
        "environment": environment(),
        "detection": detection,
    }
    if throughput:
        say("[2/2] throughput through the embedded broker")
        data = _data(specs[0])
        scenario = build_scenario(
            ScenarioConfig(kind="stationary", turns=min(o.turns, 20_000), seed=7), data
        )
        model = EndModel()
        report["throughput"] = run_throughput(serve(scenario, model, Embeddings(model)), o, out)
    report["seconds"] = time.time() - started
    write_json(out / "drift.json", report)
    print_summary(report)
    say(f"report: {out / 'drift.json'}")
    return report


def print_summary(report: dict[str, Any]) -> None:
    rows: list[tuple[str, str]] = []
    for name, kinds in report["detection"].items():
        for kind in KINDS:
            rows.append((f"{name} {kind}", _line(kinds[kind])))
    say(table(rows))
    for name, kinds in report["detection"].items():
        say(
            f"\n{name}: each detector on the same signals (delay median / p90 in drifting "
            "turns, misses, false alarms per 10k stationary turns)"
        )
        say(arms_table(kinds["arms"]))
    rows = []
    t = report.get("throughput")
    if t:
        rows.append(
            (
                "throughput",
                f"drift agent {t['drift_agent_turns_per_s']:,.0f} turns/s, raw aiokafka "
                f"{t['raw_consume_turns_per_s']:,.0f} turns/s (ratio {fmt(t['ratio'], digits=2)})",
            )
        )
        say(table(rows))
