"""A bounded, time-limited key-value cache: the join side of feedback and drift.

Feedback refers to a turn by ``turn_id``; the agents keep what they need of recent turns
here. Entries expire ``ttl_s`` after they were put, and the oldest go first when
``max_items`` is reached, so memory stays bounded whatever the traffic.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Generic, TypeVar

V = TypeVar("V")


class TurnCache(Generic[V]):
    """Values by key with a time-to-live and a size cap.

    >>> cache: TurnCache[str] = TurnCache(ttl_s=10, max_items=2)
    >>> cache.put("t1", "track_order", now=0.0)
    >>> cache.get("t1", now=5.0)
    'track_order'
    >>> cache.get("t1", now=11.0) is None
    True
    >>> cache.put("a", "x", 0.0); cache.put("b", "y", 0.0); cache.put("c", "z", 0.0)
    >>> cache.get("a", 0.0) is None, len(cache)
    (True, 2)
    """

    def __init__(self, ttl_s: float, max_items: int) -> None:
        if ttl_s <= 0 or max_items < 1:
            raise ValueError("ttl_s must be > 0 and max_items >= 1")
        self.ttl_s = ttl_s
        self.max_items = max_items
        self._items: OrderedDict[str, tuple[float, V]] = OrderedDict()

    def __len__(self) -> int:
        return len(self._items)

    def put(self, key: str, value: V, now: float) -> None:
        self._items.pop(key, None)
        self._items[key] = (now + self.ttl_s, value)
        while len(self._items) > self.max_items:
            self._items.popitem(last=False)

    def get(self, key: str, now: float) -> V | None:
        item = self._items.get(key)
        if item is None:
            return None
        expires, value = item
        if now >= expires:
            del self._items[key]
            return None
        return value

    def purge(self, now: float) -> int:
        """Drop expired entries (oldest first, as they were put); returns how many."""
        dropped = 0
        while self._items:
            key, (expires, _) = next(iter(self._items.items()))
            if expires > now:
                break
            del self._items[key]
            dropped += 1
        return dropped


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
