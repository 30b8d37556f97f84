"""Reading a process's Prometheus ``/metrics`` endpoint: the soak, the drift bench and the
webhook bench all follow the running system through its own metrics."""

from __future__ import annotations

import urllib.request

from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.samples import Sample


def samples(url: str, timeout: float = 5.0) -> list[Sample]:
    """Every sample that ``url`` (a ``/metrics`` address) exposes now; raises ``OSError``
    when it does not answer."""
    with urllib.request.urlopen(url, timeout=timeout) as answer:
        text = answer.read().decode()
    return [s for family in text_string_to_metric_families(text) for s in family.samples]


def total(url: str, name: str, timeout: float = 5.0) -> float:
    """The sum of every sample named ``name`` (all its label sets)."""
    return sum(s.value for s in samples(url, timeout) if s.name == name)
