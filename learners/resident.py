"""Which of a worker's nodes stay in memory: a least-recently-used set with bounds.

A worker may own the partitions of thousands of nodes, but holds only those it served or
taught lately. Beyond ``max_nodes`` nodes, or ``max_bytes`` of their own state, the least
recently used are let go; a node that is busy (a consolidation under way) is never let go,
and nothing is lost by letting one go: every version is in the registry and every example
in the node's files, so the next turn for it loads it again. Apart from that, the learning
state (example memory, held-out set) of only the ``learning`` most recently taught nodes
stays loaded: it is most of a learning node's bytes.

>>> from dataclasses import dataclass
>>> @dataclass
... class Node:
...     nbytes: int = 10
...     busy: bool = False
...     learning_state_loaded: bool = False
...     def release_learning_state(self) -> bool:
...         self.learning_state_loaded = False
...         return True
>>> nodes = ResidentNodes[Node](max_nodes=2)
>>> for name in "abc":
...     evicted = nodes.put(name, Node())
>>> sorted(nodes), evicted
(['b', 'c'], ['a'])
>>> nodes.get("b") is not None, nodes.put("d", Node())  # b was used last: c goes
(True, ['c'])
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Iterator
from typing import Generic, Protocol, TypeVar


class Resident(Protocol):
    @property
    def nbytes(self) -> int: ...

    @property
    def busy(self) -> bool: ...

    @property
    def learning_state_loaded(self) -> bool: ...

    def release_learning_state(self) -> bool: ...


N = TypeVar("N", bound=Resident)


class ResidentNodes(Generic[N]):
    """Nodes by id, least recently used first; bounded by count, bytes (0: no bound) and
    the number of nodes that keep their learning state loaded. Safe to call from several
    threads (the event loop loads nodes, the learning thread releases learning state)."""

    def __init__(self, max_nodes: int = 0, max_bytes: int = 0, learning: int = 0) -> None:
        if min(max_nodes, max_bytes, learning) < 0:
            raise ValueError("bounds are 0 (none) or more")
        self.max_nodes = max_nodes
        self.max_bytes = max_bytes
        self.learning = learning
        self._nodes: OrderedDict[str, N] = OrderedDict()
        self._taught: OrderedDict[str, None] = OrderedDict()
        self._lock = threading.RLock()

    def __len__(self) -> int:
        return len(self._nodes)

    def __iter__(self) -> Iterator[str]:
        with self._lock:
            return iter(list(self._nodes))

    def __contains__(self, node_id: object) -> bool:
        return node_id in self._nodes

    def values(self) -> list[N]:
        with self._lock:
            return list(self._nodes.values())

    @property
    def nbytes(self) -> int:
        return sum(node.nbytes for node in self.values())

    def get(self, node_id: str) -> N | None:
        """The node, now the most recently used; None if it is not resident."""
        with self._lock:
            node = self._nodes.get(node_id)
            if node is not None:
                self._nodes.move_to_end(node_id)
            return node

    def put(self, node_id: str, node: N) -> list[str]:
        """Hold ``node``; returns the ids let go to keep within the bounds."""
        with self._lock:
            self._nodes[node_id] = node
            self._nodes.move_to_end(node_id)
            return self.trim()

    def taught(self, node_id: str) -> list[str]:
        """``node_id`` has just learnt; returns the ids whose learning state was let go."""
        with self._lock:
            self._taught[node_id] = None
            self._taught.move_to_end(node_id)
            released = []
            if self.learning:
                for other in list(self._taught)[: -self.learning]:
                    node = self._nodes.get(other)
                    if node is None or node.release_learning_state():
                        del self._taught[other]
                        released.append(other)
            return released

    def trim(self) -> list[str]:
        """Let the least recently used idle nodes go until the bounds hold (busy nodes
        stay, even if that means the bounds do not)."""
        with self._lock:
            evicted: list[str] = []
            total = self.nbytes if self.max_bytes else 0
            for node_id in list(self._nodes)[:-1]:  # never the one just used
                over_count = self.max_nodes and len(self._nodes) > self.max_nodes
                over_bytes = self.max_bytes and total > self.max_bytes
                if not (over_count or over_bytes):
                    break
                node = self._nodes[node_id]
                if node.busy:
                    continue
                total -= node.nbytes if self.max_bytes else 0
                del self._nodes[node_id]
                self._taught.pop(node_id, None)
                evicted.append(node_id)
            return evicted
