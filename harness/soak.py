"""``ecc soak``: the running system under kill -9 and sustained load, then an audit.

One process per worker kind (``ecc serve --roles edge``, ``drift``, ``feedback``,
``teacher``, each role set its own consumer group, as in docker-compose) and an ``ecc
webhook`` run on the embedded broker. Simulated customers send turns at ``rate``; their clients post
signed feedback for a share of the answers. Two phases, traffic flowing through both:

1. **crash**: every ``kill_every_s`` seconds one worker kind (in turn) gets SIGKILL at
   whatever point it is, and is restarted; ``kills`` times;
2. **load**: ``load_s`` seconds without faults. RSS of every process and the lag (turns
   sent but not served yet; the workers' own ``ecc_consumer_lag``) are sampled throughout.

Then, once the pipeline is quiet, the audit reads the topics and the nodes' files:

- every labelling feedback the webhook accepted (202) is in exactly one training batch id
  of its node (``lost``: in none; ``twice``: in two ids), and every batch id was applied
  by its node's learner (its ``batches.log``);
- every adapter version of every node loads with a matching sha256 (``corrupt``: not);
- the drift state resumed: per node and intent, the ``turns`` count in drift snapshots
  never goes down across the drift worker's restarts;
- DLQ counts (a soak sends no bad input: any dead letter is a finding).
"""

from __future__ import annotations

import asyncio
import itertools
import random
import secrets
import signal
import subprocess
import time
from collections import Counter, defaultdict
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from tqdm import tqdm

from harness import scrape
from harness.bench.report import environment, table, write_json
from harness.broker import EmbeddedBroker
from harness.clients import DEMO_CLIENT, client_feedback
from harness.console import say
from harness.options import SoakOptions
from harness.processes import free_port, stop
from harness.workers import spawn_ecc, start_webhook
from harness.world import bootstrap_nodes, cpu_seconds, fresh_run
from learners.batching import feedback_label
from models.registry import AdapterRegistry, CorruptAdapterError
from scenarios.scenario import ScenarioConfig, build_scenario
from streams import topics
from streams.kafka import consumer, ensure_topics, producer, read_all
from streams.schemas import (
    ChatInbound,
    DeadLetter,
    DriftEvent,
    Feedback,
    TrainingBatch,
    TurnBatch,
    decode,
)
from streams.settings import Settings
from streams.webhook.client import FeedbackClient
from streams.webhook.server import parse_secrets

KINDS = topics.SERVICE_ROLES  # one worker process per role (the fleet aggregator: none)


