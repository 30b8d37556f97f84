"""The agents, one module per role; :data:`REGISTER` maps each role to the function that
registers its agents on a worker's :class:`~streams.context.Context`."""

from __future__ import annotations

from collections.abc import Callable

from streams import topics
from streams.agents import drift, edge, feedback, fleet, teacher
from streams.context import Context

REGISTER: dict[str, Callable[[Context], None]] = {
    "edge": edge.register,
    "drift": drift.register,
    "feedback": feedback.register,
    "teacher": teacher.register,
    "fleet": fleet.register,
}
assert tuple(REGISTER) == topics.ROLES, "every role of topics.ROLES has a register function"
