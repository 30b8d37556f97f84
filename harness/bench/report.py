"""Benchmark reports: figures printed as a table, written as JSON, and a plot."""

from __future__ import annotations

import json
import math
import platform
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch


def environment() -> dict[str, Any]:
    """Where the figures were measured (they only compare within one run)."""
    return {
        "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "python": platform.python_version(),
        "machine": platform.machine(),
        "cpu_threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
    }


def write_json(path: Path, report: dict[str, Any]) -> None:
    """Strict JSON: a figure that could not be measured (NaN) is written as null."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(_plain(report), indent=2, allow_nan=False))


def _plain(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def fmt(value: Any, pct: bool = False, digits: int = 1) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "n/a"
    if pct:
        return f"{100 * value:.{digits}f} %"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


def table(rows: list[tuple[str, str]]) -> str:
    width = max(len(k) for k, _ in rows)
    return "\n".join(f"{k:<{width}}  {v}" for k, v in rows)


def plot_curve(
    path: Path,
    curves: dict[str, tuple[list[int], list[float]]],
    title: str,
    xlabel: str = "labelled examples streamed",
    ylabel: str = "prequential accuracy (%)",
) -> None:
    """Accuracy (prequential, by default) over the stream, one line per learner."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 4.5))
    for name, (x, y) in curves.items():
        ax.plot(x, [100 * v for v in y], label=name)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)


def one_at_a_time_ms_p50(call: Callable[[list[str]], object], texts: Sequence[str]) -> float:
    """p50 milliseconds of ``call`` on one text at a time, over ``texts``."""
    seconds = []
    for text in texts:
        started = time.perf_counter()
        call([text])
        seconds.append(time.perf_counter() - started)
    return 1000 * float(np.percentile(seconds, 50))
