"""One contract for the learners whose state a stream worker checkpoints per node.

A worker owns some partitions, so some nodes: it keeps each node's state in a changelogged
table, reloads it after a restart or a rebalance, and drops it when the node moves to
another worker. The learners that hold such state (:class:`learners.batching.FeedbackBatcher`,
:class:`learners.feedback_ledger.FeedbackLedger`, :class:`learners.drift.DriftMonitor`) all
speak this one protocol, so the agents save and load them the same way and one generic check
(:mod:`learners.checks`) proves, for each, that a restarted worker goes on exactly where the
stopped one was.

Not in it: :class:`learners.join.TurnCache`, a bounded cache keyed by turn (see its
docstring), and :class:`learners.feedback_ledger.SeenIds`, ids keyed by id, not by node.
"""

from __future__ import annotations

from typing import Any, Protocol, runtime_checkable


@runtime_checkable
class NodeState(Protocol):
    """Per-node state that round-trips through plain data.

    ``export`` then ``restore`` into a fresh instance (and the same for every node) gives an
    instance that behaves as the original would have from there on.
    """

    def nodes(self) -> list[str]:
        """The nodes it holds state for."""
        ...

    def export(self, node_id: str) -> dict[str, Any]:
        """The node's whole state as JSON-serialisable data; KeyError for a node it does
        not hold."""
        ...

    def restore(self, node_id: str, data: dict[str, Any]) -> None:
        """Replace the node's state with what :meth:`export` gave (after a JSON round trip)."""
        ...

    def forget(self, node_id: str) -> None:
        """Drop the node from memory (its partitions went to another worker); a node it does
        not hold is no error."""
        ...
