"""Every stateful learner keeps the one state contract (:class:`learners.state.NodeState`):
the generic checks of :mod:`learners.checks`, run over each with a realistic feed."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import pytest

from learners.batching import FeedbackBatcher, LabelledExample, Source
from learners.checks import (
    EXACT,
    Tolerance,
    check_export_is_json,
    check_forget,
    check_restore_replaces,
    check_resume_equals_unbroken,
)
from learners.drift import DriftConfig, DriftMonitor, DriftState
from learners.drift.state import unpack_vector
from learners.feedback_ledger import FeedbackLedger, WaitingFeedback
from learners.state import NodeState

NODES = ("n1", "n2", "n3")
DIM = 16


def _rng(step: int, salt: int = 0) -> np.random.Generator:
    """Each step's randomness from the step alone, as the checks need."""
    return np.random.default_rng([salt, step])


def _example(step: int, k: int, node: str) -> LabelledExample:
    source: Source = "teacher" if k % 3 == 0 else "feedback"
    return LabelledExample(f"e{step}.{k}", node, f"t{step}.{k}", f"text {step}", "track", source)


# --- FeedbackBatcher: labelled examples, time advancing, batches closing by size and age ----
def make_batcher() -> FeedbackBatcher:
    return FeedbackBatcher(max_size=5, max_age_s=6.0)


def feed_batcher(b: FeedbackBatcher, step: int) -> list[dict[str, Any]]:
    rng = _rng(step, 1)
    now = step * 1.5
    closed = []
    # n1 is busy (closes by size), n3 is quiet (closes by age)
    for k in range(int(rng.integers(0, 4))):
        node = str(rng.choice(NODES, p=[0.7, 0.2, 0.1]))
        closed += b.add(_example(step, k, node), now)
    closed += b.due(now)
    return [t.to_dict() for t in closed]


# --- FeedbackLedger: offsets, the outbox, sends acknowledged later, the join wait list -----
def make_ledger() -> FeedbackLedger:
    return FeedbackLedger(make_batcher())


def feed_ledger(led: FeedbackLedger, step: int) -> dict[str, Any]:
    rng = _rng(step, 2)
    now = step * 1.5
    out: dict[str, Any] = {"replays": 0}
    for k in range(int(rng.integers(0, 4))):
        node = str(rng.choice(NODES, p=[0.7, 0.2, 0.1]))
        partition = NODES.index(node)
        offset = step * 4 + k
        if not led.fresh(node, partition, "chat.feedback", offset):
            continue
        if rng.random() < 0.25:  # feedback that came before its turn waits for it
            fb = {"turn_id": f"t{step}.{k}", "node_id": node, "kind": "thumbs_up"}
            origin = ("chat.feedback", partition, offset)
            led.wait(node, WaitingFeedback(fb, origin, now + float(rng.integers(2, 8))))
        else:
            led.add(_example(step, k, node), now)
        out["replays"] += not led.fresh(node, partition, "chat.feedback", offset)
    led.due(now)
    known = {f"t{step - 2}.{k}" for k in range(2)}  # some turns show up two steps later
    out["joined"] = [
        (node, item.turn_id, joined)
        for node, item, joined in led.take_waiting(now, known.__contains__)
    ]
    if step % 3 == 2:  # the broker acknowledges the outbox now and then
        sent = led.outbox()[:2]
        led.sent(sent)
        out["sent"] = [b.batch_id for b in sent]
    out["outbox"] = [b.batch_id for b in led.outbox()]
    out["dirty"] = sorted(led.take_dirty())
    return out


# --- DriftMonitor: turns, feedback, an adapter; stable -> drifting -> recovering -> stable --
DRIFT = DriftConfig(min_turns=20, recover_turns=15, share_min_turns=200)
SHIFT = range(30, 55)  # n1's intent-0 turns go astray
ADAPTER_AT = 45  # a new adapter for n1, mid-shift
# cuts while n1's intent-0 is drifting, before the adapter; counting calm turns after it;
# recovering
DRIFT_CUTS = (40, 57, 60)


def make_monitor() -> DriftMonitor:
    return DriftMonitor(DRIFT)


def feed_monitor(m: DriftMonitor, step: int) -> dict[str, Any]:
    rng = _rng(step, 3)
    now = float(step)
    out: list[Any] = []
    # the agent skips a replayed record by the offset stored with the state
    offsets = [m.offset(node, "chat.turns") for node in NODES[:2]]
    for node in NODES[:2]:
        intents = [f"intent-{k}" for k in rng.integers(0, 4, 24)]
        off = np.array([node == "n1" and step in SHIFT and n == "intent-0" for n in intents])
        centres = np.eye(DIM)[[9 if o else int(n[-1]) for n, o in zip(intents, off, strict=True)]]
        emb = centres + 0.3 * rng.normal(size=(len(intents), DIM))
        emb /= np.linalg.norm(emb, axis=1, keepdims=True)
        conf = np.clip(rng.normal(np.where(off, 0.35, 0.85), 0.1), 0.0, 1.0)
        out += m.observe_turns(node, intents, conf, emb, now, version=1)
        for intent in rng.choice(intents, 3):
            wrong = bool(rng.random() < (0.6 if node == "n1" and step in SHIFT else 0.05))
            out += m.observe_feedback(node, str(intent), wrong, now)
        m.set_offset(node, "chat.turns", step)
    if step == ADAPTER_AT:
        out += m.adapter_published("n1", 2, now)
    dirty = sorted((node, intent or "") for node, intent in m.take_dirty())
    snapshot = m.snapshot() if step % 5 == 0 else []  # the agent's periodic gauges
    return {"transitions": out, "dirty": dirty, "offsets": offsets, "snapshot": snapshot}


