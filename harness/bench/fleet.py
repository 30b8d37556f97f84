"""``ecc bench fleet-learning``: what one store learns reaches the others through the cloud.

Four nodes (by default) each start from a few seed examples of the same base intents and
learn, round by round, one batch of their own labels. New intents appear at the first node
from ``first_round`` and at the others only from ``late_round``. The same stream runs
twice, through the service's own code: :class:`learners.edge_node.EdgeNode` (fast path,
gate, registry) and, in the second arm, after every round a
:class:`learners.fleet.aggregator.FleetAggregator` round whose prior every node considers
through its own gate (:meth:`EdgeNode.adopt`), as the fleet role and the edge workers do.

Per late node it reports the accuracy on the new intents just before its first label of
them (``new_intent_accuracy_before_labels``), the aggregation rounds until it answered them
at ``threshold`` (``rounds_to_answer``), the labels of them it needed to reach it
(``recovery_labels``), and its own intents' accuracy before and after each adoption. And a
node opened at the end is bootstrapped from a few seeds alone and from the fleet's prior
(``ecc node init --from-fleet``): both scored on every intent of the test split.

The encoder is frozen in the default configuration (``ECC_CONSOLIDATE_EVERY=0``), so the
test split is embedded once and every head scored on those embeddings.
"""

from __future__ import annotations

import random
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from harness.bench.report import environment, fmt, plot_curve, table, write_json
from harness.console import say
from harness.options import FleetBenchOptions
from learners.edge_node import EdgeNode, LabelledText, new_end_model
from learners.fleet.aggregator import FleetAggregator, latest_prior
from learners.options import EdgeOptions, FleetOptions
from models.end_model import EndModel
from models.registry import AdapterRegistry
from scenarios.datasets import Example, LabelledData

Array = np.ndarray[Any, Any]


@dataclass(frozen=True)
class _Plan:
    base: list[str]
    new: list[str]
    seeds: list[list[Example]]  # per node
    base_stream: list[list[Example]]  # per node, in order
    new_stream: list[dict[str, list[Example]]]  # per node, per new intent
    test: list[Example]


def _plan(data: LabelledData, o: FleetBenchOptions) -> _Plan:
    rng = random.Random(o.seed)
    labels = sorted({e.label for e in data.train})
    rng.shuffle(labels)
    if len(labels) < o.new_intents + 2:
        raise ValueError(f"{data.name} has {len(labels)} intents: too few for the bench")
    known = min(o.intents, len(labels) - o.new_intents)  # the generator has 17 in all
    base, new = labels[:known], labels[known : known + o.new_intents]
    shares: list[dict[str, list[Example]]] = [{} for _ in range(o.nodes)]
    for label in base + new:
        mine = [e for e in data.train if e.label == label]
        rng.shuffle(mine)
        for i in range(o.nodes):
            shares[i][label] = mine[i :: o.nodes]
    seeds = [[e for y in base for e in share[y][: o.seeds_per_intent]] for share in shares]
    streams = []
    for share in shares:
        rest = [e for y in base for e in share[y][o.seeds_per_intent :]]
        rng.shuffle(rest)
        streams.append(rest)
    test = [e for e in data.test if e.label in set(base + new)]
    return _Plan(base, new, seeds, streams, [{y: s[y] for y in new} for s in shares], test)


class _Scorer:
    """Accuracy of a node on the test split, from embeddings computed once."""

    def __init__(self, model: EndModel, test: list[Example], base: list[str], new: list[str]):
        self.model = model
        self.texts = [e.text for e in test]
        self.truth = np.array([e.label for e in test])
        self.vectors = model.embed(self.texts)
        self.base = np.isin(self.truth, base)
        self.new = np.isin(self.truth, new)

    def predictions(self, node: EdgeNode) -> Array:
        if node.serving.adapter is not None:  # LoRA on: through the node itself
            return np.array([p.intent for p in node.predict(self.texts)[0]])
        weight, bias = node.serving.head_logits()
        labels = np.array(node.serving.labels)
        return labels[(self.vectors @ weight.T + bias).argmax(1)]

    def scores(self, node: EdgeNode) -> tuple[float, float]:
        """(accuracy on the base intents, on the new intents)."""
        hit = self.predictions(node) == self.truth
        return float(hit[self.base].mean()), float(hit[self.new].mean())


def _examples(node: int, batch: list[Example], tag: str) -> list[LabelledText]:
    return [LabelledText(f"n{node}-{tag}-{i}", e.text, e.label) for i, e in enumerate(batch)]


