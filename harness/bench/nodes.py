"""``ecc bench nodes``: how many stores one worker holds, in how much memory, how fast.

For each node count (10, 100 and 1,000 by default) the bench bootstraps that many nodes
into one registry, each from its own draw of seed examples (its own head), and gives every
one its own non-zero LoRA adapter of the trained size (random weights: a consolidation's
weights cost the same to store and to run). Then, in a fresh process, as a worker does:

- it loads every node cold from the registry (:class:`learners.edge_node.EdgeNode`, timed:
  ``cold_load_ms_p50`` / ``_p99``) and reads the process's resident memory after the first
  node and after the last (``rss_mib``; ``marginal_mib_per_node`` is the growth per node
  beyond the first, which carries the shared encoder);
- it answers ``turns`` turns whose nodes follow a Zipf mix (rank k in proportion to
  1 / k**s), in micro-batches of 64 grouped by node and answered in one forward pass
  (:meth:`EdgeNode.predict_many`, the worker's serving call), and the same turns all for
  one node (``single_node_turns_per_s``, same process, alternated, best of two each);
  ``mixed_throughput_ratio`` is the first over the second;
- one node learns a batch: its memory and held-out set are read in
  (``learning_node_mib``, the node's own bytes while it learns) and the new head is
  swapped in (``hot_swap_ms``).

``nodes.json`` holds every figure and ``nodes.png`` plots memory and throughput against
the node count.
"""

from __future__ import annotations

import gc
import multiprocessing
import random
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

import numpy as np
import torch

from harness.bench.report import environment, fmt, table, write_json
from harness.console import say
from harness.options import NodesBenchOptions
from learners.edge_node import EdgeNode, LabelledText, new_end_model
from learners.options import EdgeOptions
from learners.resident import ResidentNodes
from models.compute import serving_threads
from models.lora import LoraAdapter
from models.registry import AdapterRegistry
from scenarios.datasets import LabelledData

ADAPTER_SCALE = 0.02  # std of the random LoRA B entries (a consolidation's are of this size)


def node_name(i: int) -> str:
    return f"store-{i:05d}"


def run_nodes(
    data: LabelledData,
    edge: EdgeOptions,
    infer_threads: int,
    folder: Path,
    out: Path,
    o: NodesBenchOptions,
) -> dict[str, Any]:
    """Every figure of the nodes bench (see the module docstring)."""
    texts = [e.text for e in data.test]
    points = []
    for count in o.counts:
        state = folder / f"nodes-{count}"
        say(f"      {count} nodes: bootstrapping")
        populate(state, count, data, edge, o)
        say(f"      {count} nodes: loading and serving them in a fresh process")
        with multiprocessing.get_context("spawn").Pool(1) as pool:
            point = pool.apply(measure, (state, count, edge, infer_threads, texts, o))
        points.append(point)
        say(
            f"      {count} nodes: RSS {point['rss_mib']:.0f} MiB, "
            f"{point['marginal_mib_per_node']:.2f} MiB/node, "
            f"{point['turns_per_s']:.0f} turns/s mixed vs {point['single_node_turns_per_s']:.0f}"
        )
    largest = points[-1]
    report = {
        "benchmark": "nodes",
        "dataset": data.name,
        "adapters": "every node serves its own non-zero LoRA adapter (r and targets of the "
        "settings), as after a consolidation",
        "options": {
            "counts": list(o.counts),
            "turns": o.turns,
            "batch": o.batch,
            "zipf_s": o.zipf_s,
            "seeds_per_intent": o.seeds_per_intent,
        },
        "points": points,
        "goals": {
            "marginal_mib_per_node": largest["marginal_mib_per_node"],
            "marginal_mib_per_node_goal": 2.0,
            "mixed_throughput_ratio": largest["mixed_throughput_ratio"],
            "mixed_throughput_ratio_goal": 0.7,
            "cold_load_ms_p99": largest["cold_load_ms_p99"],
            "cold_load_ms_p99_goal": 50.0,
        },
        "environment": environment(),
    }
    write_json(out / "nodes.json", report)
    plot_nodes(out / "nodes.png", report)
    print(render(report, out))
    return report


