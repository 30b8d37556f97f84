"""The simulated world that the demo and the soak share: a fresh run folder with its
settings, edge nodes bootstrapped from a scenario's seeds, free ports, CPU of processes."""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Any

from harness.processes import free_port, port_is_free
from learners.edge_node import EdgeNode
from models.registry import AdapterRegistry
from scenarios.datasets import write_csv
from scenarios.scenario import Scenario
from streams.settings import Settings


def usable_port(port: int) -> int:
    """``port`` if it is free, else any free port (a demo must not fail on a busy port)."""
    return port if port_is_free(port) else free_port()


def fresh_run(out: Path, base: Settings, name: str, **changes: Any) -> Settings:
    """Empty ``out`` and return settings that keep every state of a run in it (the demo's,
    the soak's): adapters, node files, the teacher's corpus, one-off app id and webhook."""
    if out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True)
    return base.replace(
        state_dir=(out / "state").resolve(),
        teacher_corpus=str((out / "teacher_corpus.csv").resolve()),
        app_id=f"ecc-{name}-{os.getpid()}",
        batch_max_age_s=min(base.batch_max_age_s, 10.0),
        webhook_host="127.0.0.1",
        **changes,
    )


def bootstrap_nodes(
    settings: Settings, nodes: tuple[str, ...], scenario: Scenario
) -> AdapterRegistry:
    """Every node's first version from the scenario's seed examples; the registry."""
    write_csv(settings.teacher_corpus, scenario.teacher_corpus)
    registry = AdapterRegistry(settings.state_dir / "adapters", keep_last=settings.keep_versions)
    for node in nodes:
        EdgeNode.bootstrap(
            node,
            registry,
            settings.state_dir,
            [e.text for e in scenario.seed_examples],
            [e.label for e in scenario.seed_examples],
            settings.edge_options(),
        )
    return registry


def cpu_seconds(pid: int | None) -> float | None:
    """User + system CPU seconds a live process has used so far (None: it is gone)."""
    import psutil

    if pid is None:
        return None
    try:
        t = psutil.Process(pid).cpu_times()
    except psutil.Error:
        return None
    return round(t.user + t.system, 2)
