"""Orchestration of ``ecc bench learner``: data, the three learners, serving, the report."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from harness.bench.learner import (
    embedder,
    plan_stream,
    run_edge_learner,
    run_offline_peer,
    run_river_peer,
)
from harness.bench.report import environment, fmt, plot_curve, table, write_json
from harness.console import say
from harness.options import SERVING_QUICK, LearnerBenchOptions
from scenarios.datasets import LabelledData, load_dataset
from scenarios.generator import generated_dataset
from streams.settings import Settings


def run_learner_bench(
    data_path: str | None,
    o: LearnerBenchOptions,
    serving: bool,
    out: Path,
    settings: Settings,
) -> dict[str, Any]:
    started = time.time()
    data: LabelledData = load_dataset(data_path) if data_path else generated_dataset(o.seed)
    plan = plan_stream(data, o)
    say(
        f"[1/4] {data.name}: {len(data.labels)} intents, {len(plan.seeds)} seed examples, "
        f"{len(plan.stream)} streamed in batches of {o.batch_size}, {len(plan.test)} test; "
        f"{len(plan.group_a)} intents only in the first half (forgetting)"
    )
    say(
        "[2/4] edge learner (head refit on its example memory, LoRA consolidation if "
        "enabled, held-out gate), the production code path"
    )
    edge = run_edge_learner(plan, o, settings.edge_options())
    say("[3/4] peers on frozen MiniLM embeddings: river online softmax, offline logistic reg.")
    embed = embedder(settings.encoder or None)
    river = run_river_peer(plan, o, embed)
    offline = run_offline_peer(data, plan, embed)
    serve: dict[str, Any] | None = None
    if serving:
        from harness.bench.serving import run_serving

        say("[4/4] serving through the embedded broker and a real edge worker")
        texts = [e.text for e in plan.test][:1000]
        serve = run_serving(plan.seeds, texts, plan.stream, settings, out, SERVING_QUICK)
    report = {
        "benchmark": "learner",
        "data": data.name,
        "intents": len(data.labels),
        "seed_examples": len(plan.seeds),
        "stream_examples": len(plan.stream),
        "test_examples": len(plan.test),
        "batch_size": o.batch_size,
        "edge_learner": edge,
        "river_peer": river,
        "offline_peer": offline,
        "serving": serve,
        "environment": environment(),
        "seconds": round(time.time() - started, 1),
    }
    out.mkdir(parents=True, exist_ok=True)
    write_json(out / "learner.json", report)
    plot_curve(
        out / "prequential.png",
        {
            "edge learner (fast head refit + gate)": (
                edge["curve"]["seen"],
                edge["curve"]["accuracy"],
            ),
            "river softmax on frozen embeddings": (
                river["curve"]["seen"],
                river["curve"]["accuracy"],
            ),
        },
        f"{data.name}: prequential accuracy on the feedback stream",
    )
    print(render(report, out))
    return report


def render(r: dict[str, Any], out: Path) -> str:
    e, rv, off = r["edge_learner"], r["river_peer"], r["offline_peer"]
    lat = e["latency"]
    f = e["forgetting"]
    rows = [
        ("data", f"{r['data']} ({r['intents']} intents)"),
        (
            "stream",
            f"{r['seed_examples']} seeds + {r['stream_examples']} streamed, "
            f"{r['test_examples']} test",
        ),
        (
            "test accuracy: edge learner",
            f"{fmt(e['test_accuracy_start'], True)} at start -> "
            f"{fmt(e['test_accuracy'], True)} after the stream",
        ),
        ("test accuracy: river peer", fmt(rv["test_accuracy"], True)),
        ("test accuracy: offline LR (full train)", fmt(off["test_accuracy"], True)),
        (
            "prequential: edge / river",
            f"{fmt(e['prequential_accuracy'], True)} / {fmt(rv['prequential_accuracy'], True)}",
        ),
        (
            "forgetting (group A, first-half only)",
            f"{fmt(f['group_a_accuracy_after_first_half'], True)} after first half -> "
            f"{fmt(f['group_a_accuracy_at_end'], True)} at end ({f['group_a_intents']} intents)",
        ),
        ("updates", str(e["updates"])),
        *(
            [
                (
                    f"LoRA ablation ({ab['steps']} steps, {fmt(ab['consolidation_s'])} s)",
                    f"head alone {fmt(ab['head_only_test_accuracy'], True)} -> head + LoRA "
                    f"{fmt(ab['head_lora_test_accuracy'], True)} "
                    f"({fmt(ab['gain_points'], digits=2)} points)",
                )
            ]
            if (ab := e.get("lora_ablation"))
            else []
        ),
        (
            "batch-to-decision s p50 / p95",
            f"{fmt(lat['batch_to_decision_s_p50'], digits=2)} / "
            f"{fmt(lat['batch_to_decision_s_p95'], digits=2)}",
        ),
        (
            "single utterance ms p50 / p95",
            f"{fmt(lat['single_utterance_ms_p50'])} / {fmt(lat['single_utterance_ms_p95'])}",
        ),
        (
            "swap pause ms p50 / max",
            f"{fmt(lat['swap_pause_ms_p50'], digits=2)} / "
            f"{fmt(lat['swap_pause_ms_max'], digits=2)}",
        ),
        ("river ms per example", fmt(rv["ms_per_example"])),
    ]
    s = r.get("serving")
    if s:
        rows += [
            (
                "model alone utt/s (batch " + str(s["infer_batch"]) + ")",
                fmt(s["model_alone_utt_per_s"]),
            ),
            ("served via broker turns/s (burst)", fmt(s["max_turns_per_s"])),
        ]
        rows += [
            (
                f"latency ms p50 / p99 at {p['offered_turns_per_s']:.0f}/s"
                + (", learner busy" if p["learning"] else ""),
                f"{fmt(p['latency_ms_p50'])} / {fmt(p['latency_ms_p99'])}",
            )
            for p in s["load_points"]
            if p["offered_share"] == 0.5
        ]
    rows.append(("report", f"{out / 'learner.json'}, {out / 'prequential.png'}"))
    return "\n==== ecc bench learner " + "=" * 40 + "\n" + table(rows) + "\n"
