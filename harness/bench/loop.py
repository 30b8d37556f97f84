"""``ecc bench loop`` (and the end of every ``ecc demo``): the whole system beside its peers.

The demo has just replayed a scenario through the running system (broker, edge nodes,
drift, feedback via the webhook, teacher, learner) and logged, for every turn, what the
node answered and which feedback its user gave. Here the same stream and the same user
labels go, per node, through the simple alternatives on frozen MiniLM embeddings
(:mod:`harness.bench.peers`):

- **static**: the node's starting point, a logistic regression on the seed examples, never
  updated;
- **river**: river's online softmax regression, learning each user label as it arrives;
- **periodic**: logistic regression refitted on the seeds and every user label so far,
  every ``retrain_every`` turns of its node (the upper reference);
- **river_same_labels**, **periodic_same_labels**: the same two peers learning exactly
  the labels the system learnt: the users' and the teacher's (each teacher label when its
  training batch reached the system). The goals compare the system with these; the
  user-label arms beside them show what the teacher adds.

Every arm predicts a turn before that turn's own label is learnt (prequential). The peers
learn a user label the moment it is given; the system learns it when its batch closes and
the candidate passes the gate, as in production.

Figures per arm (definitions used everywhere in the report):

- ``accuracy``: over every turn of the stream; ``before_onset`` / ``after_onset`` /
  ``last_20_percent``: over those turns; ``new_intents_after_onset``: over turns after the
  onset whose true intent is one the drift is about (emerging, split off or shifted);
- ``recovery_turns``: turns after the onset until the new intents' accuracy, over the last
  ``window`` of their turns, first reaches 80 % of the arm's own final value (the issue's
  definition); ``recovery_turns_to_common_target``: the same, with one target for all arms,
  80 % of the periodic reference's final value (an arm that settles low cannot "recover"
  quickly);
- ``eval_accuracy``: on the scenario's held-out eval set (the post-drift distribution),
  with each arm's final state, averaged over the nodes; ``eval_new_intents_accuracy``: the
  same on the new intents' eval texts;
- ``labels_used``: user labels (corrections and thumbs-up) learnt, plus for the system the
  teacher's labels in its training batches; ``teacher_requests``;
- ``cpu_seconds``: the system's stream worker and webhook processes (the broker apart);
  for a peer, its own computation plus embedding the stream and eval texts (a peer must
  embed what it serves, as the system's edge does).
"""

from __future__ import annotations

import bisect
import csv
import time
from collections import Counter
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from tqdm import tqdm

from harness.bench.arms import ARMS, LEARNING_PEERS
from harness.bench.peers import SAME_LABELS, recovery_turns, replay, tune_river
from harness.bench.report import environment, fmt, table, write_json
from harness.console import say
from harness.replay import drifted_intents

if TYPE_CHECKING:
    from harness.options import DemoOptions
    from harness.replay import EvalPredictions, Replay
    from scenarios.scenario import Scenario
    from streams.settings import Settings

RECOVERY_SHARE = 0.8


