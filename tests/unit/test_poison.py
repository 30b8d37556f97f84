"""Poison input, fuzzed: whatever bytes arrive on a topic, its schema either accepts a
valid record or refuses it with SchemaError (which the agents turn into a dead letter with
the reason). Any other exception would crash an agent, so it counts as a failure here.

The records are built from each topic's own field names with values of the wrong type,
huge or empty strings, invalid UTF-8, unknown schema versions and missing fields, and
also raw bytes. tests/integration/test_dead_letters.py sends such records through a real
worker and checks the dead letters and that the worker keeps serving.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from streams.schemas import BY_TOPIC, SchemaError, decode
from streams.topics import ALL

HUGE = "x" * 300_000

json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=40)
    | st.just(HUGE)
    | st.just(""),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=12,
)


def _records(topic: str) -> st.SearchStrategy[bytes]:
    fields = sorted(BY_TOPIC[topic].model_fields)
    objects = st.dictionaries(
        st.sampled_from([*fields, "unknown_field"]), json_values, max_size=len(fields) + 1
    )
    versioned = st.builds(
        lambda obj, version: {**obj, "schema_version": version},
        objects,
        st.integers(min_value=-3, max_value=10) | st.text(max_size=3),
    )

    def encode(obj: dict[str, Any], tail: bytes) -> bytes:
        return json.dumps(obj).encode() + tail

    tails = st.sampled_from([b"", b"\n", b"\n\xff\xfe\x00", b"\xff"])
    return st.builds(encode, objects | versioned, tails) | st.binary(max_size=300)


@pytest.mark.parametrize("topic", ALL)
@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_any_record_is_decoded_or_refused_with_a_reason(topic: str, data: st.DataObject) -> None:
    raw = data.draw(_records(topic))
    try:
        record = decode(BY_TOPIC[topic], raw)
    except SchemaError as exc:
        assert str(exc), "a refusal must say why"
        assert len(str(exc)) < 5_000, "the reason must stay readable (no echo of a huge field)"
    else:
        assert type(record) is BY_TOPIC[topic]
