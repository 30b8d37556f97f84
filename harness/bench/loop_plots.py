"""The loop report's pictures: accuracy over the stream, per-intent before/after, teacher
requests over time. Each returns the path it wrote."""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from harness.bench.arms import ARM_NAMES, ARMS
from harness.bench.peers import SAME_LABELS

if TYPE_CHECKING:
    from matplotlib.axes import Axes

    from harness.replay import Replay
    from scenarios.scenario import Scenario

COLOURS = {"system": "tab:red", "static": "tab:gray", "river": "tab:blue", "periodic": "tab:green"}
SAME_LABELS_STYLE = ":"  # the peers with the system's labels: dotted, in their peer's colour


def _style(arm: str) -> dict[str, Any]:
    peer = arm.removesuffix(SAME_LABELS)
    return {"color": COLOURS[peer], "linestyle": SAME_LABELS_STYLE if arm != peer else "-"}


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_loop(
    out: Path,
    scenario: Scenario,
    rows: list[dict[str, Any]],
    eval_preds: dict[str, dict[str, list[str]]],
    replay_log: Replay,
    report: dict[str, Any],
) -> list[Path]:
    return [
        plot_accuracy(out / "accuracy.png", rows, replay_log, report),
        plot_per_intent(out / "per_intent.png", scenario, eval_preds, report),
        plot_teacher(out / "teacher.png", rows, replay_log, report),
    ]


def rolling(hits: list[bool], window: int) -> np.ndarray[Any, Any]:
    """Mean of the last ``window`` values at each position (fewer at the start).

    >>> rolling([True, False, True, True], 2).tolist()
    [1.0, 0.5, 0.5, 1.0]
    """
    c = np.cumsum(np.asarray(hits, dtype=float))
    n = np.arange(1, len(hits) + 1)
    lagged = (
        np.concatenate([np.zeros(window), c[:-window]]) if len(c) > window else np.zeros(len(c))
    )
    return (c - lagged[: len(c)]) / np.minimum(n, window)


def _marks(ax: Axes, onset: int, replay_log: Replay, nodes: list[str], top: float = 101.0) -> None:
    """Drift onset (dashed), alarms (red triangles at ``top``), published adapters (ticks
    at the bottom, one row per node)."""
    ax.axvline(onset, color="black", linestyle="--", linewidth=1, label="drift onset")
    alarms = [t["turns_served"] for t in replay_log.transitions if t["state"] == "drifting"]
    if alarms:
        ax.plot(alarms, [top] * len(alarms), "v", color="red", markersize=7, label="drift alarm")
    styles = ["|", "x", "+", "1"]
    for k, node in enumerate(nodes):
        published = [
            a["turns_served"]
            for a in replay_log.adapters
            if a["status"] == "published" and a["node_id"] == node
        ]
        if published:
            ax.plot(
                published,
                [2 + 3 * k] * len(published),
                styles[k % len(styles)],
                color="purple",
                markersize=9,
                label=f"adapter published ({node})",
            )


