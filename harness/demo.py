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
import secrets
import time
from collections import Counter
from pathlib import Path
from typing import Any

from tqdm import tqdm

from harness.broker import EmbeddedBroker
from harness.clients import DEMO_CLIENT
from harness.console import say
from harness.options import DemoOptions
from harness.processes import stop
from harness.replay import EvalPredictions, Replay, drifted_intents, eval_predictions
from harness.workers import start_webhook, start_worker
from harness.world import bootstrap_nodes, cpu_seconds, fresh_run, usable_port
from learners.gate import Scores
from models.registry import AdapterRegistry
from scenarios.datasets import load_dataset
from scenarios.scenario import Scenario, ScenarioConfig, build_scenario
from streams.kafka import ensure_topics
from streams.settings import Settings


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
        webhook_port=usable_port(base.webhook_port),
        metrics_port=usable_port(base.metrics_port) if base.metrics_port else 0,
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
        from harness.bench.loop import loop_report

        loop_report(scenario, replay, evals, summary, settings, options)
    return summary


def _accuracy(rows: list[dict[str, Any]]) -> float | None:
    return sum(r["label"] == r["predicted"] for r in rows) / len(rows) if rows else None


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
                "learn_seconds": round(
                    a["metrics"].get("refit_seconds")
                    or a["metrics"].get("consolidation_seconds")
                    or 0.0,
                    2,
                ),
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
        f"adapter updates         {s['adapter_events']}; versions "
        + ", ".join(
            f"{n} v{v[0]}..v{v[-1]} ({len(v)})" for n, v in s["adapter_versions"].items() if v
        ),
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
