"""``ecc bench learner``: the edge learner on real data, next to its peers, in one run.

1. Online accuracy: an edge node starts from ``seed_per_intent`` labelled examples per
   intent; the rest of the training split arrives as feedback batches. Prequential
   accuracy (each batch predicted before it is learnt) and test accuracy after the stream,
   for the production learner (:class:`learners.edge_node.EdgeNode`: the head refitted on
   its example memory after every batch, LoRA consolidation if enabled, held-out gate), a
   river online softmax regression on frozen MiniLM embeddings fed the same stream (its
   learning rate tuned on the seeds), and scikit-learn's logistic regression trained
   offline on the frozen embeddings of the whole training split, C chosen by
   cross-validation on it (the upper reference; ``offline_peer.C``).
2. Forgetting: the intents of group A appear only in the first half of the stream; their
   test accuracy right after the first half and at the end.
3. Latency: batch-to-decision seconds of 32-example batches; ``label_to_serving_s``: from a
   batch reaching the learner to its labels serving (published batches); the head refit
   and LoRA consolidation seconds; single-utterance inference; and the swap pause (how
   long serving is held while a new version is swapped in).
"""

from __future__ import annotations

import dataclasses
import random
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from harness.bench.peers import C_GRID, RiverPeer, fit_logistic, tune_river
from harness.options import LearnerBenchOptions
from learners.edge_node import EdgeNode, LabelledText
from learners.gate import EvalGate, Scores
from learners.options import EdgeOptions
from models.encoder import Encoder
from models.registry import AdapterRegistry
from scenarios.datasets import Example, LabelledData

OPEN_GATE = EvalGate(
    tolerance=1.0, intent_tolerance=1.0, cumulative_tolerance=1.0, cumulative_intent_tolerance=1.0
)


@dataclass
class StreamPlan:
    seeds: list[Example]
    stream: list[Example]
    test: list[Example]
    group_a: list[str]
    half: int


def plan_stream(data: LabelledData, o: LearnerBenchOptions) -> StreamPlan:
    """Seeds, then a stream where group-A intents appear only in the first half."""
    rng = random.Random(o.seed)
    train = list(data.train)
    rng.shuffle(train)
    by_label: dict[str, list[Example]] = {}
    for e in train:
        by_label.setdefault(e.label, []).append(e)
    labels = sorted(by_label)
    seeds = [e for lab in labels for e in by_label[lab][: o.seed_per_intent]]
    rest = [e for lab in labels for e in by_label[lab][o.seed_per_intent :]]
    rng.shuffle(rest)
    if o.stream_limit is not None:
        rest = rest[: o.stream_limit]
    group_a = sorted(rng.sample(labels, max(1, int(len(labels) * o.forgetting_share))))
    a_set = set(group_a)
    a_items = [e for e in rest if e.label in a_set]
    b_items = [e for e in rest if e.label not in a_set]
    half = len(rest) // 2
    first = a_items[:half] + b_items[: max(0, half - len(a_items))]
    rng.shuffle(first)
    second = b_items[max(0, half - len(a_items)) :]
    test = list(data.test)
    rng.shuffle(test)
    if o.test_limit is not None:
        test = test[: o.test_limit]
    return StreamPlan(seeds, first + second, test, group_a, len(first))


@dataclass
class Curve:
    seen: list[int] = field(default_factory=list)
    accuracy: list[float] = field(default_factory=list)


def _batches(items: Sequence[Example], size: int) -> list[list[Example]]:
    return [list(items[i : i + size]) for i in range(0, len(items), size)]


def _acc(truth: Sequence[str], pred: Sequence[str]) -> float:
    return Scores.of(truth, pred).accuracy


def _subset_acc(test: Sequence[Example], pred: Sequence[str], labels: set[str]) -> float:
    pairs = [(e.label, p) for e, p in zip(test, pred, strict=True) if e.label in labels]
    return _acc([t for t, _ in pairs], [p for _, p in pairs]) if pairs else float("nan")


