"""Starting an ``ecc serve`` worker as a child process and waiting until it is ready.

The demo, the serving benchmark and the integration tests all run real workers this way.
A worker writes ``<state_dir>/worker.ready`` once its partitions are assigned.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

from streams.processes import spawn, stop
from streams.settings import Settings

ALL_ROLES = "edge,drift,feedback,teacher"


def ready_marker(settings: Settings) -> Path:
    return settings.state_dir / "worker.ready"


def start_worker(
    settings: Settings,
    log: Path,
    roles: str = ALL_ROLES,
    timeout: float = 180.0,
    tick: Callable[[], None] | None = None,
) -> subprocess.Popen[bytes]:
    """An ``ecc serve --roles ROLES`` child with ``settings``; returns once it is ready.

    It gets SIGKILL if this process dies (its graceful stop would wait for a broker that
    died too). If it exits or is not ready within ``timeout``, it is stopped and the error
    carries the end of its log. ``tick`` is called while waiting (a progress display).
    """
    ready_marker(settings).unlink(missing_ok=True)
    env = {**os.environ, **settings.to_env(), "PYTHONUNBUFFERED": "1"}
    proc = spawn(
        [sys.executable, "-m", "streams.cli", "serve", "--roles", roles],
        env=env,
        log=log,
        death_signal=signal.SIGKILL,
    )
    deadline = time.time() + timeout
    while not ready_marker(settings).exists():
        problem = None
        if proc.poll() is not None:
            problem = f"the stream worker exited ({proc.returncode})"
        elif time.time() > deadline:
            problem = f"the stream worker was not ready in {timeout:.0f} s"
        if problem:
            stop(proc)
            tail = log.read_text()[-4000:] if log.exists() else ""
            raise RuntimeError(f"{problem}; end of {log}:\n{tail}")
        if tick is not None:
            tick()
        time.sleep(0.2)
    return proc