@dataclass
class Worker:
    """One worker kind's process; each has its own state folder and metrics port, except
    that every edge worker needs the nodes' files, so the edge keeps the shared one."""

    kind: str
    settings: Settings
    logs: Path  # the folder of its logs: one per start (``worker-<kind>.<n>.log``)
    proc: subprocess.Popen[bytes] | None = None
    starts: int = 0

    @property
    def log(self) -> Path:
        """The log of its latest start (a restart must not overwrite the killed one's)."""
        return self.logs / f"worker-{self.kind}.{self.starts}.log"

    async def start(self, timeout: float = 180.0) -> float:
        """Spawn it (from the main thread: the parent-death signal is per thread) and wait
        for its partitions; returns the seconds that took."""
        marker = self.settings.ready_marker
        marker.unlink(missing_ok=True)
        began = time.monotonic()
        self.starts += 1
        self.proc = spawn_ecc(self.settings, self.log, "serve", "--roles", self.kind)
        while not marker.exists():
            if self.proc.poll() is not None or time.monotonic() - began > timeout:
                tail = self.log.read_text()[-3000:] if self.log.exists() else ""
                stop(self.proc)
                raise RuntimeError(
                    f"{self.kind} worker did not come up; end of {self.log}:\n{tail}"
                )
            await asyncio.sleep(0.2)
        return time.monotonic() - began

    def kill(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait()

    def metric(self, name: str) -> float | None:
        """The largest sample of ``name`` on its /metrics (None: not there or not up)."""
        try:
            found = scrape.samples(f"http://127.0.0.1:{self.settings.metrics_port}/metrics", 2)
        except OSError:
            return None
        values = [s.value for s in found if s.name == name]
        return max(values) if values else None


@dataclass
class Traffic:
    """Customers and their clients: turns at ``rate``, feedback on served answers."""

    settings: Settings
    options: SoakOptions
    texts: list[tuple[str, str]]  # (text, true label)
    nodes: tuple[str, ...]
    webhook_url: str
    sent: int = 0
    served: set[str] = field(default_factory=set)
    accepted: dict[str, dict[str, Any]] = field(default_factory=dict)  # feedback id -> info
    refused: Counter[str] = field(default_factory=Counter)
    stop: asyncio.Event = field(default_factory=asyncio.Event)
    sent_all: asyncio.Event = field(default_factory=asyncio.Event)  # the last turn is sent
    truth: dict[str, str] = field(default_factory=dict)  # turn id -> true label
    served_at: dict[str, str] = field(default_factory=dict)  # turn id -> chat.turns p@offset
    sent_at: dict[str, float] = field(default_factory=dict)  # turn id -> s since traffic began
    deliveries: dict[str, Any] = field(default_factory=dict)  # turn id -> its produce future

    def __post_init__(self) -> None:
        self.label_of = dict(self.texts)

    def unserved(self, most: int = 20) -> list[dict[str, Any]]:
        """The turns sent and never served: when they were sent and where they went on
        chat.inbound (what to look for in the workers' logs)."""
        out = []
        for turn_id in sorted(set(self.sent_at) - self.served)[:most]:
            delivery = self.deliveries.get(turn_id)
            where = None
            if delivery is not None and delivery.done() and not delivery.exception():
                meta = delivery.result()
                where = f"p{meta.partition}@{meta.offset}"
            out.append({"turn_id": turn_id, "sent_at_s": self.sent_at[turn_id], "inbound": where})
        return out

    def labelled(self) -> dict[str, dict[str, Any]]:
        """The accepted feedback that gives a label, by the example id it must end in."""
        return {f"feedback:{f}": info for f, info in self.accepted.items() if info["label"]}

    async def run(self) -> None:
        client, secret = next(iter(parse_secrets(self.settings.webhook_secrets).items()))
        async with FeedbackClient(self.webhook_url, client, secret, attempts=30) as fc:
            await asyncio.gather(self._send(), self._answers(fc))

    async def _send(self) -> None:
        rng = random.Random(self.options.seed)
        start = time.monotonic()
        try:
            await self._send_until_stopped(start, rng)
        finally:
            self.sent_all.set()

    async def _send_until_stopped(self, start: float, rng: random.Random) -> None:
        prefix = self.settings.topic_prefix
        async with producer(self.settings, linger_ms=5) as prod:
            while not self.stop.is_set():
                delay = start + self.sent / self.options.rate - time.monotonic()
                if delay > 0:
                    await asyncio.sleep(delay)
                node = self.nodes[self.sent % len(self.nodes)]
                text, _ = self.texts[rng.randrange(len(self.texts))]
                record = ChatInbound(turn_id=f"{node}-{self.sent:08d}", node_id=node, text=text)
                self.deliveries[record.turn_id] = await prod.send(
                    prefix + topics.CHAT_INBOUND, record.dumps(), key=node.encode()
                )
                self.sent_at[record.turn_id] = time.monotonic() - start
                self.truth[record.turn_id] = self.label_of[text]
                self.sent += 1

    async def _answers(self, fc: FeedbackClient) -> None:
        name = self.settings.topic_prefix + topics.CHAT_TURNS
        async with consumer(self.settings, [name]) as cons:
            idle_since = time.monotonic()
            # `sent_all`, not `stop`: a turn being sent when the traffic stops is counted
            # only after its send returns, and its answer must be read too.
            while not (self.sent_all.is_set() and len(self.served) >= self.sent):
                got = await cons.getmany(timeout_ms=200, max_records=2000)
                if got:
                    idle_since = time.monotonic()
                for messages in got.values():
                    for m in messages:
                        for turn in decode(TurnBatch, m.value).chat_turns():
                            if turn.turn_id in self.served:
                                continue  # an edge restart may serve a turn again
                            self.served.add(turn.turn_id)
                            self.served_at[turn.turn_id] = f"p{m.partition}@{m.offset}"
                            await self._feedback(fc, turn.turn_id, turn.node_id, turn.intent)
                if self.sent_all.is_set() and time.monotonic() - idle_since > 60:
                    break  # after the traffic stopped, a minute without a served turn

    async def _feedback(self, fc: FeedbackClient, turn_id: str, node: str, served: str) -> None:
        label = self.truth[turn_id]
        o = self.options
        kind = client_feedback(o.seed, turn_id, served, label, o.label_rate, o.thumbs_rate)
        if kind is None:
            return
        fb = Feedback(
            feedback_id=f"fb-{turn_id}",
            turn_id=turn_id,
            node_id=node,
            kind=kind,  # type: ignore[arg-type]
            label=label if kind == "correction" else None,
        )
        try:
            answer = await fc.post([fb])
        except Exception as exc:  # a refused post is counted, never silently dropped
            self.refused[type(exc).__name__] += 1
            return
        if fb.feedback_id in answer.get("accepted", []):
            given = feedback_label(kind, fb.label, served)
            info = {"node": node, "kind": kind, "label": given, "turn": turn_id}
            self.accepted[fb.feedback_id] = info


def run_soak(options: SoakOptions, base: Settings) -> dict[str, Any]:
    out = options.out
    settings = fresh_run(
        out,
        base,
        "soak",
        webhook_port=free_port(),
        webhook_secrets=f"{DEMO_CLIENT}={secrets.token_hex(16)}",
    )
    scenario = build_scenario(ScenarioConfig(kind="stationary", turns=4000, seed=options.seed))
    nodes = ("store-eu", "store-us")
    registry = bootstrap_nodes(settings, nodes, scenario)
    texts = [(t.text, t.label) for t in scenario.stream]
    with EmbeddedBroker(log=out / "broker.log") as broker:
        settings = settings.replace(broker=broker.bootstrap)
        asyncio.run(ensure_topics(settings))
        webhook, url = start_webhook(settings, out / "webhook.log")
        try:
            result = asyncio.run(_soak(settings, options, texts, nodes, url, webhook, broker))
        finally:
            stop(webhook)
        say("auditing the topics, the nodes' applied batches and every adapter version")
        report = _report(result, registry, settings, options, nodes)
    write_json(out / "soak.json", report)
    _plot(out / "soak.png", report)
    print(render(report, out))
    return report


def _worker_settings(settings: Settings, kind: str) -> Settings:
    """Its own state folder and port; INFO logs (rebalances, recoveries, the state each
    start loaded: what a finding of the audit is traced back to)."""
    state = settings.state_dir if kind == "edge" else settings.state_dir / "workers" / kind
    return settings.replace(state_dir=state, metrics_port=free_port(), log_level="info")


async def _soak(
    settings: Settings,
    options: SoakOptions,
    texts: list[tuple[str, str]],
    nodes: tuple[str, ...],
    url: str,
    webhook: subprocess.Popen[bytes],
    broker: EmbeddedBroker,
) -> dict[str, Any]:
    workers = {k: Worker(k, _worker_settings(settings, k), options.out) for k in KINDS}
    say(f"starting one worker per kind: {', '.join(KINDS)}")
    for w in workers.values():
        await w.start()
    traffic = Traffic(settings, options, texts, nodes, url)
    flow = asyncio.create_task(traffic.run())
    samples: list[dict[str, Any]] = []
    kills: list[dict[str, Any]] = []
    began = time.monotonic()

    async def sample_forever() -> None:
        while True:
            rss = {k: _rss(w.proc.pid if w.proc else None) for k, w in workers.items()}
            rss["webhook"] = _rss(webhook.pid)
            rss["broker"] = _rss(broker.pid)
            # off the event loop: a slow /metrics must not pace the traffic
            lag = await asyncio.gather(
                *(asyncio.to_thread(w.metric, "ecc_consumer_lag") for w in workers.values())
            )
            samples.append(
                {
                    "t": round(time.monotonic() - began, 1),
                    "sent": traffic.sent,
                    "served": len(traffic.served),
                    "unserved": traffic.sent - len(traffic.served),
                    "consumer_lag_max": max((v for v in lag if v is not None), default=None),
                    "rss_mb": rss,
                }
            )
            await asyncio.sleep(options.sample_every_s)

    sampler = asyncio.create_task(sample_forever())
    try:
        with tqdm(total=options.kills, desc="kill -9 and restart", unit="kill") as bar:
            for i in range(options.kills):
                await asyncio.sleep(options.kill_every_s * random.Random(i).uniform(0.5, 1.5))
                kind = KINDS[i % len(KINDS)]
                workers[kind].kill()
                took = await workers[kind].start()
                kills.append(
                    {
                        "kind": kind,
                        "at_s": round(time.monotonic() - began, 1),
                        "restart_s": round(took, 1),
                    }
                )
                bar.update(1)
                bar.set_postfix(kind=kind, sent=traffic.sent, served=len(traffic.served))
        load_began = time.monotonic() - began
        with tqdm(total=int(options.load_s), desc="load, no faults", unit="s") as bar:
            while time.monotonic() - began - load_began < options.load_s:
                await asyncio.sleep(1)
                bar.update(1)
                bar.set_postfix(sent=traffic.sent, unserved=traffic.sent - len(traffic.served))
        traffic.stop.set()
        say("traffic stopped; waiting for the pipeline to settle")
        await asyncio.wait_for(flow, options.settle_s)
        await _settle(settings, traffic, nodes, options.settle_s)
        cpu = {k: cpu_seconds(w.proc.pid if w.proc else None) for k, w in workers.items()}
    finally:
        sampler.cancel()
        flow.cancel()
        for w in workers.values():
            if w.proc is not None:
                stop(w.proc, timeout=10)
    return {
        "traffic": traffic,
        "samples": samples,
        "kills": kills,
        "load_began_s": load_began,
        "cpu_seconds": cpu,
        "settings": settings,
    }


async def _settle(
    settings: Settings, traffic: Traffic, nodes: tuple[str, ...], timeout: float
) -> None:
    """Until the pipeline is quiet (or ``timeout``): every accepted labelling feedback is
    in a batch, every batch has been decided on by its node's learner, and no teacher
    request, annotation or batch has appeared for ``quiet_s``.

    The last condition is what the audit needs: teacher annotations are trained on too, and
    they come late (a thumbs-down asks the teacher, within its per-minute budget), so a
    batch of them can be published after every user label has been learnt.
    """
    quiet_s = max(10.0, 3 * settings.batch_max_age_s)
    deadline = time.monotonic() + timeout
    want = set(traffic.labelled())
    last: tuple[int, ...] = ()
    since = time.monotonic()
    while time.monotonic() < deadline:
        batches = [
            TrainingBatch.model_validate_json(m.value)
            for m in await read_all(settings, topics.TRAINING_BATCHES, idle_s=1.0)
        ]
        upstream = [
            len(await read_all(settings, t, idle_s=1.0))
            for t in (topics.TEACHER_REQUESTS, topics.TEACHER_ANNOTATIONS)
        ]
        counts = (len(batches), *upstream)
        if counts != last:
            last, since = counts, time.monotonic()
        have = {e.example_id for b in batches for e in b.examples}
        done = want <= have and {b.batch_id for b in batches} <= _applied(settings, nodes)
        if done and time.monotonic() - since >= quiet_s:
            return
        await asyncio.sleep(3)


def _applied(settings: Settings, nodes: tuple[str, ...]) -> set[str]:
    """The batch ids the nodes' learners have decided on (their ``batches.log``)."""
    applied: set[str] = set()
    for node in nodes:
        log = settings.state_dir / "nodes" / node / "batches.log"
        applied |= set(log.read_text().split()) if log.exists() else set()
    return applied


async def _trace_lost(settings: Settings, lost: list[str]) -> dict[str, Any]:
    """Where each lost example went: its chat.feedback record, and every record of the
    feedback agent's changelog that holds it (an id claim, a node's open batch, outbox or
    waiting list), so the log of the worker that lost it can be read at the right place."""
    ids = {x.removeprefix("feedback:"): x for x in lost}
    out: dict[str, Any] = {x: {"chat_feedback": None, "changelog": []} for x in lost}
    for m in await read_all(settings, topics.CHAT_FEEDBACK):
        fb = decode(Feedback, m.value)
        if fb.feedback_id in ids:
            out[ids[fb.feedback_id]]["chat_feedback"] = f"p{m.partition}@{m.offset}"
    (name,) = topics.changelogs(settings.app_id, ["feedback"])  # the feedback worker's
    last_nodes: dict[str, Any] = {}
    for m in await read_all(settings.replace(topic_prefix=""), name):  # Faust's name
        key = m.key.decode(errors="replace") if m.key else ""
        text = m.value.decode(errors="replace") if m.value else ""
        if key.startswith('"node:'):
            last_nodes[key] = f"p{m.partition}@{m.offset}: " + text[:300]
        for fid, x in ids.items():
            if fid in text or fid in key:
                out[x]["changelog"].append(f"p{m.partition}@{m.offset} {key[:60]}")
    return {"examples": out, "last_node_records": last_nodes}


def _rss(pid: int | None) -> float | None:
    import psutil

    try:
        return round(psutil.Process(pid).memory_info().rss / 2**20, 1) if pid else None
    except psutil.Error:
        return None


def _report(
    result: dict[str, Any],
    registry: AdapterRegistry,
    settings: Settings,
    options: SoakOptions,
    nodes: tuple[str, ...],
) -> dict[str, Any]:
    traffic: Traffic = result["traffic"]
    audit = asyncio.run(_audit(settings, traffic, registry, nodes))
    samples = result["samples"]
    load = [s for s in samples if s["t"] >= result["load_began_s"]]
    peak = {
        k: max((s["rss_mb"][k] for s in samples if s["rss_mb"].get(k)), default=None)
        for k in (*KINDS, "webhook", "broker")
    }
    return {
        "benchmark": "soak",
        "options": {k: str(v) if isinstance(v, Path) else v for k, v in asdict(options).items()},
        "kills": {
            "total": len(result["kills"]),
            "by_kind": dict(Counter(k["kind"] for k in result["kills"])),
            "restart_s_max": max((k["restart_s"] for k in result["kills"]), default=None),
            "log": result["kills"],
        },
        "turns": {
            "sent": traffic.sent,
            "served": len(traffic.served),
            "unserved": audit["unserved"],
        },
        "feedback": audit["feedback"],
        "feedback_refused": dict(traffic.refused),
        "adapters": audit["adapters"],
        "drift": audit["drift"],
        "dead_letters": audit["dead_letters"],
        "rss_mb_peak": peak,
        "rss_mb_growth_during_load": _growth(load),
        "unserved_max": max((s["unserved"] for s in samples), default=None),
        "unserved_max_during_load": max((s["unserved"] for s in load), default=None),
        "unserved_at_end_of_load": load[-1]["unserved"] if load else None,
        "consumer_lag_max_during_load": max(
            (s["consumer_lag_max"] for s in load if s["consumer_lag_max"] is not None),
            default=None,
        ),
        "cpu_seconds": result["cpu_seconds"],
        "samples": samples,
        "environment": environment(),
    }


def _growth(load: list[dict[str, Any]]) -> dict[str, float | None]:
    """RSS at the end of the load phase minus RSS a quarter into it, per process: a leak
    shows as steady growth; the first quarter is warm-up (caches, allocator pools)."""
    if len(load) < 4:
        return {}
    first, last = load[len(load) // 4]["rss_mb"], load[-1]["rss_mb"]
    return {k: round(last[k] - first[k], 1) if last.get(k) and first.get(k) else None for k in last}


async def _audit(
    settings: Settings, traffic: Traffic, registry: AdapterRegistry, nodes: tuple[str, ...]
) -> dict[str, Any]:
    batches: dict[str, TrainingBatch] = {}
    for m in await read_all(settings, topics.TRAINING_BATCHES):
        b = TrainingBatch.model_validate_json(m.value)
        if b.batch_id in batches:
            assert batches[b.batch_id].examples == b.examples, f"{b.batch_id} resent changed"
        batches[b.batch_id] = b
    holders: dict[str, set[str]] = defaultdict(set)
    node_of: dict[str, str] = {}
    for b in batches.values():
        for e in b.examples:
            holders[e.example_id].add(b.batch_id)
            node_of[e.example_id] = b.node_id
    labelled = traffic.labelled()
    lost = sorted(x for x in labelled if x not in holders)
    twice = sorted(x for x in labelled if len(holders.get(x, ())) > 1)
    wrong_node = sorted(
        x for x, info in labelled.items() if x in node_of and node_of[x] != info["node"]
    )
    unapplied = sorted(set(batches) - _applied(settings, nodes))

    traces = await _trace_lost(settings, lost) if lost else {}

    versions = corrupt = 0
    problems: list[str] = []
    for node in nodes:
        for v in registry.versions(node):
            versions += 1
            try:
                registry.load(node, v.version)
            except (CorruptAdapterError, OSError, ValueError) as exc:
                corrupt += 1
                problems.append(f"{node} v{v.version}: {exc}")

    counts: dict[tuple[str, str], list[int]] = defaultdict(list)
    for m in await read_all(settings, topics.DRIFT_EVENTS):
        ev = DriftEvent.model_validate_json(m.value)
        counts[(ev.node_id, ev.intent)].append(ev.turns)
    regressions = [
        f"{n}/{i}: {a} -> {b}"
        for (n, i), seq in counts.items()
        for a, b in itertools.pairwise(seq)
        if b < a
    ]
    # the live reader's view, checked: a turn it missed may still be on chat.turns
    unserved = traffic.unserved()
    answered = (
        {
            turn.turn_id: f"p{m.partition}@{m.offset}"
            for m in await read_all(settings, topics.CHAT_TURNS)
            for turn in decode(TurnBatch, m.value).chat_turns()
        }
        if unserved
        else {}
    )
    unserved = [{**u, "on_chat_turns": answered.get(u["turn_id"])} for u in unserved]
    dead: Counter[str] = Counter()
    for t in topics.ALL:
        for m in await read_all(settings, topics.dlq(t), idle_s=0.5):
            dead[t] += 1
            dead[f"{t}: {DeadLetter.model_validate_json(m.value).error[:80]}"] += 1
    return {
        "feedback": {
            "accepted": len(traffic.accepted),
            "accepted_labelling": len(labelled),
            "in_batches": len(labelled) - len(lost),
            "lost": len(lost),
            "in_two_batch_ids": len(twice),
            "in_another_nodes_batch": len(wrong_node),
            "batches": len(batches),
            "batches_not_applied": len(unapplied),
            "examples": {
                "lost": lost,
                "lost_turns_served_at": [traffic.served_at.get(labelled[x]["turn"]) for x in lost],
                "twice": twice,
                "unapplied": unapplied,
                "lost_traces": traces,
            },
        },
        "adapters": {"versions": versions, "corrupt": corrupt, "problems": problems},
        "drift": {
            "series": len(counts),
            "snapshots": sum(len(v) for v in counts.values()),
            "turn_count_regressions": len(regressions),
            "examples": regressions[:20],
        },
        "unserved": unserved,
        "dead_letters": dict(dead),
    }


def _plot(path: Path, report: dict[str, Any]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    samples = report["samples"]
    t = [s["t"] for s in samples]
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(11, 7), sharex=True)
    for k in (*KINDS, "webhook", "broker"):
        top.plot(t, [s["rss_mb"].get(k) or float("nan") for s in samples], label=k)
    top.set_ylabel("RSS (MiB)")
    top.set_title("ecc soak: memory per process")
    bottom.plot(t, [s["unserved"] for s in samples], label="turns sent, not yet served")
    bottom.plot(
        t,
        [
            s["consumer_lag_max"] if s["consumer_lag_max"] is not None else float("nan")
            for s in samples
        ],
        label="max ecc_consumer_lag of the workers",
    )
    bottom.set_ylabel("records")
    bottom.set_xlabel("seconds")
    for k in report["kills"]["log"]:
        for ax in (top, bottom):
            ax.axvline(k["at_s"], color="red", alpha=0.25, linewidth=1)
    for ax in (top, bottom):
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def render(r: dict[str, Any], out: Path) -> str:
    f, a, d = r["feedback"], r["adapters"], r["drift"]
    growth = r["rss_mb_growth_during_load"]
    rows = [
        ("kills survived (kill -9 + restart)", f"{r['kills']['total']} {r['kills']['by_kind']}"),
        ("restart seconds, max", str(r["kills"]["restart_s_max"])),
        ("turns sent / served", f"{r['turns']['sent']} / {r['turns']['served']}"),
        (
            "feedback accepted / labelling",
            f"{f['accepted']} / {f['accepted_labelling']} (refused posts: "
            f"{sum(r['feedback_refused'].values())})",
        ),
        (
            "labelling feedback in a batch / lost",
            f"{f['in_batches']} / {f['lost']} (in two batch ids: {f['in_two_batch_ids']}, "
            f"another node's: {f['in_another_nodes_batch']})",
        ),
        ("batches / not applied", f"{f['batches']} / {f['batches_not_applied']}"),
        ("adapter versions / corrupt", f"{a['versions']} / {a['corrupt']}"),
        (
            "drift state: snapshot series / regressions",
            f"{d['series']} / {d['turn_count_regressions']}",
        ),
        ("dead letters", str({k: v for k, v in r["dead_letters"].items() if ":" not in k} or 0)),
        ("peak RSS MiB", ", ".join(f"{k} {v}" for k, v in r["rss_mb_peak"].items())),
        ("RSS growth in load MiB", ", ".join(f"{k} {v}" for k, v in growth.items()) or "n/a"),
        (
            "unserved turns max (load) / at end",
            f"{r['unserved_max']} ({r['unserved_max_during_load']}) / "
            f"{r['unserved_at_end_of_load']}",
        ),
        ("consumer lag max in load", str(r["consumer_lag_max_during_load"])),
        ("report", f"{out / 'soak.json'}, {out / 'soak.png'}"),
    ]
    return "\n==== ecc soak " + "=" * 54 + "\n" + table(rows) + "\n"


def verdict(r: dict[str, Any]) -> list[str]:
    """What failed, in words (empty: the soak passed)."""
    f = r["feedback"]
    problems = []
    if f["lost"] or f["in_two_batch_ids"] or f["in_another_nodes_batch"]:
        problems.append(f"feedback lost {f['lost']}, in two batch ids {f['in_two_batch_ids']}")
    if f["batches_not_applied"]:
        problems.append(f"{f['batches_not_applied']} batches never applied")
    if r["adapters"]["corrupt"]:
        problems.append(f"{r['adapters']['corrupt']} corrupt adapter versions")
    if r["drift"]["turn_count_regressions"]:
        problems.append("drift state went back after a restart")
    if any(":" not in k for k in r["dead_letters"]):
        problems.append(f"dead letters: {r['dead_letters']}")
    if r["turns"]["served"] < r["turns"]["sent"]:
        named = ", ".join(
            f"{u['turn_id']} (sent {u['sent_at_s']:.1f} s into the traffic, "
            f"chat.inbound {u['inbound']}, on chat.turns when read again: {u['on_chat_turns']})"
            for u in r["turns"].get("unserved", [])[:5]
        )
        problems.append(f"{r['turns']['sent'] - r['turns']['served']} turns never served: {named}")
    return problems