def run_edge_learner(
    plan: StreamPlan, o: LearnerBenchOptions, options: EdgeOptions
) -> dict[str, Any]:
    """The production learner on the stream; prequential curve, test accuracy, latency."""
    with tempfile.TemporaryDirectory() as tmp:
        state = Path(tmp)
        registry = AdapterRegistry(state / "adapters", keep_last=3)
        EdgeNode.bootstrap(
            "bench",
            registry,
            state,
            [e.text for e in plan.seeds],
            [e.label for e in plan.seeds],
            options,
        )
        node = EdgeNode("bench", registry, state, options)
        test_texts = [e.text for e in plan.test]

        def test_predictions() -> list[str]:
            return [p.intent for p in node.predict(test_texts)[0]]

        start_pred = test_predictions()
        curve, window, window_truth = Curve(), [], []
        decisions: list[float] = []
        to_serving: list[float] = []
        consolidations: list[float] = []
        statuses: dict[str, int] = {}
        rejections: list[str] = []
        mid_pred: list[str] = []
        seen = hits = 0
        batches = _batches(plan.stream, o.batch_size)
        every = _curve_every(len(batches), o)
        for i, batch in enumerate(tqdm(batches, desc="      edge learner", unit="batch")):
            preds, _ = node.predict([e.text for e in batch])
            window += [p.intent for p in preds]
            hits += sum(p.intent == e.label for p, e in zip(preds, batch, strict=True))
            window_truth += [e.label for e in batch]
            started = time.perf_counter()
            out = node.apply_batch(
                f"b{i}",
                [LabelledText(f"e{seen + j}", e.text, e.label) for j, e in enumerate(batch)],
            )
            decisions.append(time.perf_counter() - started)
            if out.served_at is not None:  # the labels now change what the node serves
                to_serving.append(out.served_at - started)
            statuses[out.status] = statuses.get(out.status, 0) + 1
            if out.status == "rejected":
                rejections.append(f"b{i}: {out.reason}")
            if node.consolidation_due():
                started = time.perf_counter()
                slow = node.consolidate()
                consolidations.append(time.perf_counter() - started)
                statuses[f"consolidation_{slow.status}"] = (
                    statuses.get(f"consolidation_{slow.status}", 0) + 1
                )
            seen += len(batch)
            if (i + 1) % every == 0 or i == len(batches) - 1:
                curve.seen.append(seen)
                curve.accuracy.append(_acc(window_truth, window))
                window, window_truth = [], []
            if seen >= plan.half and not mid_pred:
                mid_pred = test_predictions()
        end_pred = test_predictions()
        ablation = (
            _lora_ablation(node, plan, end_pred, test_predictions) if o.lora_ablation else None
        )
        single = []
        for e in plan.test[:200]:
            t = time.perf_counter()
            node.predict([e.text])
            single.append(time.perf_counter() - t)
        truth = [e.label for e in plan.test]
        a = set(plan.group_a)
        return {
            "test_accuracy_start": _acc(truth, start_pred),
            "test_accuracy": _acc(truth, end_pred),
            "prequential_accuracy": hits / max(1, seen),
            "curve": {"seen": curve.seen, "accuracy": curve.accuracy},
            "forgetting": {
                "group_a_intents": len(a),
                "group_a_accuracy_after_first_half": _subset_acc(
                    plan.test, mid_pred or end_pred, a
                ),
                "group_a_accuracy_at_end": _subset_acc(plan.test, end_pred, a),
            },
            "updates": statuses,
            "rejections": rejections,
            "versions": node.version,
            "lora_ablation": ablation,
            "setup": {
                "head_c": options.head_c,
                "memory_per_class": options.memory_per_class,
                "holdout_every": options.holdout_every,
                "consolidate_every": options.consolidate_every,
                "memory_size": len(node.memory),
                "holdout_size": len(node.holdout),
            },
            "latency": {
                "batch_to_decision_s_p50": _pct(decisions, 50),
                "batch_to_decision_s_p95": _pct(decisions, 95),
                "label_to_serving_s_p50": _pct(to_serving, 50),
                "label_to_serving_s_p95": _pct(to_serving, 95),
                "head_refit_s_p50": _pct(node.refit_seconds, 50),
                "consolidation_s_p50": _pct(consolidations, 50),
                "consolidations": len(consolidations),
                "single_utterance_ms_p50": 1000 * _pct(single, 50),
                "single_utterance_ms_p95": 1000 * _pct(single, 95),
                "swap_pause_ms_p50": 1000 * _pct(node.swap_seconds, 50),
                "swap_pause_ms_max": 1000 * max(node.swap_seconds, default=float("nan")),
            },
        }


