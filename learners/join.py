"""A bounded, time-limited key-value cache: the join side of feedback and drift.

Feedback refers to a turn by ``turn_id``; the agents keep what they need of recent turns
here. Entries expire ``ttl_s`` after they were put, and the oldest go first when
``max_items`` is reached, so memory stays bounded whatever the traffic.
"""

from __future__ import annotations

from collections import OrderedDict, deque
from collections.abc import Iterable
from typing import Generic, TypeVar

V = TypeVar("V")


class TurnCache(Generic[V]):
    """Values by key with a time-to-live and a size cap, put a batch at a time.

    Turns arrive in batches (an edge micro-batch) and are looked up rarely (a few percent
    get feedback), so the cache is a plain dict plus, per batch put, its expiry and keys:
    a put is one C-level ``dict.update`` (the drift worker puts every turn it scores), and
    expiry and eviction drop whole batches, oldest first. A key put again in a later batch
    goes with the earlier batch (replays are rare; it is forgotten early, never late).

    >>> cache: TurnCache[str] = TurnCache(ttl_s=10, max_items=2)
    >>> cache.put("t1", "track_order", now=0.0)
    >>> cache.get("t1", now=5.0)
    'track_order'
    >>> cache.get("t1", now=11.0) is None
    True
    >>> cache.put_many([("a", "x"), ("b", "y")], 0.0); cache.put_many([("c", "z")], 0.0)
    >>> cache.get("a", 0.0) is None, cache.get("c", 0.0), len(cache)
    (True, 'z', 1)

    A put can carry a ``tag`` (say, where the batch is stored); :meth:`take_dropped` returns
    the tags of the batches dropped since, so a copy kept elsewhere can be dropped too.
    """

    def __init__(self, ttl_s: float, max_items: int) -> None:
        if ttl_s <= 0 or max_items < 1:
            raise ValueError("ttl_s must be > 0 and max_items >= 1")
        self.ttl_s = ttl_s
        self.max_items = max_items
        self._items: dict[str, V] = {}
        self._batches: deque[tuple[float, list[str], str | None]] = deque()
        self._dropped: list[str] = []

    def __len__(self) -> int:
        return len(self._items)

    def put(self, key: str, value: V, now: float) -> None:
        self.put_many(((key, value),), now)

    def put_many(self, items: Iterable[tuple[str, V]], now: float, tag: str | None = None) -> None:
        """Put pairs that share one expiry (a batch's turns arrive together)."""
        self.restore_many(items, now + self.ttl_s, tag)

    def restore_many(
        self, items: Iterable[tuple[str, V]], expiry: float, tag: str | None = None
    ) -> None:
        """Put pairs that expire at ``expiry`` (a batch reloaded after a restart).

        Not :class:`learners.state.NodeState`'s ``restore``: this is a cache, not node
        state. Its unit is a batch put (keyed by the batch's ``tag``, say where its copy is
        stored), not a node; a batch is reloaded as it was stored, not as the cache exported
        it (the cache has no export); and it may drop entries early (eviction), which node
        state must never do. Restoring batches oldest first rebuilds the cache as it was.
        """
        batch = dict(items)
        self._items.update(batch)
        self._batches.append((expiry, list(batch), tag))
        while len(self._items) > self.max_items:
            self._drop_oldest()

    def get(self, key: str, now: float) -> V | None:
        self.purge(now)
        return self._items.get(key)

    def purge(self, now: float) -> int:
        """Drop expired entries; returns how many."""
        before = len(self._items)
        while self._batches and self._batches[0][0] <= now:
            self._drop_oldest()
        return before - len(self._items)

    def take_dropped(self) -> list[str]:
        """Tags of the batches dropped (expired or evicted) since the last call."""
        dropped, self._dropped = self._dropped, []
        return dropped

    def clear(self) -> None:
        self._items.clear()
        self._batches.clear()
        self._dropped.clear()

    def _drop_oldest(self) -> None:
        _, keys, tag = self._batches.popleft()
        if tag is not None:
            self._dropped.append(tag)
        pop = self._items.pop
        for key in keys:
            pop(key, None)


K = TypeVar("K")


class RecentKeys(Generic[K]):
    """The last ``max_items`` distinct keys seen: "was this one handled already?"

    >>> seen: RecentKeys[str] = RecentKeys(max_items=2)
    >>> seen.add("a"), seen.add("a"), seen.add("b"), seen.add("c")
    (True, False, True, True)
    >>> "a" in seen, "c" in seen
    (False, True)
    """

    def __init__(self, max_items: int) -> None:
        if max_items < 1:
            raise ValueError("max_items must be >= 1")
        self.max_items = max_items
        self._keys: OrderedDict[K, None] = OrderedDict()

    def __contains__(self, key: object) -> bool:
        return key in self._keys

    def __len__(self) -> int:
        return len(self._keys)

    def add(self, key: K) -> bool:
        """Remember ``key``; False if it was already there."""
        if key in self._keys:
            return False
        self._keys[key] = None
        while len(self._keys) > self.max_items:
            self._keys.popitem(last=False)
        return True
