"""``ecc bench precision``: the end model's number formats, accuracy against speed.

The same encoder at each precision of :data:`models.options.PRECISIONS` (``auto`` aside)
embeds a dataset's whole train and test splits through the production inference path
(:meth:`models.end_model.EndModel.embed`: length buckets, the frozen weights stored at that
precision). A scikit-learn ``LogisticRegression`` on each set of embeddings, with one C
chosen by 5-fold cross-validation on the float32 train embeddings, scores the test split:
the change of a number format is then the change of accuracy it causes, nothing else.
Also: utterances embedded per second, one utterance's milliseconds (p50), and the cosine
of each test embedding to its float32 one. ``precision.json`` holds every figure.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np

from harness.bench.peers import choose_c, fit_logistic
from harness.bench.report import environment, fmt, one_at_a_time_ms_p50, table, write_json
from harness.console import say
from models.compute import resolve_precision
from models.end_model import EndModel
from scenarios.datasets import LabelledData

FORMATS = ("float32", "bfloat16")
SINGLE_UTTERANCES = 200


def run_precision(data: LabelledData, out: Path) -> dict[str, Any]:
    """Every figure of the precision bench (see the module docstring)."""
    train_x, train_y = [e.text for e in data.train], [e.label for e in data.train]
    test_x, test_y = [e.text for e in data.test], [e.label for e in data.test]
    vectors: dict[str, tuple[np.ndarray[Any, Any], np.ndarray[Any, Any]]] = {}
    arms: dict[str, dict[str, Any]] = {}
    for name in FORMATS:
        say(f"      {name}: embedding {len(train_x) + len(test_x)} utterances")
        model = EndModel(precision=name)
        model.embed(test_x[:64])  # warm up
        started = time.perf_counter()
        vectors[name] = (model.embed(train_x), model.embed(test_x))
        seconds = time.perf_counter() - started
        arms[name] = {
            "embed_utt_per_s": (len(train_x) + len(test_x)) / seconds,
            "single_utterance_ms_p50": one_at_a_time_ms_p50(
                model.embed, test_x[:SINGLE_UTTERANCES]
            ),
        }
    say("      choosing C by cross-validation on the float32 embeddings")
    c = choose_c(vectors["float32"][0], train_y)
    for name in FORMATS:
        train, test = vectors[name]
        predicted = fit_logistic(train, train_y, c).predict(test)
        arms[name]["test_accuracy"] = float(np.mean(predicted == np.array(test_y, dtype=object)))
    cosine = (vectors["float32"][1] * vectors["bfloat16"][1]).sum(1)
    report = {
        "benchmark": "precision",
        "dataset": data.name,
        "train": len(train_x),
        "test": len(test_x),
        "C": c,
        "auto_means": str(resolve_precision("auto")).removeprefix("torch."),
        "formats": arms,
        "bfloat16_accuracy_change_points": 100
        * (arms["bfloat16"]["test_accuracy"] - arms["float32"]["test_accuracy"]),
        "bfloat16_embed_speedup": arms["bfloat16"]["embed_utt_per_s"]
        / arms["float32"]["embed_utt_per_s"],
        "cosine_to_float32": {"mean": float(cosine.mean()), "min": float(cosine.min())},
        "environment": environment(),
    }
    write_json(out / "precision.json", report)
    print(render(report, out))
    return report


def render(r: dict[str, Any], out: Path) -> str:
    rows = [
        ("dataset", f"{r['dataset']}: {r['train']} train, {r['test']} test, C={r['C']:g} by CV"),
        ("auto means here", r["auto_means"]),
    ]
    for name, arm in r["formats"].items():
        rows.append(
            (
                name,
                f"test accuracy {fmt(arm['test_accuracy'], pct=True, digits=2)}, "
                f"{fmt(arm['embed_utt_per_s'])} utt/s embedded, one utterance "
                f"{fmt(arm['single_utterance_ms_p50'])} ms",
            )
        )
    rows += [
        (
            "bfloat16 against float32",
            f"{r['bfloat16_accuracy_change_points']:+.2f} points, "
            f"{r['bfloat16_embed_speedup']:.2f}x embedding, cosine min "
            f"{r['cosine_to_float32']['min']:.5f}",
        ),
        ("report", str(out / "precision.json")),
    ]
    return "\n==== ecc bench precision " + "=" * 38 + "\n" + table(rows) + "\n"
