"""Labelled intent data: the record types and loaders for CSV folders, CSV files and CLINC150.

Benchmarks take a path to real data (BANKING77, CLINC150, or any ``text,label`` CSV) and the
rest of the project only ever sees :class:`LabelledData`, so every source looks the same.
Problems in the input are reported as ``ValueError`` naming the file, never as a bare
``KeyError`` deep inside a benchmark.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from scenarios.splits import stratified_split

TEXT_COLUMN = "text"
LABEL_COLUMNS = ("label", "category")  # ``category`` is BANKING77's name for the label
CLINC_FILE = "data_full.json"
OOS_LABEL = "oos"
CSV_TEST_FRACTION = 0.2
CSV_SPLIT_SEED = 0


@dataclass(frozen=True)
class Example:
    """One labelled utterance."""

    text: str
    label: str


@dataclass(frozen=True)
class LabelledData:
    """A named train/test pair of labelled utterances.

    >>> d = LabelledData("x", [Example("hi there", "greet")], [Example("bye now", "leave")])
    >>> d.labels
    ['greet', 'leave']
    """

    name: str
    train: list[Example]
    test: list[Example]

    @property
    def labels(self) -> list[str]:
        """Sorted unique labels over train and test."""
        return sorted({e.label for e in self.train} | {e.label for e in self.test})


def read_csv(path: str | Path) -> list[Example]:
    """Read a UTF-8 CSV with a ``text`` column and a ``label`` (or ``category``) column."""
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"CSV file not found: {path}")
    with path.open(newline="", encoding="utf-8-sig") as f:  # -sig: tolerate Excel's BOM
        reader = csv.DictReader(f)
        columns = [c.strip() for c in reader.fieldnames or []]
        label_column = next((c for c in LABEL_COLUMNS if c in columns), None)
        if TEXT_COLUMN not in columns or label_column is None:
            raise ValueError(
                f"{path}: needs columns 'text' and 'label' (or 'category'); found {columns}"
            )
        reader.fieldnames = columns
        examples = []
        for line, row in enumerate(reader, start=2):
            text = (row.get(TEXT_COLUMN) or "").strip()
            label = (row.get(label_column) or "").strip()
            if not text or not label:
                raise ValueError(f"{path}, line {line}: empty text or label")
            examples.append(Example(text, label))
    if not examples:
        raise ValueError(f"{path}: no examples (only a header?)")
    return examples


def write_csv(path: str | Path, examples: Iterable[Example]) -> None:
    """Write examples as a UTF-8 ``text,label`` CSV, creating the parent folder."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow([TEXT_COLUMN, "label"])
        writer.writerows([e.text, e.label] for e in examples)


def load_dataset(path: str | Path, include_oos: bool = False) -> LabelledData:
    """Load a folder with train.csv/test.csv, a single CSV, or CLINC150's data_full.json.

    A single CSV is split 80/20 per label with a fixed seed, so every run sees the same split.
    ``include_oos`` only matters for CLINC150: it adds the out-of-scope examples as ``oos``.
    """
    path = Path(path)
    if not path.exists():
        raise ValueError(f"dataset not found: {path}")
    if path.is_dir():
        if (path / "train.csv").exists() or (path / "test.csv").exists():
            return _load_csv_folder(path)
        if (path / CLINC_FILE).is_file():
            return _load_clinc(path / CLINC_FILE, include_oos)
        raise ValueError(f"{path}: expected train.csv and test.csv, or {CLINC_FILE}")
    if path.suffix.lower() == ".json":
        return _load_clinc(path, include_oos)
    examples = read_csv(path)
    train, test = stratified_split(
        examples, lambda e: e.label, CSV_TEST_FRACTION, seed=CSV_SPLIT_SEED
    )
    return LabelledData(path.stem, train, test)


def _load_csv_folder(folder: Path) -> LabelledData:
    for part in ("train.csv", "test.csv"):
        if not (folder / part).is_file():
            raise ValueError(
                f"{folder}: missing {part} (a CSV folder needs train.csv and test.csv)"
            )
    return LabelledData(folder.name, read_csv(folder / "train.csv"), read_csv(folder / "test.csv"))


def _load_clinc(path: Path, include_oos: bool) -> LabelledData:
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise ValueError(f"{path}: not valid JSON ({exc})") from exc
    if not isinstance(raw, dict) or "train" not in raw or "test" not in raw:
        raise ValueError(f"{path}: expected a JSON object with 'train' and 'test' lists")
    train_keys = ["train", "val"] + (["oos_train", "oos_val"] if include_oos else [])
    test_keys = ["test"] + (["oos_test"] if include_oos else [])
    train = [e for key in train_keys for e in _clinc_pairs(path, key, raw.get(key, []))]
    test = [e for key in test_keys for e in _clinc_pairs(path, key, raw.get(key, []))]
    if not train or not test:
        raise ValueError(f"{path}: empty {'train' if not train else 'test'} data")
    name = path.parent.name if path.name == CLINC_FILE else path.stem
    return LabelledData(name + ("+oos" if include_oos else ""), train, test)


def _clinc_pairs(path: Path, key: str, items: Any) -> list[Example]:
    if not isinstance(items, list):
        raise ValueError(f"{path}: '{key}' must be a list of [text, intent] pairs")
    out = []
    for i, item in enumerate(items):
        if not (
            isinstance(item, list) and len(item) == 2 and all(isinstance(s, str) for s in item)
        ):
            raise ValueError(f"{path}: '{key}'[{i}] is not a [text, intent] pair: {item!r}")
        text, label = item[0].strip(), item[1].strip()
        if not text or not label:
            raise ValueError(f"{path}: '{key}'[{i}] has an empty text or intent")
        out.append(Example(text, OOS_LABEL if key.startswith("oos_") else label))
    return out