def plot_accuracy(
    path: Path, rows: list[dict[str, Any]], replay_log: Replay, report: dict[str, Any]
) -> Path:
    """Prequential accuracy of every arm, over all turns and over the new intents' turns."""

    plt = _pyplot()
    onset = report["scenario"]["onset_index"]
    new = set(report["new_intents"])
    nodes = report["options"]["nodes"]
    window = max(50, len(rows) // 30)
    fig, axes = plt.subplots(2, 1, figsize=(11, 8), sharex=True)
    x = [r["index"] for r in rows]
    for arm in ARMS:
        y = rolling([r[arm] == r["label"] for r in rows], window)
        axes[0].plot(x, 100 * y, label=ARM_NAMES[arm], linewidth=1.4, **_style(arm))
    axes[0].set_title(f"{report['scenario']['name']}: accuracy on the last {window} turns served")
    fresh = [r for r in rows if r["label"] in new and r["index"] >= onset]
    if fresh:
        w = max(10, min(100, len(fresh) // 10))
        for arm in ARMS:
            y = rolling([r[arm] == r["label"] for r in fresh], w)
            axes[1].plot([r["index"] for r in fresh], 100 * y, linewidth=1.4, **_style(arm))
        axes[1].set_title(f"new intents ({', '.join(sorted(new))}): last {w} of their turns")
    else:
        axes[1].set_title("no new intents in this scenario")
    for ax in axes:
        _marks(ax, onset, replay_log, nodes)
        ax.set_ylabel("accuracy (%)")
        ax.set_ylim(0, 104)
        ax.grid(alpha=0.3)
    axes[1].set_xlabel("turn of the stream")
    axes[0].legend(loc="lower left", fontsize=8, ncol=2)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def plot_per_intent(
    path: Path,
    scenario: Scenario,
    eval_preds: dict[str, dict[str, list[str]]],
    report: dict[str, Any],
) -> Path:
    """Per-intent eval accuracy before (the starting model) against after (each arm's final
    state), one dot per intent, the new intents in red: above the diagonal is a gain."""
    plt = _pyplot()
    truth = [e.label for e in scenario.eval_examples]
    new = set(report["new_intents"])
    before = _per_intent(truth, eval_preds.get("system_first") or eval_preds["static"])
    arms = [a for a in ("system", "river", "periodic") if eval_preds.get(a)]
    fig, axes = plt.subplots(1, len(arms), figsize=(4.2 * len(arms), 4.4), squeeze=False)
    for ax, arm in zip(axes[0], arms, strict=True):
        after = _per_intent(truth, eval_preds[arm])
        intents = sorted(before)
        colours = ["red" if i in new else "tab:blue" for i in intents]
        ax.scatter(
            [100 * before[i] for i in intents],
            [100 * after[i] for i in intents],
            c=colours,
            s=18,
            alpha=0.7,
        )
        ax.plot([0, 100], [0, 100], color="gray", linewidth=0.8)
        ax.set_xlim(-3, 103)
        ax.set_ylim(-3, 103)
        ax.set_title(f"{arm}: final state", fontsize=10)
        ax.set_xlabel("before: starting model (%)")
        ax.grid(alpha=0.3)
    axes[0][0].set_ylabel("after (%) — red: new intents")
    fig.suptitle(f"{report['scenario']['name']}: eval-set accuracy per intent, mean over nodes")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def _per_intent(truth: list[str], by_node: dict[str, list[str]]) -> dict[str, float]:
    hits: Counter[str] = Counter()
    total: Counter[str] = Counter()
    for preds in by_node.values():
        for t, p in zip(truth, preds, strict=True):
            total[t] += 1
            hits[t] += t == p
    return {i: hits[i] / total[i] for i in total}


def plot_teacher(
    path: Path, rows: list[dict[str, Any]], replay_log: Replay, report: dict[str, Any]
) -> Path:
    """Teacher requests and user labels per stretch of the stream, per node."""
    plt = _pyplot()
    nodes = report["options"]["nodes"]
    n = max(1, len(rows))
    width = max(50, n // 40)
    bins = np.arange(0, n + width, width)
    fig, ax = plt.subplots(figsize=(11, 4))
    bottom = np.zeros(len(bins) - 1)
    for node in nodes:
        when = [t["turns_served"] for t in replay_log.teacher_requests if t["node"] == node]
        counts, _ = np.histogram(when, bins=bins)
        ax.bar(bins[:-1], counts, width=width, bottom=bottom, align="edge", label=node, alpha=0.8)
        bottom += counts
    labels = [r["index"] for r in rows if r["feedback_label"]]
    counts, _ = np.histogram(labels, bins=bins)
    ax.step(bins[:-1], counts, where="post", color="black", linewidth=1, label="user labels")
    high = max(1.0, float(max(bottom.max(), counts.max()))) * 1.15
    ax.set_ylim(0, high)
    _marks(ax, report["scenario"]["onset_index"], replay_log, [], top=high * 0.96)
    ax.set_xlabel("turn of the stream")
    ax.set_ylabel(f"per {width} turns")
    ax.set_title(
        f"{report['scenario']['name']}: teacher requests "
        f"({len(replay_log.teacher_requests)} in all) and user labels"
    )
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