def populate(
    state: Path, count: int, data: LabelledData, edge: EdgeOptions, o: NodesBenchOptions
) -> None:
    """``count`` bootstrapped nodes under ``state``, each from its own seed draw, each
    serving its own adapter."""
    registry = AdapterRegistry(state / "adapters")
    by_label: dict[str, list[str]] = defaultdict(list)
    for e in data.train:
        by_label[e.label].append(e.text)
    pool = {y: xs[: 3 * o.seeds_per_intent] for y, xs in by_label.items()}
    model = new_end_model(edge)
    flat = [(y, x) for y, xs in pool.items() for x in xs]
    vectors = dict(zip(flat, model.embed([x for _, x in flat]), strict=True))
    rng = random.Random(o.seed)
    for i in range(count):
        node = node_name(i)
        if registry.current(node) is not None:
            continue
        seeds = [
            (y, x)
            for y, xs in pool.items()
            for x in rng.sample(xs, min(len(xs), o.seeds_per_intent))
        ]
        EdgeNode.bootstrap(
            node,
            registry,
            state,
            [x for _, x in seeds],
            [y for y, _ in seeds],
            edge,
            np.stack([vectors[s] for s in seeds]),
        )
        meta, tensors = registry.load(node, 1)
        adapter = LoraAdapter.initial(model.encoder.shapes, edge.lora.r, edge.lora.alpha, seed=i)
        generator = torch.Generator().manual_seed(o.seed + i)
        for b in adapter.b.values():
            b.copy_(torch.randn(b.shape, generator=generator) * ADAPTER_SCALE)
        tensors.update({"lora." + k: v for k, v in adapter.state().items()})
        registry.publish(
            node, tensors, meta.labels, meta.base_model, parent=1, extra={"reason": "bench adapter"}
        )


def measure(
    state: Path,
    count: int,
    edge: EdgeOptions,
    infer_threads: int,
    texts: list[str],
    o: NodesBenchOptions,
) -> dict[str, Any]:
    """One node count's figures, in the calling (fresh) process."""
    torch.set_num_threads(serving_threads(infer_threads))
    registry = AdapterRegistry(state / "adapters")
    names = [node_name(i) for i in range(count)]
    nodes: ResidentNodes[EdgeNode] = ResidentNodes()
    first = EdgeNode(names[0], registry, state, edge)
    first.predict(texts[: o.batch])  # the shared encoder loaded and warm
    nodes.put(names[0], first)
    rss_first = _rss_mib()
    loads = []
    for name in names[1:]:
        started = time.perf_counter()
        nodes.put(name, EdgeNode(name, registry, state, edge))
        loads.append(time.perf_counter() - started)
    gc.collect()
    rss = _rss_mib()
    rng = np.random.default_rng(o.seed)
    weights = 1.0 / np.arange(1, count + 1) ** o.zipf_s
    mix = rng.choice(count, size=o.turns, p=weights / weights.sum())
    turns = [(names[k], texts[i % len(texts)]) for i, k in enumerate(mix)]
    single = [(names[0], text) for _, text in turns]
    _serve(nodes, turns[: o.batch], o.batch)  # warm
    mixed_s, single_s = [], []
    for _ in range(2):
        mixed_s.append(_serve(nodes, turns, o.batch))
        single_s.append(_serve(nodes, single, o.batch))
    before = first.nbytes
    outcome = first.apply_batch("bench-learn", _learning_batch(first, texts))
    timed = loads[-o.cold_loads :] if loads else [float("nan")]
    return {
        "nodes": count,
        "rss_mib": rss,
        "rss_first_node_mib": rss_first,
        "marginal_mib_per_node": (rss - rss_first) / max(count - 1, 1),
        "node_own_mib_mean": nodes.nbytes / len(nodes) / 2**20,
        "turns_per_s": o.turns / min(mixed_s),
        "single_node_turns_per_s": o.turns / min(single_s),
        "mixed_throughput_ratio": min(single_s) / min(mixed_s),
        "distinct_nodes_per_batch": float(
            np.mean(
                [len({n for n, _ in turns[i : i + o.batch]}) for i in range(0, len(turns), o.batch)]
            )
        ),
        "cold_load_ms_p50": 1000 * float(np.percentile(timed, 50)),
        "cold_load_ms_p99": 1000 * float(np.percentile(timed, 99)),
        "cold_loads_timed": len(timed),
        "learning_node_mib": (first.nbytes - before) / 2**20,
        "learning_status": outcome.status,
        "hot_swap_ms": 1000 * first.swap_seconds[-1] if first.swap_seconds else float("nan"),
    }


