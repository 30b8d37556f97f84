"""``ecc bench teacher``: what a teacher request buys, chosen by the policy or at random.

On an emerging-intent scenario of each dataset, one edge node starts as a node does (the
packaged MiniLM, head from 10 seed examples per initial intent) and serves the stream
without adapting. Its answers feed the drift monitor (as in ``ecc bench drift``) and the
teacher-request policy (:class:`learners.teacher_policy.TeacherRequestPolicy`: drifting
intents, strongest drift and lowest confidence first, diverse, within
``budget_per_minute`` at ``rate`` turns a second). *Random* sends the same number of turns
drawn uniformly from the turns served after the drift's onset. Both sets go to the
embedded teacher (a kNN vote over the dataset's whole training split, the cloud's corpus);
answers at or above ``ECC_TEACHER_MIN_CONFIDENCE`` become training batches of 32, applied
through the production learner (LoRA steps, replay, eval gate) of a fresh copy of the node.

Reported per arm: teacher requests, labels kept, the teacher's label accuracy on them,
held-out accuracy (the scenario's eval set, all intents and the emerging ones) before and
after, and **accuracy recovered per 100 teacher requests** (points of eval accuracy gained
over the starting node, per 100 requests). Same stream, same budget, same learner.
"""

from __future__ import annotations

import random
import tempfile
from pathlib import Path
from typing import Any

from harness.bench.drift import Embeddings, Served, _data, score, serve
from harness.bench.report import environment, fmt, table, write_json
from harness.console import say
from harness.options import DriftBenchOptions, TeacherBenchOptions
from learners.edge_node import EdgeNode, LabelledText
from learners.teacher_policy import TeacherRequestPolicy
from models.encoder import Encoder
from models.end_model import EndModel
from models.registry import AdapterRegistry
from models.teacher import EmbeddedTeacher
from scenarios.scenario import Scenario, ScenarioConfig, build_scenario
from streams.settings import Settings


def policy_choice(scenario: Scenario, served: Served, o: TeacherBenchOptions) -> list[int]:
    """Stream indices the policy sends to the teacher, in order."""
    alarms = score(scenario, served, DriftBenchOptions(), o.seed).alarms
    by_turn: dict[int, list[dict[str, Any]]] = {}
    for alarm in alarms:
        by_turn.setdefault(alarm["turn"], []).append(alarm)
    policy = TeacherRequestPolicy(budget_per_minute=o.budget_per_minute, low_confidence=0.5)
    index = {t.turn_id: i for i, t in enumerate(scenario.stream)}
    chosen: list[int] = []
    for i, turn in enumerate(scenario.stream):
        now = i / o.rate
        for alarm in by_turn.get(i, []):
            got = policy.set_drifting(alarm["node"], alarm["intent"], True, alarm["score"], now)
            chosen += [index[c.turn_id] for c in got]
        got = policy.offer_turn(
            turn.node_id,
            turn.turn_id,
            served.intents[i],
            float(served.confidences[i]),
            turn.text,
            now,
        )
        chosen += [index[c.turn_id] for c in got + policy.due(now)]
    return chosen


def random_choice(scenario: Scenario, count: int, seed: int) -> list[int]:
    after = list(range(scenario.onset_index, len(scenario.stream)))
    return sorted(random.Random(seed).sample(after, min(count, len(after))))


def learn(
    scenario: Scenario,
    chosen: list[int],
    teacher: EmbeddedTeacher,
    s: Settings,
    o: TeacherBenchOptions,
    folder: Path,
) -> dict[str, Any]:
    """Teacher labels for ``chosen`` turns, learnt by a fresh copy of the node."""
    texts = [scenario.stream[i].text for i in chosen]
    answers = teacher.annotate(texts) if texts else []
    kept = [
        (i, a.label)
        for i, a in zip(chosen, answers, strict=True)
        if a.label is not None and a.confidence >= s.teacher_min_confidence
    ]
    correct = sum(label == scenario.stream[i].label for i, label in kept)
    node = _fresh_node(scenario, s, folder)
    examples = [
        LabelledText(f"teacher:{scenario.stream[i].turn_id}", scenario.stream[i].text, str(label))
        for i, label in kept
    ]
    outcomes = []
    for b in range(0, len(examples), o.batch):
        outcome = node.apply_batch(f"b{b}", examples[b : b + o.batch])
        outcomes.append(outcome.status)
    return {
        "requests": len(chosen),
        "labels_kept": len(kept),
        "teacher_label_accuracy": correct / len(kept) if kept else float("nan"),
        "updates": {k: outcomes.count(k) for k in sorted(set(outcomes))},
        "requests_on_drifted_turns": sum(scenario.stream[i].drifted for i in chosen),
        **evaluate(node, scenario),
    }


