"""Generic checks of :class:`learners.state.NodeState`, one function run over every stateful
learner, in the manner of river's ``river/checks``.

The property a stream worker relies on: stopping anywhere, storing every node's export as
JSON and restoring it into a fresh learner, then going on, gives what never stopping would
have given. Each learner's own tests show it for a few hand-picked states; these checks
show it for whatever a realistic feed reaches, so a field added to a learner but not to its
export fails here (``tests/unit/test_state_contract.py`` runs them over every learner).

A *feed* drives a learner one step: ``feed(learner, step)`` does what a worker would do
with one chunk of input and returns what it would send on (closed batches, transitions).
It must be a function of ``step`` alone (seed any randomness with it), since the checks
feed several learners the same steps and compare.

>>> from learners.batching import FeedbackBatcher, LabelledExample
>>> def feed(b: FeedbackBatcher, step: int) -> list[str]:
...     ex = LabelledExample(f"e{step}", f"n{step % 2}", f"t{step}", "hi", "greet", "feedback")
...     return [t.batch_id for t in b.add(ex, now=float(step)) + b.due(now=float(step))]
>>> make = lambda: FeedbackBatcher(max_size=3, max_age_s=4)
>>> run = check_resume_equals_unbroken(make, feed, steps=12, cut=5)
>>> sorted(run.saved), sum(map(len, run.outputs[5:]))
(['n1'], 3)
"""

from __future__ import annotations

import dataclasses
import enum
import json
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

import numpy as np

from learners.state import NodeState

L = TypeVar("L", bound=NodeState)
Feed = Callable[[L, int], Any]
"""``feed(learner, step)``: one step of input; returns what the worker would send on."""


def _identity(data: dict[str, Any]) -> Any:
    return data


@dataclass(frozen=True)
class Tolerance:
    """How close two values must be to count as the same: exact by default. ``view`` maps an
    export to what is compared (say, packed vectors to numbers, so ``rel`` applies)."""

    rel: float = 0.0
    abs: float = 0.0
    view: Callable[[dict[str, Any]], Any] = _identity


EXACT = Tolerance()


@dataclass(frozen=True)
class Resumed(Generic[L]):
    """What :func:`check_resume_equals_unbroken` saw, for a test to check it was not vacuous."""

    outputs: list[Any]
    """Every step's output of the unbroken run."""
    saved: dict[str, dict[str, Any]]
    """The exports stored at the cut, by node (after their JSON round trip)."""
    resumed: L
    """The learner that was restored at the cut, after the last step."""


def check_export_is_json(learner: NodeState) -> None:
    """Every node's export is plain JSON data: it survives ``json.dumps`` (no NaN, no
    numpy, no objects) and comes back equal (no tuples, no non-string keys)."""
    for node_id in learner.nodes():
        data = learner.export(node_id)
        assert isinstance(data, dict), f"{node_id}: export is a {type(data).__name__}"
        back = json.loads(json.dumps(data, allow_nan=False))
        assert back == data, f"{node_id}: export changes in a JSON round trip"
        assert learner.export(node_id) == data, f"{node_id}: export changed the learner"


def check_forget(learner: NodeState, node_id: str) -> None:
    """``forget`` drops that node and only it: it leaves :meth:`nodes`, its export raises
    KeyError, the other nodes export as before, and forgetting it again is no error."""
    assert node_id in learner.nodes(), f"{node_id} is not held: nothing to check"
    others = {n: learner.export(n) for n in learner.nodes() if n != node_id}
    learner.forget(node_id)
    assert node_id not in learner.nodes()
    try:
        learner.export(node_id)
    except KeyError:
        pass
    else:
        raise AssertionError(f"{node_id}: export after forget gave state")
    assert {n: learner.export(n) for n in learner.nodes()} == others
    learner.forget(node_id)