def loop_report(
    scenario: Scenario,
    replay_log: Replay,
    evals: dict[str, EvalPredictions | None],
    summary: dict[str, Any],
    settings: Settings,
    options: DemoOptions,
) -> dict[str, Any]:
    """Run the peers on the demo's stream, then write loop.json, turns.csv, eval.csv and
    the plots into ``options.out``; print the table; return the report."""
    from harness.bench.learner import embedder
    from harness.bench.loop_plots import plot_loop

    out = options.out
    rows = sorted(replay_log.served, key=lambda r: r["index"])
    texts = {t.index: t.text for t in scenario.stream}
    say("      peers: embedding the stream with the frozen encoder")
    started = time.process_time()
    embed = embedder(settings.encoder or None)
    seeds_x = embed([e.text for e in scenario.seed_examples])
    eval_texts = [e.text for e in scenario.eval_examples]
    eval_x = embed(eval_texts)
    stream_x = embed([texts[r["index"]] for r in rows])
    embed_cpu = time.process_time() - started
    seed_labels = [e.label for e in scenario.seed_examples]

    cpu: dict[str, float] = {}
    say("      peers: tuning river's learning rate on the seeds")
    started = time.process_time()
    river_lr = tune_river(seeds_x, seed_labels)  # the seeds are every node's
    for name in ("river", "river" + SAME_LABELS):
        cpu[name] = embed_cpu + time.process_time() - started
    eval_preds: dict[str, dict[str, list[str]]] = {name: {} for name in ARMS}
    setup: dict[str, dict[str, dict[str, float]]] = {name: {} for name in ARMS[1:]}
    for node in tqdm(options.nodes, desc="      peers per node", unit="node"):
        at = [i for i, r in enumerate(rows) if r["node"] == node]
        labels_at = {
            k: rows[i]["feedback_label"] for k, i in enumerate(at) if rows[i]["feedback_label"]
        }
        x = stream_x[at]
        late = teacher_labels_at(replay_log, [rows[i]["index"] for i in at], node)
        runs = replay(seeds_x, seed_labels, x, labels_at, options.retrain_every, eval_x, river_lr)
        same = replay(
            seeds_x, seed_labels, x, labels_at, options.retrain_every, eval_x, river_lr, late
        )
        runs |= {name + SAME_LABELS: same[name] for name in LEARNING_PEERS}
        for name, run in runs.items():
            for k, i in enumerate(at):
                rows[i][name] = run.stream[k]
            eval_preds[name][node] = run.final_eval
            cpu[name] = cpu.get(name, embed_cpu) + run.cpu_s
            setup[name][node] = run.setup
        ev = evals.get(node)
        if ev is not None:
            eval_preds["system"][node] = ev.final
            eval_preds.setdefault("system_first", {})[node] = ev.first
    for r in rows:
        r["system"] = r["predicted"]

    report = build_report(scenario, rows, eval_preds, summary, replay_log, options, cpu)
    report["peer_setup"] = setup  # per peer and node: the chosen C, river's learning rate
    out.mkdir(parents=True, exist_ok=True)
    write_turns(out / "turns.csv", rows)
    write_eval(out / "eval.csv", scenario, eval_preds)
    plots = plot_loop(out, scenario, rows, eval_preds, replay_log, report)
    report["files"] = {
        "report": str(out / "loop.json"),
        "turns": str(out / "turns.csv"),
        "eval": str(out / "eval.csv"),
        "plots": [str(p) for p in plots],
    }
    write_json(out / "loop.json", report)
    print(render(report))
    return report


def teacher_labels_at(
    replay_log: Replay, indices: list[int], node: str
) -> dict[int, list[tuple[int, str]]]:
    """The teacher's labels of ``node``'s turns, by when they reached the system: position
    ``k`` of the node's stream (``indices``: its turns' stream indices, in order) maps to
    the ``(position, label)`` pairs whose training batch arrived after turn ``k`` was
    served and before the next one."""
    position = {index: k for k, index in enumerate(indices)}
    late: dict[int, list[tuple[int, str]]] = {}
    for batch in replay_log.batches:
        if batch["node"] != node or not batch.get("teacher_labels"):
            continue
        served = batch["turns_served"]
        arrived = replay_log.served[served - 1]["index"] if served else -1
        k = bisect.bisect_right(indices, arrived) - 1
        for index, label in batch["teacher_labels"]:
            if index in position:
                late.setdefault(max(k, position[index]), []).append((position[index], label))
    return late


def _acc(rows: list[dict[str, Any]], arm: str) -> float | None:
    return sum(r[arm] == r["label"] for r in rows) / len(rows) if rows else None