def _run_arm(
    plan: _Plan,
    scorer: _Scorer,
    edge: EdgeOptions,
    fleet_options: FleetOptions,
    folder: Path,
    o: FleetBenchOptions,
    fleet_on: bool,
) -> dict[str, Any]:
    registry = AdapterRegistry(folder / "adapters")
    names = [f"store-{i}" for i in range(o.nodes)]
    for i, name in enumerate(names):
        seeds = plan.seeds[i]
        vectors = scorer.model.embed([e.text for e in seeds])
        EdgeNode.bootstrap(
            name, registry, folder, [e.text for e in seeds], [e.label for e in seeds], edge, vectors
        )
    nodes = [EdgeNode(name, registry, folder, edge) for name in names]
    aggregator = FleetAggregator(registry, fleet_options, edge.lora)
    curves: list[list[float]] = [[] for _ in nodes]
    own: list[list[float]] = [[] for _ in nodes]
    labels_of_new = [0] * o.nodes
    first_hit: list[dict[str, Any] | None] = [None] * o.nodes
    adoptions: list[list[dict[str, Any]]] = [[] for _ in nodes]
    rounds_since_learnt = 0
    for r in range(o.rounds):
        for i, node in enumerate(nodes):
            batch = plan.base_stream[i][r * o.labels_per_round : (r + 1) * o.labels_per_round]
            sees_new = r >= (o.first_round if i == 0 else o.late_round)
            if sees_new:
                at = (r - (o.first_round if i == 0 else o.late_round)) * o.new_labels_per_round
                fresh = [
                    e
                    for y in plan.new
                    for e in plan.new_stream[i][y][at : at + o.new_labels_per_round]
                ]
                labels_of_new[i] += len(fresh)
                batch = batch + fresh
            node.apply_batch(f"r{r}", _examples(i, batch, f"r{r}"))
        if fleet_on:
            prior = aggregator.round(force=True)
            if prior is not None and any(y in prior.labels for y in plan.new):
                rounds_since_learnt += 1
            for i, node in enumerate(nodes):
                if prior is None:
                    break
                before = scorer.scores(node)
                outcome = node.adopt(prior)
                after = scorer.scores(node)
                if outcome.status != "skipped":
                    adoptions[i].append(
                        {
                            "round": r,
                            "prior": prior.version,
                            "status": outcome.status,
                            "reason": outcome.reason,
                            "own_accuracy_before": before[0],
                            "own_accuracy_after": after[0],
                        }
                    )
        for i, node in enumerate(nodes):
            base_acc, new_acc = scorer.scores(node)
            curves[i].append(new_acc)
            own[i].append(base_acc)
            if first_hit[i] is None and new_acc >= o.threshold:
                first_hit[i] = {
                    "round": r,
                    "labels": labels_of_new[i],
                    "aggregation_rounds": rounds_since_learnt if fleet_on else None,
                }
    per_node = []
    for i, name in enumerate(names):
        late = o.first_round if i == 0 else o.late_round
        hit = first_hit[i]
        drops = [a["own_accuracy_before"] - a["own_accuracy_after"] for a in adoptions[i]]
        per_node.append(
            {
                "node": name,
                "sees_new_intents_from_round": late,
                "new_intent_accuracy_before_labels": curves[i][late - 1] if late > 0 else 0.0,
                "rounds_to_answer": hit["aggregation_rounds"] if hit else None,
                "recovery_labels": hit["labels"] if hit else None,
                "new_intent_accuracy_by_round": curves[i],
                "own_intent_accuracy_by_round": own[i],
                "adoptions": adoptions[i],
                "largest_own_accuracy_drop_through_adoption": max(drops) if drops else 0.0,
                "final_own_intent_accuracy": own[i][-1],
                "final_new_intent_accuracy": curves[i][-1],
            }
        )
    return {"nodes": per_node, "registry": registry}


def _new_node(
    plan: _Plan,
    scorer: _Scorer,
    registry: AdapterRegistry,
    edge: EdgeOptions,
    folder: Path,
    o: FleetBenchOptions,
) -> dict[str, Any]:
    """A node opened at the end: a few seeds alone, and the same seeds with the prior."""
    rng = random.Random(o.seed + 1)
    pool = [e for e in plan.base_stream[-1]]
    rng.shuffle(pool)
    seeds = [e for y in plan.base for e in [x for x in pool if x.label == y][: o.new_node_seeds]]
    texts, labels = [e.text for e in seeds], [e.label for e in seeds]
    vectors = scorer.model.embed(texts)
    prior = latest_prior(registry)
    out: dict[str, Any] = {"seed_examples": len(seeds)}
    for arm, with_prior in (("seed_only", None), ("from_fleet", prior)):
        name = f"new-{arm.replace('_', '-')}"
        EdgeNode.bootstrap(name, registry, folder, texts, labels, edge, vectors, prior=with_prior)
        node = EdgeNode(name, registry, folder, edge)
        hit = scorer.predictions(node) == scorer.truth
        out[arm] = {
            "accuracy": float(hit.mean()),
            "own_intent_accuracy": float(hit[scorer.base].mean()),
            "new_intent_accuracy": float(hit[scorer.new].mean()),
            "intents": len(node.serving.labels),
        }
    out["gain_points"] = 100 * (out["from_fleet"]["accuracy"] - out["seed_only"]["accuracy"])
    out["prior_version"] = prior.version if prior else None
    return out