def _serve(nodes: ResidentNodes[EdgeNode], turns: list[tuple[str, str]], batch: int) -> float:
    """Seconds to answer ``turns`` as the worker does: micro-batches grouped by node."""
    started = time.perf_counter()
    for i in range(0, len(turns), batch):
        groups: dict[str, list[str]] = defaultdict(list)
        for name, text in turns[i : i + batch]:
            groups[name].append(text)
        requests = []
        for name, group in groups.items():
            node = nodes.get(name)
            assert node is not None
            requests.append((node, group))
        EdgeNode.predict_many(requests)
    return time.perf_counter() - started


def _learning_batch(node: EdgeNode, texts: list[str]) -> list[LabelledText]:
    """Labels a user would give: the node's own answers to some test texts."""
    asked = texts[:32]
    answers = node.predict(asked)[0]
    return [
        LabelledText(f"bench-{i}", t, p.intent)
        for i, (t, p) in enumerate(zip(asked, answers, strict=True))
    ]


def _rss_mib() -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def render(r: dict[str, Any], out: Path) -> str:
    rows = [("dataset", r["dataset"]), ("adapters", "one per node, non-zero")]
    for p in r["points"]:
        n = p["nodes"]
        rows += [
            (f"{n} nodes: RSS", f"{p['rss_mib']:.0f} MiB"),
            (f"{n} nodes: MiB per node", f"{p['marginal_mib_per_node']:.3f} (beyond the first)"),
            (
                f"{n} nodes: turns/s",
                f"{p['turns_per_s']:.0f} Zipf mix ({p['distinct_nodes_per_batch']:.1f} nodes "
                f"per batch) vs {p['single_node_turns_per_s']:.0f} one node: "
                f"ratio {p['mixed_throughput_ratio']:.2f}",
            ),
            (
                f"{n} nodes: cold load",
                f"p50 {fmt(p['cold_load_ms_p50'])} ms, p99 {fmt(p['cold_load_ms_p99'])} ms",
            ),
        ]
    last = r["points"][-1]
    rows += [
        ("a learning node", f"{last['learning_node_mib']:.2f} MiB (memory and held-out set)"),
        ("hot swap", f"{fmt(last['hot_swap_ms'], digits=2)} ms"),
        ("report", f"{out / 'nodes.json'}, {out / 'nodes.png'}"),
    ]
    return "\n==== ecc bench nodes " + "=" * 42 + "\n" + table(rows) + "\n"


def plot_nodes(path: Path, r: dict[str, Any]) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    counts = [p["nodes"] for p in r["points"]]
    fig, memory = plt.subplots(figsize=(8, 4.5))
    memory.plot(
        counts,
        [p["rss_mib"] for p in r["points"]],
        "o-",
        color="tab:blue",
        label="worker RSS (MiB)",
    )
    memory.set_xscale("log")
    memory.set_xlabel("nodes in one worker")
    memory.set_ylabel("RSS (MiB)", color="tab:blue")
    memory.set_ylim(bottom=0)
    speed = memory.twinx()
    speed.plot(
        counts,
        [p["turns_per_s"] for p in r["points"]],
        "s-",
        color="tab:red",
        label="turns/s, Zipf mix",
    )
    speed.plot(
        counts,
        [p["single_node_turns_per_s"] for p in r["points"]],
        "s--",
        color="tab:orange",
        label="turns/s, one node",
    )
    speed.set_ylabel("turns / s (model, micro-batches of 64)", color="tab:red")
    speed.set_ylim(bottom=0)
    fig.legend(loc="lower left", bbox_to_anchor=(0.1, 0.12))
    memory.set_title(f"Many nodes in one worker ({r['dataset']})")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path
