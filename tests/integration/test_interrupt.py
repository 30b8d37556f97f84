"""Ctrl-C, kill or kill -9 of `ecc demo` while traffic flows: no broker or worker is left."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from harness.processes import pid_alive

pytestmark = pytest.mark.integration


def descendants(pid: int) -> set[int]:
    """Every live process below ``pid``, from /proc."""
    parents: dict[int, int] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                stat = Path(f"/proc/{entry}/stat").read_text()
            except OSError:
                continue
            parents[int(entry)] = int(stat.rsplit(")", 1)[1].split()[1])
    found: set[int] = set()
    frontier = {pid}
    while frontier:
        frontier = {p for p, pp in parents.items() if pp in frontier} - found
        found |= frontier
    return found


@pytest.mark.parametrize(
    ("sig", "code"),
    [(signal.SIGINT, 130), (signal.SIGTERM, 130), (signal.SIGKILL, -signal.SIGKILL)],
    ids=["ctrl-c", "kill", "kill-9"],
)
def test_stopping_the_demo_leaves_no_process_behind(tmp_path: Path, sig: int, code: int) -> None:
    out = tmp_path / "demo"
    demo = subprocess.Popen(
        [sys.executable, "-m", "streams.cli", "demo", "--turns", "3000", "--out", str(out)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env={**os.environ, "ECC_METRICS_PORT": "0"},
    )
    try:
        ready = out / "state" / "worker.ready"
        deadline = time.time() + 300
        while not ready.exists() and time.time() < deadline and demo.poll() is None:
            time.sleep(0.2)
        assert ready.exists(), "the demo's worker never became ready"
        time.sleep(3)  # traffic is flowing
        children = descendants(demo.pid)
        assert len(children) >= 2, "expected a broker and a worker under the demo"
        demo.send_signal(sig)
        assert demo.wait(timeout=90) == code
        deadline = time.time() + 10
        while any(pid_alive(p) for p in children) and time.time() < deadline:
            time.sleep(0.1)
        assert [p for p in children if pid_alive(p)] == []
    finally:
        if demo.poll() is None:
            demo.kill()