def _lora_ablation(
    node: EdgeNode,
    plan: StreamPlan,
    head_only: list[str],
    test_predictions: Callable[[], list[str]],
) -> dict[str, Any]:
    """One consolidation over the node's whole memory, after the stream: the test accuracy
    of the head alone against the head refitted on the LoRA-adapted encoder. The gate is
    opened for it (so the comparison is always made); its held-out figures are kept."""
    truth = [e.label for e in plan.test]
    strict = node.options
    node.options = dataclasses.replace(strict, gate=OPEN_GATE)
    started = time.perf_counter()
    try:
        outcome = node.consolidate()
    finally:
        node.options = strict
    seconds = time.perf_counter() - started
    lora = test_predictions() if outcome.status == "published" else head_only
    head_acc, lora_acc = _acc(truth, head_only), _acc(truth, lora)
    return {
        "status": outcome.status,
        "reason": outcome.reason,
        "steps": strict.train.steps,
        "learning_rate": strict.train.learning_rate,
        "consolidation_s": seconds,
        "holdout_accuracy_head_only": outcome.metrics.get("holdout_accuracy_before"),
        "holdout_accuracy_head_lora": outcome.metrics.get("holdout_accuracy"),
        "head_only_test_accuracy": head_acc,
        "head_lora_test_accuracy": lora_acc,
        "gain_points": 100 * (lora_acc - head_acc),
    }


def _curve_every(n_batches: int, o: LearnerBenchOptions) -> int:
    """Batches per curve point (the river peer's curve uses the same windows)."""
    return max(1, n_batches // o.curve_points)


def _pct(values: Sequence[float], q: float) -> float:
    return float(np.percentile(values, q)) if values else float("nan")


def run_river_peer(
    plan: StreamPlan, o: LearnerBenchOptions, embed: Callable[[list[str]], np.ndarray[Any, Any]]
) -> dict[str, Any]:
    """river's online softmax regression on frozen embeddings, fed seeds then the stream."""
    seeds_x = embed([e.text for e in plan.seeds])
    seed_labels = [e.label for e in plan.seeds]
    model = RiverPeer(tune_river(seeds_x, seed_labels))
    model.bootstrap(seeds_x, seed_labels)
    stream_vecs = embed([e.text for e in plan.stream])
    hits, started = 0, time.perf_counter()
    window = o.batch_size * _curve_every(-(-len(plan.stream) // o.batch_size), o)
    curve, in_window = Curve(), 0
    items = list(zip(plan.stream, stream_vecs, strict=True))
    for n, (e, v) in enumerate(tqdm(items, desc="      river peer", unit="ex"), start=1):
        right = model.predict(v) == e.label
        hits += right
        in_window += right
        model.learn(v, e.label)
        if n % window == 0 or n == len(items):
            curve.seen.append(n)
            curve.accuracy.append(in_window / (n - (curve.seen[-2] if len(curve.seen) > 1 else 0)))
            in_window = 0
    per_example = (time.perf_counter() - started) / max(1, len(plan.stream))
    test_vecs = embed([e.text for e in plan.test])
    pred = [model.predict(v) for v in test_vecs]
    return {
        "test_accuracy": _acc([e.label for e in plan.test], pred),
        "prequential_accuracy": hits / max(1, len(plan.stream)),
        "curve": {"seen": curve.seen, "accuracy": curve.accuracy},
        "ms_per_example": 1000 * per_example,
        "learning_rate": model.learning_rate,
    }


def run_offline_peer(
    data: LabelledData, plan: StreamPlan, embed: Callable[[list[str]], np.ndarray[Any, Any]]
) -> dict[str, Any]:
    """scikit-learn's logistic regression on frozen embeddings of the whole training split,
    C chosen by cross-validation on the training split."""
    model = fit_logistic(embed([e.text for e in data.train]), [e.label for e in data.train])
    pred = [str(p) for p in model.predict(embed([e.text for e in plan.test]))]
    return {
        "test_accuracy": _acc([e.label for e in plan.test], pred),
        "train_examples": len(data.train),
        "C": model.c,
        "C_grid": list(C_GRID),
    }


def embedder(encoder_path: str | None) -> Callable[[list[str]], np.ndarray[Any, Any]]:
    """Frozen mean-pooled embeddings, cached per text (the peers share them)."""
    encoder = Encoder(encoder_path)
    cache: dict[str, np.ndarray[Any, Any]] = {}

    def embed(texts: list[str]) -> np.ndarray[Any, Any]:
        missing = [t for t in dict.fromkeys(texts) if t not in cache]
        for i in range(0, len(missing), 256):
            chunk = missing[i : i + 256]
            for t, v in zip(chunk, encoder.embed(chunk), strict=True):
                cache[t] = v
        return np.stack([cache[t] for t in texts]) if texts else np.zeros((0, encoder.dim))

    return embed
