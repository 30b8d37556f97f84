"""Does the cloud teacher agree with the users? Pairs a turn's teacher label with the label
a user's feedback gave it (a correction, or a thumbs-up on the prediction), whichever
arrives first, and reports each pair once: the teacher's agreement rate, measured on live
traffic.

>>> a = Agreement(ttl_s=60)
>>> a.teacher("t1", "refund_status", now=0.0) is None  # no user label yet
True
>>> a.user("t1", "refund_status", now=1.0)
True
>>> a.user("t1", "refund_status", now=2.0) is None  # each turn is reported once
True
>>> a.user("t2", "track_order", now=3.0), a.teacher("t2", "cancel_order", now=4.0)
(None, False)
"""

from __future__ import annotations

from learners.join import RecentKeys, TurnCache


class Agreement:
    def __init__(self, ttl_s: float, max_items: int = 100_000) -> None:
        self._teacher: TurnCache[str] = TurnCache(ttl_s, max_items)
        self._user: TurnCache[str] = TurnCache(ttl_s, max_items)
        self._reported: RecentKeys[str] = RecentKeys(max_items)

    def teacher(self, turn_id: str, label: str, now: float) -> bool | None:
        """The teacher labelled ``turn_id``; whether a user agreed, if one has spoken."""
        return self._pair(turn_id, label, self._user.get(turn_id, now), self._teacher, now)

    def user(self, turn_id: str, label: str, now: float) -> bool | None:
        """A user labelled ``turn_id``; whether the teacher agreed, if it has answered."""
        return self._pair(turn_id, label, self._teacher.get(turn_id, now), self._user, now)

    def _pair(
        self, turn_id: str, label: str, other: str | None, mine: TurnCache[str], now: float
    ) -> bool | None:
        if turn_id in self._reported:
            return None
        if other is None:
            mine.put(turn_id, label, now)
            return None
        self._reported.add(turn_id)
        return label == other