def _unpacked(data: dict[str, Any]) -> dict[str, Any]:
    """The monitor packs vectors as float32: compare them as numbers."""
    intents = {
        name: {**it, "centroid": _vector(it["centroid"]), "ref_sum": _vector(it["ref_sum"])}
        for name, it in data["intents"].items()
    }
    return {**data, "intents": intents}


def _vector(packed: str | None) -> list[float] | None:
    v = unpack_vector(packed)
    return None if v is None else v.tolist()


@dataclass(frozen=True)
class Case:
    make: Callable[[], Any]
    feed: Callable[[Any, int], Any]
    steps: int
    cuts: tuple[int, ...]
    """Where the resume check stops and restores: states worth carrying across, each."""
    tolerance: Tolerance = EXACT


CASES = {
    "FeedbackBatcher": Case(make_batcher, feed_batcher, steps=60, cuts=(16, 29)),
    "FeedbackLedger": Case(make_ledger, feed_ledger, steps=60, cuts=(16, 38)),
    # A restored monitor's centroids are float32 roundings of the running one's (the packing
    # of its checkpoint), so its numbers follow to about float32 precision, not bit for bit;
    # its states, turn counts and transitions are the same.
    "DriftMonitor": Case(
        make_monitor,
        feed_monitor,
        steps=100,
        cuts=(2, *DRIFT_CUTS),  # 2: every intent still learning its reference
        tolerance=Tolerance(rel=1e-5, abs=1e-6, view=_unpacked),
    ),
}


@pytest.fixture(params=list(CASES), ids=list(CASES))
def case(request: pytest.FixtureRequest) -> Case:
    return CASES[request.param]


def _fed(case: Case, steps: int) -> Any:
    learner = case.make()
    for step in range(steps):
        case.feed(learner, step)
    return learner


def test_it_is_node_state(case: Case) -> None:
    assert isinstance(case.make(), NodeState)


def test_export_is_json(case: Case) -> None:
    for steps in (1, *case.cuts, case.steps):
        check_export_is_json(_fed(case, steps))


def test_forget(case: Case) -> None:
    learner = _fed(case, case.cuts[0])
    check_forget(learner, learner.nodes()[0])


def test_restore_replaces(case: Case) -> None:
    check_restore_replaces(case.make, case.feed, case.cuts[0])


def test_resume_equals_unbroken(case: Case) -> None:
    for cut in case.cuts:
        run = check_resume_equals_unbroken(case.make, case.feed, case.steps, cut, case.tolerance)
        assert len(run.saved) >= 2, "state of several nodes crosses the cut"


# --- the feeds are not vacuous: what crosses the cut is what a restart must carry ----------
def _resumed(name: str, cut: int) -> Any:
    c = CASES[name]
    return check_resume_equals_unbroken(c.make, c.feed, c.steps, cut, c.tolerance)


@pytest.mark.parametrize("cut", CASES["FeedbackBatcher"].cuts)
def test_the_batcher_feed_closes_by_size_and_age_across_the_cut(cut: int) -> None:
    run = _resumed("FeedbackBatcher", cut)
    after = [batch for out in run.outputs[cut:] for batch in out]
    assert {b["reason"] for b in after} == {"size", "age"}
    # a batch open at the cut closes after it
    assert any(b["started"] == run.saved.get(b["node_id"], {}).get("started") for b in after)


@pytest.mark.parametrize("cut", CASES["FeedbackLedger"].cuts)
def test_the_ledger_feed_carries_an_outbox_and_waiting_feedback_across_the_cut(cut: int) -> None:
    run = _resumed("FeedbackLedger", cut)
    saved = run.saved.values()
    assert any(d["outbox"] for d in saved), "a closed batch not yet acknowledged"
    assert any(d["open"] for d in saved) and any(d["waiting"] for d in saved)
    after = run.outputs[cut:]
    assert any(out.get("sent") for out in after)
    assert {joined for out in after for *_, joined in out["joined"]} == {True, False}


@pytest.mark.parametrize("cut", DRIFT_CUTS)
def test_the_drift_feed_crosses_state_transitions_at_the_cut(cut: int) -> None:
    run = _resumed("DriftMonitor", cut)
    at_cut = run.saved["n1"]["intents"]["intent-0"]
    assert at_cut["state"] in (DriftState.DRIFTING, DriftState.RECOVERING)
    assert at_cut["adapter_since_alarm"] == (cut > ADAPTER_AT)
    assert at_cut["calm"] > 0 or cut < ADAPTER_AT
    before = [(t.intent, t.new) for out in run.outputs[:cut] for t in out["transitions"]]
    after = [(t.intent, t.new) for out in run.outputs[cut:] for t in out["transitions"]]
    assert ("intent-0", DriftState.DRIFTING) in before
    assert ("intent-0", DriftState.STABLE) in after
    assert ("intent-0", DriftState.RECOVERING) in before + after
    assert run.resumed.state("n1", "intent-0") == DriftState.STABLE