def check_restore_replaces(make: Callable[[], L], feed: Feed[L], steps: int) -> None:
    """``restore`` replaces a node's state (it does not merge into it), and exporting what
    was restored gives the stored data back, exactly."""
    source, target = make(), make()
    for step in range(steps):
        feed(source, step)
    for step in range(steps // 2):  # the target holds other state for the same nodes
        feed(target, step)
    assert source.nodes(), "the feed left no state to restore"
    for node_id in source.nodes():
        data = _json(source.export(node_id))
        target.restore(node_id, data)
        assert node_id in target.nodes()
        _assert_same(target.export(node_id), data, EXACT, f"{node_id}: restored export")


def check_resume_equals_unbroken(
    make: Callable[[], L],
    feed: Feed[L],
    steps: int,
    cut: int,
    tolerance: Tolerance = EXACT,
) -> Resumed[L]:
    """One learner fed every step unbroken; another stopped before step ``cut``, every node
    exported, JSON round-tripped, restored into a fresh learner that takes the remaining
    steps. Every step's output and the final exports must be the same (to ``tolerance``)."""
    if not 0 < cut < steps:
        raise ValueError("cut must fall inside the steps")
    unbroken, first = make(), make()
    expected = [feed(unbroken, step) for step in range(steps)]
    got = [feed(first, step) for step in range(cut)]
    _assert_same(got, expected[:cut], EXACT, "output before the cut (a feed not of the step?)")
    saved = {node_id: _json(first.export(node_id)) for node_id in first.nodes()}
    resumed = make()
    for node_id, data in saved.items():
        resumed.restore(node_id, data)
    assert sorted(resumed.nodes()) == sorted(saved), "restored nodes differ from those saved"
    for step in range(cut, steps):
        _assert_same(feed(resumed, step), expected[step], tolerance, f"output of step {step}")
    assert sorted(resumed.nodes()) == sorted(unbroken.nodes()), "nodes differ at the end"
    for node_id in unbroken.nodes():
        _assert_same(
            tolerance.view(resumed.export(node_id)),
            tolerance.view(unbroken.export(node_id)),
            tolerance,
            f"final export of {node_id}",
        )
    return Resumed(expected, saved, resumed)


def _json(data: dict[str, Any]) -> dict[str, Any]:
    """As a changelog stores it."""
    back: dict[str, Any] = json.loads(json.dumps(data))
    return back


def _plain(x: Any) -> Any:
    """Outputs as comparable plain values (dataclasses, enums and numpy unwrapped)."""
    if dataclasses.is_dataclass(x) and not isinstance(x, type):
        return {f.name: _plain(getattr(x, f.name)) for f in dataclasses.fields(x)}
    if isinstance(x, enum.Enum):
        return _plain(x.value)
    if isinstance(x, Mapping):
        return {k: _plain(v) for k, v in x.items()}
    if isinstance(x, list | tuple | set | frozenset):
        items = [_plain(v) for v in x]
        return sorted(items, key=repr) if isinstance(x, set | frozenset) else items
    if isinstance(x, np.ndarray):
        return _plain(x.tolist())
    if isinstance(x, np.generic):
        return x.item()
    return x


def _difference(a: Any, b: Any, tol: Tolerance, path: str) -> str | None:
    """Where ``a`` and ``b`` first differ (None: they do not)."""
    number = (int, float)
    if isinstance(a, number) and isinstance(b, number) and bool not in (type(a), type(b)):
        if tol.rel == tol.abs == 0.0:
            same = a == b or (math.isnan(a) and math.isnan(b))
        else:
            same = math.isclose(a, b, rel_tol=tol.rel, abs_tol=tol.abs)
        return None if same else f"{path}: {a!r} != {b!r}"
    if isinstance(a, dict) and isinstance(b, dict):
        if set(a) != set(b):
            return f"{path}: keys {sorted(map(str, set(a) ^ set(b)))} in one only"
        for k in a:
            if (d := _difference(a[k], b[k], tol, f"{path}[{k!r}]")) is not None:
                return d
        return None
    if isinstance(a, list) and isinstance(b, list):
        if len(a) != len(b):
            return f"{path}: {len(a)} items != {len(b)}"
        for i, (x, y) in enumerate(zip(a, b, strict=True)):
            if (d := _difference(x, y, tol, f"{path}[{i}]")) is not None:
                return d
        return None
    return None if a == b and type(a) is type(b) else f"{path}: {a!r} != {b!r}"


def _assert_same(got: Any, want: Any, tol: Tolerance, what: str) -> None:
    difference = _difference(_plain(got), _plain(want), tol, "")
    assert difference is None, f"{what} differs at {difference}"
