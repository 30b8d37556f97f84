"""``ecc demo``: the whole loop on an embedded broker, with a drifting replayed stream.

The demo plays the outside world: customers (turns on chat.inbound, paced at ``--rate``)
and their clients' feedback (a few labels, more thumbs, posted signed to the feedback
webhook after the answer came back on chat.turns). Everything in between is the real
service: an ``ecc serve`` worker process and an ``ecc webhook`` process on a Tansu broker.
What happened is read back from the topics and printed.
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import secrets
import shutil
import sys
import time
import zlib
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tqdm import tqdm

from learners.batching import feedback_label
from learners.edge_node import EdgeNode
from learners.gate import Scores
from models.end_model import EndModel
from models.registry import AdapterRegistry
from scenarios.datasets import load_dataset, write_csv
from scenarios.scenario import Kind, Scenario, ScenarioConfig, build_scenario
from streams import topics
from streams.app import edge_options
from streams.broker import EmbeddedBroker
from streams.kafka import consumer, ensure_topics, producer
from streams.processes import free_port, port_is_free, stop
from streams.schemas import (
    AdapterEvent,
    ChatInbound,
    ChatTurn,
    DriftEvent,
    Feedback,
    TeacherAnnotation,
    TeacherRequest,
    TrainingBatch,
    TurnBatch,
    decode,
)
from streams.settings import Settings
from streams.webhook.client import FeedbackClient
from streams.webhook.server import parse_secrets
from streams.workers import start_webhook, start_worker


@dataclass(frozen=True)
class DemoOptions:
    data: str | None = None
    scenario: Kind = "emerging"
    turns: int = 6000
    rate: float = 60.0
    nodes: tuple[str, ...] = ("store-eu", "store-us")
    label_rate: float = 0.02
    thumbs_rate: float = 0.06
    out: Path = Path("var/demo")
    seed: int = 7
    settle_s: float = 90.0
    worker_start_timeout_s: float = 180.0
    peers: bool = True  # replay the static, river and periodic peers on the same stream
    retrain_every: int = 500  # the periodic peer's refit period, in turns of its node


def _usable(port: int) -> int:
    """``port`` if it is free, else any free port (a demo must not fail on a busy port)."""
    return port if port_is_free(port) else free_port()


def say(msg: str) -> None:
    tqdm.write(msg, file=sys.stdout)


def fresh_run(out: Path, base: Settings, name: str, **changes: Any) -> Settings:
    """Empty ``out`` and return settings that keep every state of a run in it (the demo's,
    the soak's): adapters, node files, the teacher's corpus, one-off app id and webhook."""
    if out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True)
    return base.replace(
        state_dir=(out / "state").resolve(),
        teacher_corpus=str((out / "teacher_corpus.csv").resolve()),
        app_id=f"ecc-{name}-{os.getpid()}",
        batch_max_age_s=min(base.batch_max_age_s, 10.0),
        webhook_host="127.0.0.1",
        **changes,
    )


def bootstrap_nodes(
    settings: Settings, nodes: tuple[str, ...], scenario: Scenario
) -> AdapterRegistry:
    """Every node's first version from the scenario's seed examples; the registry."""
    write_csv(settings.teacher_corpus, scenario.teacher_corpus)
    registry = AdapterRegistry(settings.state_dir / "adapters", keep_last=settings.keep_versions)
    for node in nodes:
        EdgeNode.bootstrap(
            node,
            registry,
            settings.state_dir,
            [e.text for e in scenario.seed_examples],
            [e.label for e in scenario.seed_examples],
            edge_options(settings),
        )
    return registry


def run_demo(options: DemoOptions, base: Settings) -> dict[str, Any]:
    started = time.time()
    out = options.out
    settings = fresh_run(
        out,
        base,
        "demo",
        drift_snapshot_s=min(base.drift_snapshot_s, 5.0),
        # every version stays: the report compares the first with the last
        keep_versions=max(base.keep_versions, 100_000),
        # ECC_WEBHOOK_PORT (8080) and ECC_WEBHOOK_SECRETS when given and usable; else a
        # free port and a one-off secret.
        webhook_port=_usable(base.webhook_port),
        metrics_port=_usable(base.metrics_port) if base.metrics_port else 0,
        webhook_secrets=base.webhook_secrets or f"{DEMO_CLIENT}={secrets.token_hex(16)}",
    )
    say(
        f"[1/5] building the {options.scenario!r} scenario "
        f"({'generator' if not options.data else options.data})"
    )
    data = load_dataset(options.data) if options.data else None
    scenario = build_scenario(
        ScenarioConfig(
            kind=options.scenario, nodes=options.nodes, turns=options.turns, seed=options.seed
        ),
        data,
    )
    say(
        f"      {len(scenario.stream)} turns over {len(options.nodes)} nodes, drift at turn "
        f"{scenario.onset_index}; emerging intents {scenario.emerging_intents or '-'}; "
        f"shifted intent {scenario.shifted_intent or '-'}"
        + (f"; split off {scenario.split_from}" if scenario.split_from else "")
    )

    say(f"[2/5] bootstrapping edge nodes from {len(scenario.seed_examples)} labelled examples")
    registry = bootstrap_nodes(settings, options.nodes, scenario)

    with EmbeddedBroker(log=out / "broker.log") as broker:
        settings = settings.replace(broker=broker.bootstrap)
        say(f"[3/5] Tansu broker on {broker.bootstrap}; creating topics")
        asyncio.run(ensure_topics(settings))
        say(
            f"[4/5] starting the stream worker and the feedback webhook "
            f"(logs: {out / 'worker.log'}, {out / 'webhook.log'})"
        )
        webhook, url = start_webhook(settings, out / "webhook.log")
        try:
            with tqdm(desc="      waiting for partitions", bar_format="{desc} {elapsed}") as bar:
                worker = start_worker(
                    settings,
                    out / "worker.log",
                    timeout=options.worker_start_timeout_s,
                    tick=lambda: bar.update(0),
                )
            try:
                say(
                    f"      webhook {url} (OpenAPI at {url}/openapi.json, metrics at {url}/metrics)"
                )
                say(f"[5/5] replaying {len(scenario.stream)} turns at {options.rate:g}/s")
                replay = Replay(scenario, settings, options, url)
                asyncio.run(replay.run())
                cpu = {
                    "worker": cpu_seconds(worker.pid),
                    "webhook": cpu_seconds(webhook.pid),
                    "broker": cpu_seconds(broker.pid),
                }
            finally:
                stop(worker, timeout=10)
        finally:
            stop(webhook)
    say("      scoring the first and final adapter versions on the eval set")
    evals = {n: eval_predictions(registry, settings, n, scenario) for n in options.nodes}
    summary = summarise(scenario, replay, registry, evals, options, time.time() - started)
    summary["cpu_seconds"] = cpu
    (out / "summary.json").write_text(json.dumps(summary, indent=2))
    print_summary(summary, out / "summary.json")
    if options.peers:
        from streams.bench.loop import loop_report

        loop_report(scenario, replay, evals, summary, settings, options)
    return summary


def cpu_seconds(pid: int | None) -> float | None:
    """User + system CPU seconds a live process has used so far (None: it is gone)."""
    import psutil

    if pid is None:
        return None
    try:
        t = psutil.Process(pid).cpu_times()
    except psutil.Error:
        return None
    return round(t.user + t.system, 2)


DEMO_CLIENT = "demo"


@dataclass
class Replay:
    scenario: Scenario
    settings: Settings
    options: DemoOptions
    webhook_url: str
    served: list[dict[str, Any]] = field(default_factory=list)
    transitions: list[dict[str, Any]] = field(default_factory=list)
    teacher_requests: list[dict[str, Any]] = field(default_factory=list)
    annotations: Counter[str] = field(default_factory=Counter)
    batches: list[dict[str, Any]] = field(default_factory=list)
    adapters: list[dict[str, Any]] = field(default_factory=list)
    feedback: Counter[str] = field(default_factory=Counter)
    dead_letters: Counter[str] = field(default_factory=Counter)
    client: FeedbackClient | None = None

    async def run(self) -> None:
        truth = {t.turn_id: t for t in self.scenario.stream}
        watched = [
            topics.CHAT_TURNS,
            topics.DRIFT_EVENTS,
            topics.TEACHER_REQUESTS,
            topics.TEACHER_ANNOTATIONS,
            topics.TRAINING_BATCHES,
            topics.ADAPTERS_EVENTS,
        ]
        names = [self.settings.topic_prefix + t for t in watched]
        drift_topic = self.settings.topic_prefix + topics.DRIFT_EVENTS
        names += [self.settings.topic_prefix + topics.dlq(t) for t in topics.ALL]
        client, secret = next(iter(parse_secrets(self.settings.webhook_secrets).items()))
        async with (
            producer(self.settings, linger_ms=5) as prod,
            consumer(self.settings, names) as cons,
            FeedbackClient(self.webhook_url, client, secret) as self.client,
        ):
            bar = tqdm(total=len(self.scenario.stream), desc="      turns served", unit="turn")
            send_task = asyncio.create_task(self._send(prod))
            last_activity = time.time()
            settle_deadline: float | None = None
            try:
                while True:
                    batch = await cons.getmany(timeout_ms=200, max_records=2000)
                    for tp, messages in batch.items():
                        for m in messages:
                            if tp.topic != drift_topic:  # drift snapshots never stop
                                last_activity = time.time()
                            await self._observe(tp.topic, m.value, truth, bar)
                    if send_task.done():
                        send_task.result()
                    if len(self.served) >= len(self.scenario.stream):
                        if settle_deadline is None:
                            settle_deadline = time.time() + self.options.settle_s
                        idle = time.time() - last_activity
                        learned = len(self.adapters) >= len(self.batches)
                        quiet = idle > self.settings.batch_max_age_s + 3
                        if (learned and quiet) or time.time() > settle_deadline:
                            break
            finally:
                send_task.cancel()
                bar.close()

    async def _send(self, prod: Any) -> None:
        start = time.monotonic()
        prefix = self.settings.topic_prefix
        for i, turn in enumerate(self.scenario.stream):
            delay = start + i / self.options.rate - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            record = ChatInbound(turn_id=turn.turn_id, node_id=turn.node_id, text=turn.text)
            await prod.send(prefix + topics.CHAT_INBOUND, record.dumps(), key=turn.node_id.encode())
        await prod.flush()

    async def _observe(
        self, topic: str, value: bytes, truth: dict[str, Any], bar: tqdm[Any]
    ) -> None:
        name = topic[len(self.settings.topic_prefix) :]
        if name.endswith(topics.DLQ_SUFFIX):
            self.dead_letters[name] += 1
            say(f"      ! dead letter on {name}: {json.loads(value).get('error', '')[:120]}")
        elif name == topics.CHAT_TURNS:
            for turn in decode(TurnBatch, value).chat_turns():
                await self._served(turn, truth, bar)
        elif name == topics.DRIFT_EVENTS:
            ev = DriftEvent.model_validate_json(value)
            if ev.kind == "transition":
                row = ev.model_dump()
                row["turns_served"] = len(self.served)
                self.transitions.append(row)
                mark = "!! DRIFT" if ev.state == "drifting" else "   drift"
                say(
                    f"      {mark} {ev.node_id}/{ev.intent}: {ev.previous_state} -> {ev.state} "
                    f"after {len(self.served)} turns (score {ev.score:.2f}; {ev.reason[:90]})"
                )
        elif name == topics.TEACHER_REQUESTS:
            req = TeacherRequest.model_validate_json(value)
            self.teacher_requests.append(
                {"node": req.node_id, "intent": req.predicted, "turns_served": len(self.served)}
            )
        elif name == topics.TEACHER_ANNOTATIONS:
            ann = TeacherAnnotation.model_validate_json(value)
            self.annotations["abstained" if ann.label is None else "labelled"] += 1
        elif name == topics.TRAINING_BATCHES:
            tb = TrainingBatch.model_validate_json(value)
            sources = Counter(e.source for e in tb.examples)
            self.batches.append(
                {
                    "batch_id": tb.batch_id,
                    "node": tb.node_id,
                    "examples": len(tb.examples),
                    "sources": dict(sources),
                    "turns_served": len(self.served),
                }
            )
        elif name == topics.ADAPTERS_EVENTS:
            ad = AdapterEvent.model_validate_json(value)
            row = ad.model_dump()
            row["turns_served"] = len(self.served)
            self.adapters.append(row)
            acc = ad.metrics.get("holdout_accuracy")
            acc_s = f"held-out acc {acc:.2f}" if acc is not None else ""
            added = f", new intents {ad.labels_added}" if ad.labels_added else ""
            say(
                f"      adapter {ad.node_id}: {ad.status} v{ad.candidate or ad.version} "
                f"{acc_s}{added} ({ad.reason[:70]})"
            )

    async def _served(self, turn: ChatTurn, truth: dict[str, Any], bar: tqdm[Any]) -> None:
        true = truth[turn.turn_id]
        self.served.append(
            {
                "index": true.index,
                "node": turn.node_id,
                "label": true.label,
                "predicted": turn.intent,
                "confidence": turn.confidence,
                "version": turn.adapter_version,
                "drifted": true.drifted,
            }
        )
        bar.update(1)
        kind = await self._feedback(turn, true.label)
        self.served[-1]["feedback"] = kind
        self.served[-1]["feedback_label"] = (
            feedback_label(kind, true.label if kind == "correction" else None, turn.intent)
            if kind
            else None
        )
        if len(self.served) % 200 == 0:
            recent = self.served[-200:]
            acc = sum(r["label"] == r["predicted"] for r in recent) / len(recent)
            bar.set_postfix(acc200=f"{acc:.2f}", alarms=self._alarms(), versions=self._published())

    async def _feedback(self, turn: ChatTurn, label: str) -> str | None:
        """The simulated client: a few labels, more thumbs, decided per turn by a seeded hash.
        Returns the kind of feedback posted, if any."""
        o = self.options
        kind = client_feedback(
            o.seed, turn.turn_id, turn.intent, label, o.label_rate, o.thumbs_rate
        )
        if kind is None:
            return None
        fb = Feedback(
            feedback_id=f"fb-{turn.turn_id}",
            turn_id=turn.turn_id,
            node_id=turn.node_id,
            kind=kind,  # type: ignore[arg-type]
            label=label if kind == "correction" else None,
        )
        self.feedback[kind] += 1
        assert self.client is not None
        await self.client.post([fb])
        return kind

    def _alarms(self) -> int:
        return sum(1 for t in self.transitions if t["state"] == "drifting")

    def _published(self) -> int:
        return sum(1 for a in self.adapters if a["status"] == "published")


def client_feedback(
    seed: int, turn_id: str, served: str, truth: str, label_rate: float, thumbs_rate: float
) -> str | None:
    """What a simulated client says about an answer, decided per turn by a seeded hash: a
    label for ``label_rate`` of turns (a thumbs-up when the answer was right, else a
    correction), a thumbs up or down for ``thumbs_rate`` more, nothing otherwise."""
    r = random.Random(zlib.crc32(f"{seed}:{turn_id}".encode())).random()
    right = served == truth
    if r < label_rate:
        return "thumbs_up" if right else "correction"
    if r < label_rate + thumbs_rate:
        return "thumbs_up" if right else "thumbs_down"
    return None


def _accuracy(rows: list[dict[str, Any]]) -> float | None:
    return sum(r["label"] == r["predicted"] for r in rows) / len(rows) if rows else None


@dataclass(frozen=True)
class EvalPredictions:
    """A node's first and serving adapter versions' answers on the scenario's eval set."""

    first_version: int
    final_version: int
    first: list[str]
    final: list[str]
    intents: dict[str, int]  # version name -> how many intents it knows


def eval_predictions(
    registry: AdapterRegistry, settings: Settings, node: str, scenario: Scenario
) -> EvalPredictions | None:
    versions = registry.versions(node)
    current = registry.current(node)
    if not versions or current is None:
        return None
    opts = edge_options(settings)
    model = EndModel(opts.encoder_path, lora=opts.lora, max_length=opts.max_length)
    texts = [e.text for e in scenario.eval_examples]
    answers: dict[str, list[str]] = {}
    intents: dict[str, int] = {}
    for name, version in (("first", versions[0].version), ("final", current.version)):
        meta, tensors = registry.load(node, version)
        model.load_state(tensors, meta.labels)
        answers[name] = [p.intent for p in model.predict(texts, k=1)]
        intents[name] = len(meta.labels)
    return EvalPredictions(
        versions[0].version, current.version, answers["first"], answers["final"], intents
    )


def drifted_intents(scenario: Scenario) -> set[str]:
    """The intents the scenario's drift is about: emerging (or split off), or shifted."""
    return set(scenario.emerging_intents) | (
        {scenario.shifted_intent} if scenario.shifted_intent else set()
    )


def _evaluate(scenario: Scenario, ev: EvalPredictions | None) -> dict[str, Any]:
    """Held-out accuracy of the node's first and serving versions on the scenario's eval set."""
    if ev is None:
        return {}
    truth = [e.label for e in scenario.eval_examples]
    emerging = drifted_intents(scenario)
    result: dict[str, Any] = {}
    for name, version, preds in (
        ("first", ev.first_version, ev.first),
        ("final", ev.final_version, ev.final),
    ):
        scores = Scores.of(truth, preds)
        drifted = [(t, p) for t, p in zip(truth, preds, strict=True) if t in emerging]
        result[name] = {
            "version": version,
            "intents": ev.intents[name],
            "accuracy": scores.accuracy,
            "drifted_intents_accuracy": (
                sum(t == p for t, p in drifted) / len(drifted) if drifted else None
            ),
        }
    return result


def summarise(
    scenario: Scenario,
    replay: Replay,
    registry: AdapterRegistry,
    evals: dict[str, EvalPredictions | None],
    options: DemoOptions,
    seconds: float,
) -> dict[str, Any]:
    served = sorted(replay.served, key=lambda r: r["index"])
    onset = scenario.onset_index
    published = [a for a in replay.adapters if a["status"] == "published"]
    first_new = min((a["turns_served"] for a in published), default=None)
    first_after: dict[str, int] = {}  # per node: the first version published after the onset
    for a in published:
        if a["turns_served"] >= onset and a["node_id"] not in first_after:
            first_after[a["node_id"]] = a["candidate"] or a["version"]
    tail = served[-max(1, len(served) // 5) :]
    alarms = [t for t in replay.transitions if t["state"] == "drifting"]
    summary: dict[str, Any] = {
        "scenario": options.scenario,
        "data": options.data or "generator",
        "nodes": list(options.nodes),
        "turns_sent": len(scenario.stream),
        "turns_served": len(served),
        "drift_onset_turn": onset,
        "emerging_intents": scenario.emerging_intents,
        "shifted_intent": scenario.shifted_intent,
        "split_from": scenario.split_from,
        "drift_alarms": [
            {
                "node": a["node_id"],
                "intent": a["intent"],
                "after_turns": a["turns_served"],
                "score": a["score"],
                "reason": a["reason"],
            }
            for a in alarms
        ],
        "drift_transitions": len(replay.transitions),
        "feedback": dict(replay.feedback),
        "teacher_requests": len(replay.teacher_requests),
        "teacher_annotations": dict(replay.annotations),
        "training_batches": len(replay.batches),
        "batch_sources": dict(sum((Counter(b["sources"]) for b in replay.batches), Counter())),
        "adapter_events": dict(Counter(a["status"] for a in replay.adapters)),
        "adapter_versions": {n: [v.version for v in registry.versions(n)] for n in options.nodes},
        "dead_letters": dict(replay.dead_letters),
        "stream_accuracy": {
            "before_drift": _accuracy([r for r in served if r["index"] < onset]),
            "after_drift_before_update": _accuracy(
                [
                    r
                    for r in served
                    if r["index"] >= onset and r["version"] < first_after.get(r["node"], 10**9)
                ]
            ),
            "last_20_percent": _accuracy(tail),
            "drifted_turns_in_last_20_percent": _accuracy([r for r in tail if r["drifted"]]),
        },
        "first_adapter_after_turns": first_new,
        "adapter_timeline": [
            {
                "after_turns": a["turns_served"],
                "node": a["node_id"],
                "status": a["status"],
                "version": a["candidate"] or a["version"],
                "batches": len(a["batch_ids"]),
                "train_seconds": round(a["metrics"].get("train_seconds", 0.0), 2),
                "holdout_accuracy": a["metrics"].get("holdout_accuracy"),
                "labels_added": a["labels_added"],
            }
            for a in replay.adapters
        ],
        "batch_timeline": [
            {k: b[k] for k in ("turns_served", "node", "examples", "sources")}
            for b in replay.batches
        ],
        "eval_set": {n: _evaluate(scenario, evals[n]) for n in options.nodes},
        "seconds": round(seconds, 1),
    }
    summary["ok"] = len(served) == len(scenario.stream)
    return summary


def _pct(x: float | None) -> str:
    return "  n/a" if x is None else f"{100 * x:5.1f} %"


def print_summary(s: dict[str, Any], path: Path) -> None:
    acc = s["stream_accuracy"]
    lines = [
        "",
        "==== what happened " + "=" * 50,
        f"turns served            {s['turns_served']} / {s['turns_sent']} "
        f"(drift from turn {s['drift_onset_turn']})",
        f"drift alarms            {len(s['drift_alarms'])}"
        + "".join(
            f"\n    - {a['node']}/{a['intent']} after {a['after_turns']} turns: {a['reason'][:80]}"
            for a in s["drift_alarms"]
        ),
        f"feedback                {s['feedback']}",
        f"teacher requests        {s['teacher_requests']} "
        f"-> annotations {s['teacher_annotations']}",
        f"training batches        {s['training_batches']} "
        f"(examples by source {s['batch_sources']})",
        f"adapter updates         {s['adapter_events']}; versions {s['adapter_versions']}",
        f"dead letters            {s['dead_letters'] or 'none'}",
        "stream accuracy         before drift {}, after drift before an update {}, "
        "last 20 % {} (drifted turns there {})".format(
            _pct(acc["before_drift"]),
            _pct(acc["after_drift_before_update"]),
            _pct(acc["last_20_percent"]),
            _pct(acc["drifted_turns_in_last_20_percent"]),
        ),
    ]
    for node, ev in s["eval_set"].items():
        if ev:
            f, n = ev["first"], ev["final"]
            lines.append(
                f"eval set {node:<14} v{f['version']} {_pct(f['accuracy'])} -> "
                f"v{n['version']} {_pct(n['accuracy'])}   (drifted intents "
                f"{_pct(f['drifted_intents_accuracy'])} -> {_pct(n['drifted_intents_accuracy'])})"
            )
    lines += [f"took {s['seconds']} s; summary: {path}", ""]
    print("\n".join(lines))