def arm_figures(
    rows: list[dict[str, Any]], arm: str, onset: int, new: set[str], target: float | None
) -> dict[str, Any]:
    """The stream figures of one arm (see the module docstring)."""
    after = [r for r in rows if r["index"] >= onset]
    tail = rows[-max(1, len(rows) // 5) :]
    truth = [r["label"] for r in rows]
    preds = [r[arm] for r in rows]
    new_after = [r for r in after if r["label"] in new]
    window = recovery_window(len(new_after))
    start = next((k for k, r in enumerate(rows) if r["index"] >= onset), len(rows))
    return {
        "accuracy": _acc(rows, arm),
        "before_onset": _acc([r for r in rows if r["index"] < onset], arm),
        "after_onset": _acc(after, arm),
        "last_20_percent": _acc(tail, arm),
        "new_intents_after_onset": _acc(new_after, arm),
        "old_intents_after_onset": _acc([r for r in after if r["label"] not in new], arm),
        "recovery_turns": recovery_turns(
            truth, preds, new, start, share=RECOVERY_SHARE, window=window
        ),
        "recovery_turns_to_common_target": (
            recovery_turns(truth, preds, new, start, window=window, target=target)
            if target
            else None
        ),
    }


def recovery_window(new_turns: int) -> int:
    """The window of new-intent turns accuracy is measured over: 200, less on short runs."""
    return max(10, min(200, new_turns // 4))


def eval_figures(
    scenario: Scenario, preds: dict[str, list[str]], new: set[str]
) -> dict[str, float | None]:
    """Eval-set accuracy of one arm's final state, averaged over the nodes."""
    truth = [e.label for e in scenario.eval_examples]
    if not preds:
        return {"eval_accuracy": None, "eval_new_intents_accuracy": None}
    overall, fresh = [], []
    for p in preds.values():
        overall.append(float(np.mean([a == b for a, b in zip(truth, p, strict=True)])))
        pairs = [(a, b) for a, b in zip(truth, p, strict=True) if a in new]
        if pairs:
            fresh.append(float(np.mean([a == b for a, b in pairs])))
    return {
        "eval_accuracy": float(np.mean(overall)),
        "eval_new_intents_accuracy": float(np.mean(fresh)) if fresh else None,
    }


def build_report(
    scenario: Scenario,
    rows: list[dict[str, Any]],
    eval_preds: dict[str, dict[str, list[str]]],
    summary: dict[str, Any],
    replay_log: Replay,
    options: DemoOptions,
    peer_cpu: dict[str, float],
) -> dict[str, Any]:

    onset = scenario.onset_index
    new = drifted_intents(scenario)
    user_labels = sum(1 for r in rows if r["feedback_label"])
    unique_batches = {b["batch_id"]: b for b in replay_log.batches}.values()
    sources: Counter[str] = Counter()
    for b in unique_batches:
        sources.update(b["sources"])
    teacher_labels = sum(len(b.get("teacher_labels", ())) for b in unique_batches)
    decided = Counter(a["status"] for a in replay_log.adapters)
    candidates = decided["published"] + decided["rejected"]
    # the common target: 80 % of the reference's final new-intent accuracy (its last window)
    reference_final = _final_window_accuracy(rows, "periodic", onset, new)
    target = RECOVERY_SHARE * reference_final if reference_final else None
    system_cpu = summary["cpu_seconds"]
    arms: dict[str, dict[str, Any]] = {}
    for arm in ARMS:
        figures = arm_figures(rows, arm, onset, new, target)
        figures.update(eval_figures(scenario, eval_preds.get(arm, {}), new))
        if arm == "system":
            figures["labels_used"] = {
                "user": sources.get("feedback", 0),
                "teacher": sources.get("teacher", 0),
            }
            figures["teacher_requests"] = len(replay_log.teacher_requests)
            figures["cpu_seconds"] = round(
                (system_cpu.get("worker") or 0.0) + (system_cpu.get("webhook") or 0.0), 1
            )
        else:
            figures["labels_used"] = {
                "user": user_labels if arm != "static" else 0,
                "teacher": teacher_labels if arm.endswith(SAME_LABELS) else 0,
            }
            figures["teacher_requests"] = 0
            figures["cpu_seconds"] = round(peer_cpu[arm], 1)
        figures["labels_share_of_turns"] = sum(figures["labels_used"].values()) / len(rows)
        arms[arm] = figures
    system, static = arms["system"], arms["static"]
    periodic, river = arms["periodic" + SAME_LABELS], arms["river" + SAME_LABELS]
    return {
        "benchmark": "loop",
        "scenario": scenario.summary(),
        "split_from": scenario.split_from,
        "new_intents": sorted(new),
        "options": {
            "rate": options.rate,
            "nodes": list(options.nodes),
            "label_rate": options.label_rate,
            "thumbs_rate": options.thumbs_rate,
            "retrain_every": options.retrain_every,
            "seed": options.seed,
        },
        "turns": len(rows),
        "user_feedback": dict(Counter(r["feedback"] for r in rows if r["feedback"])),
        "user_labels": user_labels,
        "recovery_target": target,
        "arms": arms,
        "goals": {
            # against the peers that learnt every label the system learnt (user + teacher)
            "final_accuracy_gap_to_periodic_points": _gap(
                system["eval_accuracy"], periodic["eval_accuracy"]
            ),
            "last_20_percent_gap_to_periodic_points": _gap(
                system["last_20_percent"], periodic["last_20_percent"]
            ),
            **_speedup(
                river["recovery_turns_to_common_target"],
                system["recovery_turns_to_common_target"],
                len(rows) - onset,
            ),
            # against the peers with the users' labels only: what the teacher adds
            "final_accuracy_gap_to_periodic_user_labels_points": _gap(
                system["eval_accuracy"], arms["periodic"]["eval_accuracy"]
            ),
            "recovery_speedup_vs_river_user_labels": _speedup(
                arms["river"]["recovery_turns_to_common_target"],
                system["recovery_turns_to_common_target"],
                len(rows) - onset,
            )["recovery_speedup_vs_river"],
            "before_onset_gap_to_static_points": _gap(
                system["before_onset"], static["before_onset"]
            ),
            "rejected_share": decided["rejected"] / candidates if candidates else None,
            "system_label_share": system["labels_share_of_turns"],
        },
        "timeline": {
            "drift_alarms": summary["drift_alarms"],
            "adapters": summary["adapter_timeline"],
            "teacher_requests": replay_log.teacher_requests,
        },
        "system_cpu_seconds": system_cpu,
        "demo_summary": {k: v for k, v in summary.items() if not k.endswith("_timeline")},
        "environment": environment(),
    }


def _final_window_accuracy(
    rows: list[dict[str, Any]], arm: str, onset: int, new: set[str]
) -> float | None:
    hits = [r[arm] == r["label"] for r in rows if r["index"] >= onset and r["label"] in new]
    if not hits:
        return None
    last = hits[-recovery_window(len(hits)) :]
    return sum(last) / len(last)


def _gap(a: float | None, b: float | None) -> float | None:
    return None if a is None or b is None else round(100 * (a - b), 2)


def _speedup(river: int | None, system: int | None, remaining: int) -> dict[str, Any]:
    """How many times fewer turns the system needed than river to recover. When river never
    got there within the ``remaining`` turns after the onset, that many turns is a lower
    bound on what it would need, and so the speedup is a lower bound too."""
    if not system:
        return {"recovery_speedup_vs_river": None, "recovery_speedup_is_lower_bound": False}
    needed = remaining if river is None else river
    return {
        "recovery_speedup_vs_river": round(needed / system, 2),
        "recovery_speedup_is_lower_bound": river is None,
    }


TURN_COLUMNS = ("index", "node", "label", "drifted", "feedback", "feedback_label", "version")


def write_turns(path: Path, rows: list[dict[str, Any]]) -> None:
    """One row per turn: truth, the feedback given, and every arm's prediction."""
    with path.open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow([*TURN_COLUMNS, *ARMS])
        for r in rows:
            w.writerow(
                [*("" if r.get(c) is None else r[c] for c in TURN_COLUMNS), *(r[a] for a in ARMS)]
            )


def write_eval(path: Path, scenario: Scenario, preds: dict[str, dict[str, list[str]]]) -> None:
    """One row per (node, eval text): truth and every arm's final answer."""
    arms = [a for a in (*ARMS, "system_first") if preds.get(a)]
    with path.open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["node", "label", *arms])
        for node in sorted(preds["static"]):
            answers = [preds[a].get(node) or [""] * len(scenario.eval_examples) for a in arms]
            for i, e in enumerate(scenario.eval_examples):
                w.writerow([node, e.label, *(column[i] for column in answers)])


def render(r: dict[str, Any]) -> str:
    arms = r["arms"]
    short = {a: a.replace(SAME_LABELS, "+T") for a in ARMS}  # +T: the teacher's labels too
    rows = [("", " | ".join(f"{short[a]:>10}" for a in ARMS))]

    def line(name: str, key: str, pct: bool = True) -> None:
        rows.append((name, " | ".join(f"{fmt(arms[a][key], pct):>10}" for a in ARMS)))

    line("stream accuracy, all turns", "accuracy")
    line("  before the drift onset", "before_onset")
    line("  after the onset", "after_onset")
    line("  last 20 % of the stream", "last_20_percent")
    line("  new intents after onset", "new_intents_after_onset")
    line("eval set, final state", "eval_accuracy")
    line("  its new intents", "eval_new_intents_accuracy")
    line("recovery turns (own 80 %)", "recovery_turns", pct=False)
    line("recovery turns (common target)", "recovery_turns_to_common_target", pct=False)
    rows.append(
        (
            "labels used (user + teacher)",
            " | ".join(
                "{:>10}".format(
                    f"{arms[a]['labels_used']['user']}+{arms[a]['labels_used']['teacher']}"
                )
                for a in ARMS
            ),
        )
    )
    line("  share of turns", "labels_share_of_turns")
    line("teacher requests", "teacher_requests", pct=False)
    line("CPU seconds", "cpu_seconds", pct=False)
    g = r["goals"]
    s = r["scenario"]
    head = (
        f"{s['name']}: {r['turns']} turns over {len(r['options']['nodes'])} nodes, onset at "
        f"turn {s['onset_index']}, new intents {', '.join(r['new_intents']) or '-'}"
    )
    goals = (
        "goals (peers with the system's labels): final accuracy vs periodic "
        f"{fmt(g['final_accuracy_gap_to_periodic_points'])} points (aim >= 0; "
        f"{fmt(g['final_accuracy_gap_to_periodic_user_labels_points'])} vs user labels only); "
        f"recovery {'>= ' if g['recovery_speedup_is_lower_bound'] else ''}"
        f"{fmt(g['recovery_speedup_vs_river'], digits=2)}x faster than river (aim >= 3)\n"
        f"       before the onset vs static {fmt(g['before_onset_gap_to_static_points'])} "
        f"points (aim >= 0); gate rejections {fmt(g['rejected_share'], True)} of candidates "
        f"(aim <= 10 %); labels on {fmt(g['system_label_share'], True)} of turns "
        "(aim <= 10 %)"
    )
    files = r.get("files", {})
    return (
        "\n==== ecc bench loop "
        + "=" * 48
        + "\n"
        + head
        + "\n"
        + table(rows)
        + "\n(+T: the peer learnt the teacher's labels too, as the system did)\n"
        + goals
        + f"\nreport: {files.get('report', '')}\nplots: {', '.join(files.get('plots', []))}\n"
    )
