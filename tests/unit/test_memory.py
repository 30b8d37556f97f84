"""The fast path's example memory: bounded, class-balanced, deterministic, persisted."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from learners.memory import ExampleMemory


def offer(memory: ExampleMemory, label: str, n: int, start: int = 0) -> None:
    ids = [f"{label}-{i}" for i in range(start, start + n)]
    vectors = np.random.default_rng(start).normal(size=(n, memory.dim)).astype(np.float32)
    memory.add(ids, [f"text {i}" for i in ids], [label] * n, vectors)


def test_bounded_per_intent_and_uniform_over_the_stream() -> None:
    m = ExampleMemory(per_class=50, dim=4)
    offer(m, "common", 5000)
    offer(m, "rare", 3)
    assert (m.count("common"), m.count("rare"), len(m)) == (50, 3, 53)
    assert m.seen("common") == 5000
    # a uniform sample: the kept examples come from the whole stream, not its start
    kept = [
        int(i.split("-")[1])
        for i, y in zip(m.examples()[0], m.examples()[2], strict=True)
        if y == "common"
    ]
    assert np.mean(kept) > 1500 and max(kept) > 4000


def test_a_redelivered_example_is_not_counted_twice() -> None:
    m = ExampleMemory(per_class=3, dim=4)
    offer(m, "a", 2)
    offer(m, "a", 2)
    assert m.count("a") == 2 and m.seen("a") == 2


def test_the_same_stream_gives_the_same_memory_across_a_restart(tmp_path: Path) -> None:
    unbroken, resumed = ExampleMemory(per_class=20, dim=4), ExampleMemory(per_class=20, dim=4)
    offer(unbroken, "a", 300)
    offer(resumed, "a", 120)
    resumed.save(tmp_path / "m.npz")
    resumed = ExampleMemory.load(tmp_path / "m.npz", per_class=20)
    offer(unbroken, "b", 7)
    offer(resumed, "a", 180, start=120)
    offer(resumed, "b", 7)
    offer(unbroken, "a", 0)
    assert unbroken.examples()[0][:20] == resumed.examples()[0][:20]
    assert sorted(unbroken.examples()[0]) == sorted(resumed.examples()[0])


def test_save_and_load_keep_vectors_key_and_counts(tmp_path: Path) -> None:
    m = ExampleMemory(per_class=5, dim=3, key="enc-1")
    offer(m, "a", 8)
    offer(m, "b", 2)
    m.save(tmp_path / "m.npz")
    back = ExampleMemory.load(tmp_path / "m.npz", per_class=5)
    assert back.key == "enc-1" and back.examples() == m.examples()
    assert np.array_equal(back.vectors(), m.vectors())
    assert (back.seen("a"), back.seen("b")) == (8, 2)
    smaller = ExampleMemory.load(tmp_path / "m.npz", per_class=2)
    assert (smaller.count("a"), smaller.count("b")) == (2, 2)


def test_new_vectors_replace_all_under_a_new_key() -> None:
    m = ExampleMemory(per_class=5, dim=2)
    offer(m, "a", 3)
    m.set_vectors(np.ones((3, 2)), "enc-2")
    assert m.key == "enc-2" and np.array_equal(m.vectors(), np.ones((3, 2)))
    with pytest.raises(ValueError, match="2 vectors for 3 examples"):
        m.set_vectors(np.ones((2, 2)), "enc-3")
