"""Dataset loaders and CSV input/output, on tiny files and on the shared real datasets."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pytest

from scenarios.datasets import Example, LabelledData, load_dataset, read_csv, write_csv
from scenarios.scenario import ScenarioConfig, build_scenario

SHARED_DATASETS = Path(__file__).parents[3] / "shared" / "datasets"

EXAMPLES = [
    Example("where is my order, #48213?", "track_order"),
    Example('the "blue" one arrived broken', "damaged_item"),
    Example("hola, mi pedido no llegó €45", "delivery_delay"),
]


def _labelled(n_per_label: int, labels: tuple[str, ...] = ("a", "b", "c")) -> list[Example]:
    return [Example(f"{label} text {i}", label) for label in labels for i in range(n_per_label)]


def test_write_then_read_round_trips(tmp_path: Path) -> None:
    path = tmp_path / "sub" / "data.csv"
    write_csv(path, EXAMPLES)
    assert path.read_text(encoding="utf-8").splitlines()[0] == "text,label"
    assert read_csv(path) == EXAMPLES


def test_read_csv_accepts_a_category_column(tmp_path: Path) -> None:
    path = tmp_path / "b.csv"
    path.write_text("text,category\nI lost my card,lost_card\n", encoding="utf-8")
    assert read_csv(path) == [Example("I lost my card", "lost_card")]


def test_read_csv_tolerates_a_byte_order_mark(tmp_path: Path) -> None:
    path = tmp_path / "excel.csv"
    path.write_text("text,label\nwhere is my order,track_order\n", encoding="utf-8-sig")
    assert read_csv(path) == [Example("where is my order", "track_order")]


def test_read_csv_errors(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="not found"):
        read_csv(tmp_path / "missing.csv")
    bad = tmp_path / "bad.csv"
    bad.write_text("utterance,intent\nhi,greet\n", encoding="utf-8")
    with pytest.raises(ValueError, match=r"needs columns 'text' and 'label'.*utterance"):
        read_csv(bad)
    empty = tmp_path / "empty.csv"
    empty.write_text("text,label\n", encoding="utf-8")
    with pytest.raises(ValueError, match="no examples"):
        read_csv(empty)
    hole = tmp_path / "hole.csv"
    hole.write_text("text,label\nhi,greet\nbye,\n", encoding="utf-8")
    with pytest.raises(ValueError, match="line 3: empty text or label"):
        read_csv(hole)


def test_labels_are_sorted_and_unique() -> None:
    data = LabelledData("x", _labelled(2, ("b", "a")), _labelled(1, ("c", "a")))
    assert data.labels == ["a", "b", "c"]


def test_load_csv_folder(tmp_path: Path) -> None:
    write_csv(tmp_path / "train.csv", _labelled(4))
    write_csv(tmp_path / "test.csv", _labelled(2))
    data = load_dataset(tmp_path)
    assert data.name == tmp_path.name
    assert (len(data.train), len(data.test), data.labels) == (12, 6, ["a", "b", "c"])


def test_load_csv_folder_without_test_file(tmp_path: Path) -> None:
    write_csv(tmp_path / "train.csv", _labelled(4))
    with pytest.raises(ValueError, match=r"missing test\.csv"):
        load_dataset(tmp_path)


def test_load_folder_without_data(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"expected train\.csv and test\.csv, or data_full\.json"):
        load_dataset(tmp_path)


def test_load_missing_path(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="dataset not found"):
        load_dataset(tmp_path / "nothing")


def test_single_csv_is_split_80_20_per_label(tmp_path: Path) -> None:
    examples = _labelled(10) + _labelled(3, ("rare",))
    write_csv(tmp_path / "all.csv", examples)
    data = load_dataset(tmp_path / "all.csv")
    assert data.name == "all"
    assert Counter(e.label for e in data.test) == {"a": 2, "b": 2, "c": 2, "rare": 1}
    assert sorted(data.train + data.test, key=str) == sorted(examples, key=str)
    assert data == load_dataset(tmp_path / "all.csv")


def _clinc(tmp_path: Path) -> Path:
    raw = {
        "train": [["what is my balance", "balance"], ["set an alarm", "alarm"]],
        "val": [["balance please", "balance"]],
        "test": [["how much money do i have", "balance"], ["wake me at 7", "alarm"]],
        "oos_train": [["tell me a joke about cats", "oos"]],
        "oos_val": [],
        "oos_test": [["who won the game", "oos"]],
    }
    path = tmp_path / "clinc" / "data_full.json"
    path.parent.mkdir()
    path.write_text(json.dumps(raw), encoding="utf-8")
    return path


def test_load_clinc_file_and_folder(tmp_path: Path) -> None:
    path = _clinc(tmp_path)
    data = load_dataset(path)
    assert data == load_dataset(path.parent)
    assert data.name == "clinc"
    assert Example("balance please", "balance") in data.train  # val goes to train
    assert (len(data.train), len(data.test), data.labels) == (3, 2, ["alarm", "balance"])


def test_load_clinc_with_oos(tmp_path: Path) -> None:
    data = load_dataset(_clinc(tmp_path), include_oos=True)
    assert data.labels == ["alarm", "balance", "oos"]
    assert Example("who won the game", "oos") in data.test
    assert (len(data.train), len(data.test)) == (4, 3)


def test_load_clinc_errors(tmp_path: Path) -> None:
    bad = tmp_path / "bad.json"
    bad.write_text('{"train": [["only text"]], "test": []}', encoding="utf-8")
    with pytest.raises(ValueError, match=r"'train'\[0\] is not a \[text, intent\] pair"):
        load_dataset(bad)
    bad.write_text('{"train": []}', encoding="utf-8")
    with pytest.raises(ValueError, match="'train' and 'test'"):
        load_dataset(bad)
    bad.write_text('{"train": [], "test": [["x y", "z"]]}', encoding="utf-8")
    with pytest.raises(ValueError, match="empty train"):
        load_dataset(bad)
    bad.write_text("{not json", encoding="utf-8")
    with pytest.raises(ValueError, match="not valid JSON"):
        load_dataset(bad)


def test_shared_real_datasets_load_and_build_disjoint_scenarios() -> None:
    if not SHARED_DATASETS.is_dir():
        pytest.fail(
            f"shared datasets not found at {SHARED_DATASETS}: CI clones the repository with "
            "shared/ beside it; check out shared/ next to the repository to run this test"
        )
    banking = load_dataset(SHARED_DATASETS / "banking77")
    assert (len(banking.train), len(banking.test), len(banking.labels)) == (10003, 3080, 77)
    clinc = load_dataset(SHARED_DATASETS / "clinc150")
    assert (len(clinc.train), len(clinc.test), len(clinc.labels)) == (18000, 4500, 150)
    with_oos = load_dataset(SHARED_DATASETS / "clinc150" / "data_full.json", include_oos=True)
    assert (len(with_oos.train), len(with_oos.test)) == (18200, 5500)
    assert "oos" in with_oos.labels

    for data in (banking, clinc):
        s = build_scenario(ScenarioConfig(turns=600), data)
        stream = {t.text for t in s.stream}
        teacher = {e.text for e in s.teacher_corpus}
        evals = {e.text for e in s.eval_examples}
        seeds = {e.text for e in s.seed_examples}
        assert not teacher & stream and not teacher & evals and not teacher & seeds, data.name
        assert not stream & evals and not seeds & stream, data.name
        assert len(s.emerging_intents) == 2
        assert all(t.label not in s.emerging_intents for t in s.stream[: s.onset_index])