def run_fleet(
    data: LabelledData,
    edge: EdgeOptions,
    fleet_options: FleetOptions,
    folder: Path,
    out: Path,
    o: FleetBenchOptions,
) -> dict[str, Any]:
    plan = _plan(data, o)
    say(
        f"      {data.name}: {o.nodes} nodes, {len(plan.base)} known intents, new "
        f"{plan.new} at store-0 from round {o.first_round}, elsewhere from {o.late_round}"
    )
    scorer = _Scorer(
        new_end_model(edge),
        plan.test,
        plan.base,
        plan.new,
    )
    arms: dict[str, Any] = {}
    for arm, on in (("alone", False), ("fleet", True)):
        say(f"      arm {arm}: {o.rounds} rounds")
        arms[arm] = _run_arm(plan, scorer, edge, fleet_options, folder / arm, o, on)
    new_node = _new_node(plan, scorer, arms["fleet"].pop("registry"), edge, folder / "fleet", o)
    arms["alone"].pop("registry")
    late = [n for n in arms["fleet"]["nodes"] if n["sees_new_intents_from_round"] > o.first_round]
    drops = [n["largest_own_accuracy_drop_through_adoption"] for n in arms["fleet"]["nodes"]]
    report: dict[str, Any] = {
        "dataset": data.name,
        "options": asdict(o),
        "fleet_options": asdict(fleet_options),
        "gate_tolerance": edge.gate.tolerance,
        "base_intents": plan.base,
        "new_intents": plan.new,
        "arms": arms,
        "new_node": new_node,
        "goals": {
            "late_nodes_new_intent_accuracy_before_labels_min": min(
                n["new_intent_accuracy_before_labels"] for n in late
            ),
            "late_nodes_rounds_to_answer_max": max(
                (n["rounds_to_answer"] for n in late if n["rounds_to_answer"] is not None),
                default=None,
            ),
            "late_nodes_answering_before_labels": sum(
                n["new_intent_accuracy_before_labels"] >= o.threshold for n in late
            ),
            "late_nodes": len(late),
            "new_node_gain_points": new_node["gain_points"],
            "largest_own_accuracy_drop_through_adoption": max(drops) if drops else 0.0,
        },
        "environment": environment(),
    }
    write_json(out / "fleet_learning.json", report)
    curves = {}
    for arm in ("alone", "fleet"):
        for n in arms[arm]["nodes"][1:2]:
            ys = n["new_intent_accuracy_by_round"]
            curves[f"{n['node']} {arm}"] = (list(range(len(ys))), ys)
    title = f"{data.name}: the new intents at a node that sees them late"
    plot_curve(
        out / "fleet_learning.png", curves, title, "round", "accuracy on the new intents (%)"
    )
    g: dict[str, Any] = report["goals"]
    seed_only, from_fleet = new_node["seed_only"]["accuracy"], new_node["from_fleet"]["accuracy"]
    rows = [
        (
            "late nodes answering new intents before a label",
            f"{g['late_nodes_answering_before_labels']} of {g['late_nodes']}",
        ),
        (
            "their accuracy on them then (lowest)",
            fmt(g["late_nodes_new_intent_accuracy_before_labels_min"], pct=True),
        ),
        ("aggregation rounds until answered (most)", fmt(g["late_nodes_rounds_to_answer_max"])),
        (
            "same, fleet off: accuracy before labels",
            fmt(
                min(n["new_intent_accuracy_before_labels"] for n in arms["alone"]["nodes"][1:]),
                pct=True,
            ),
        ),
        (
            "new node: seed-only / from the fleet",
            f"{fmt(seed_only, pct=True)} / {fmt(from_fleet, pct=True)}",
        ),
        (
            "largest own-intent drop through adoption",
            fmt(g["largest_own_accuracy_drop_through_adoption"], pct=True),
        ),
    ]
    say(f"\n==== ecc bench fleet-learning: {data.name} " + "=" * 30 + "\n" + table(rows) + "\n")
    return report