def _fresh_node(scenario: Scenario, s: Settings, folder: Path) -> EdgeNode:
    folder.mkdir(parents=True, exist_ok=True)
    registry = AdapterRegistry(folder / "adapters")
    seeds = scenario.seed_examples
    opts = s.edge_options()
    EdgeNode.bootstrap(
        "bench", registry, folder, [e.text for e in seeds], [e.label for e in seeds], opts
    )
    return EdgeNode("bench", registry, folder, opts)


def evaluate(node: EdgeNode, scenario: Scenario) -> dict[str, float]:
    texts = [e.text for e in scenario.eval_examples]
    predictions, _ = node.predict(texts, k=1)
    hits = [p.intent == e.label for p, e in zip(predictions, scenario.eval_examples, strict=True)]
    new = set(scenario.emerging_intents)
    on_new = [h for h, e in zip(hits, scenario.eval_examples, strict=True) if e.label in new]
    return {
        "accuracy": sum(hits) / len(hits),
        "emerging_accuracy": sum(on_new) / len(on_new) if on_new else float("nan"),
    }


def run_teacher_bench(
    specs: list[str], o: TeacherBenchOptions, out: Path, s: Settings
) -> dict[str, Any]:
    results: dict[str, Any] = {}
    for spec in specs:
        say(f"[{spec}] building the emerging-intent scenario ({o.turns} turns)")
        scenario = build_scenario(
            ScenarioConfig(kind="emerging", nodes=("bench",), turns=o.turns, seed=o.seed),
            _data(spec),
        )
        model = EndModel(s.encoder or None, max_length=s.max_length)
        say(f"[{spec}] serving the stream with the starting model; drift and policy replay")
        served = serve(scenario, model, Embeddings(model))
        policy = policy_choice(scenario, served, o)
        rand = random_choice(scenario, len(policy), o.seed)
        say(f"[{spec}] the teacher indexes its corpus ({len(scenario.teacher_corpus)} examples)")
        corpus = scenario.teacher_corpus
        teacher = EmbeddedTeacher(
            Encoder(s.encoder or None, max_length=s.max_length),
            [e.text for e in corpus],
            [e.label for e in corpus],
        )
        with tempfile.TemporaryDirectory(prefix="ecc-bench-teacher-") as tmp:
            start = evaluate(_fresh_node(scenario, s, Path(tmp) / "start"), scenario)
            arms = {}
            for name, chosen in (("policy", policy), ("random", rand)):
                say(f"[{spec}] {name}: {len(chosen)} teacher requests, learning their labels")
                arms[name] = learn(scenario, chosen, teacher, s, o, Path(tmp) / name)
        for arm in arms.values():
            per = 100.0 / arm["requests"] if arm["requests"] else float("nan")
            arm["recovered_per_100_requests"] = (arm["accuracy"] - start["accuracy"]) * per
            arm["emerging_recovered_per_100_requests"] = (
                arm["emerging_accuracy"] - start["emerging_accuracy"]
            ) * per
        results[spec] = {
            "scenario": scenario.summary(),
            "budget_per_minute": o.budget_per_minute,
            "rate": o.rate,
            "start": start,
            **arms,
        }
        print_result(spec, results[spec])
    report = {"environment": environment(), "options": o.__dict__, "results": results}
    write_json(out / "teacher.json", report)
    say(f"report: {out / 'teacher.json'}")
    return report


def print_result(spec: str, r: dict[str, Any]) -> None:
    rows = [(f"{spec}: emerging intents, budget {r['budget_per_minute']}/min", "")]
    rows.append(
        (
            "  starting node",
            f"accuracy {fmt(r['start']['accuracy'], pct=True)}, "
            f"emerging {fmt(r['start']['emerging_accuracy'], pct=True)}",
        )
    )
    for name in ("policy", "random"):
        a = r[name]
        rows.append(
            (
                f"  {name}",
                f"{a['requests']} requests ({a['requests_on_drifted_turns']} on drifted turns), "
                f"{a['labels_kept']} labels kept "
                f"(teacher right on {fmt(a['teacher_label_accuracy'], pct=True)}); "
                f"accuracy {fmt(a['accuracy'], pct=True)}, "
                f"emerging {fmt(a['emerging_accuracy'], pct=True)}; "
                f"{_signed(a['recovered_per_100_requests'])} pts / 100 requests "
                f"(emerging {_signed(a['emerging_recovered_per_100_requests'])})",
            )
        )
    say("\n" + table(rows))


def _signed(fraction: float) -> str:
    """A fraction as signed points: 0.0123 -> '+1.23'."""
    return "n/a" if fraction != fraction else f"{100 * fraction:+.2f}"
