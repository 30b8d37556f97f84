"""The drift agent's chunk scorer: a node's turn batches scored together, split by space."""

from __future__ import annotations

import time

import numpy as np

from learners.drift import DriftConfig, DriftMonitor, DriftState
from streams.agents.drift import PendingTurns
from streams.schemas import ServedTurn, TurnBatch

DIM = 16


def _batch(rng: np.random.Generator, version: int, off: bool, dim: int = DIM) -> TurnBatch:
    intents = [f"intent-{k}" for k in rng.integers(0, 4, 20)]
    rows, turns = [], []
    for n, name in enumerate(intents):
        shifted = off and name == "intent-0"
        v = np.eye(dim)[9 if shifted else int(name[-1])] + 0.3 * rng.normal(size=dim)
        rows.append(v / np.linalg.norm(v))
        conf = float(np.clip(rng.normal(0.4 if shifted else 0.85, 0.1), 0, 1))
        turns.append(ServedTurn(turn_id=f"t{n}", text="x", intent=name, confidence=conf, ts=0.0))
    return TurnBatch.of("n1", version, turns, np.stack(rows), served_at=time.time())


def test_a_chunk_scores_like_its_batches_one_by_one() -> None:
    """Turn counts and the alarm are the same whether batches are scored alone or pooled."""
    rng = np.random.default_rng(3)
    batches = [_batch(rng, 1, off=b >= 40) for b in range(80)]
    alone, pooled = DriftMonitor(DriftConfig(min_turns=50)), DriftMonitor(DriftConfig(min_turns=50))
    got_alone = []
    for b in batches:
        got_alone += alone.observe_turns(
            "n1",
            [t.intent for t in b.turns],
            np.array([t.confidence for t in b.turns]),
            b.embedding_matrix(),
            0.0,
            1,
        )
    pending = PendingTurns(pooled)
    got_pooled = []
    for start in range(0, 80, 10):  # chunks of 10 batches, as take_events gives them
        for b in batches[start : start + 10]:
            pending.add(b)
        got_pooled += pending.score_all(0.0)
    assert pending.batches == {}
    assert [(c.intent, c.new) for c in got_alone if c.new == DriftState.DRIFTING] == [
        ("intent-0", DriftState.DRIFTING)
    ]
    assert [(c.intent, c.new) for c in got_pooled if c.new == DriftState.DRIFTING] == [
        ("intent-0", DriftState.DRIFTING)
    ]
    a = {s.intent: s.turns for s in alone.snapshot()}
    assert a == {s.intent: s.turns for s in pooled.snapshot()}


def test_a_new_version_or_dimension_inside_a_chunk_is_scored_in_its_own_space() -> None:
    """Batches of version 1, then 2, then a model with other dims: no error, no alarm."""
    rng = np.random.default_rng(4)
    monitor = DriftMonitor(DriftConfig(min_turns=30))
    pending = PendingTurns(monitor)
    for _ in range(30):
        pending.add(_batch(rng, 1, off=False))
    got = pending.score_all(0.0)
    for _ in range(30):
        pending.add(_batch(rng, 2, off=False))
    for _ in range(30):
        pending.add(_batch(rng, 2, off=False, dim=2 * DIM))
    got += pending.score_all(1.0)
    assert [c for c in got if c.new == DriftState.DRIFTING] == []
    assert sum(s.turns for s in monitor.snapshot()) == 90 * 20
