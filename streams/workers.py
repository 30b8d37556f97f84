"""Starting ``ecc serve`` workers and the ``ecc webhook`` as child processes, and waiting
until they are ready.

The demo, the serving benchmark and the integration tests all run real workers this way.
A worker writes ``<state_dir>/worker.ready`` once its partitions are assigned.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import urllib.request
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


def start_webhook(
    settings: Settings, log: Path, timeout: float = 60.0
) -> tuple[subprocess.Popen[bytes], str]:
    """An ``ecc webhook`` child with ``settings``; returns it and its base URL once its
    ``/healthz`` answers (it waits for the broker before it listens)."""
    env = {**os.environ, **settings.to_env(), "PYTHONUNBUFFERED": "1"}
    proc = spawn(
        [sys.executable, "-m", "streams.cli", "webhook"],
        env=env,
        log=log,
        death_signal=signal.SIGKILL,
    )
    host = "127.0.0.1" if settings.webhook_host in ("0.0.0.0", "") else settings.webhook_host
    url = f"http://{host}:{settings.webhook_port}"
    deadline = time.time() + timeout
    while True:
        try:
            with urllib.request.urlopen(url + "/healthz", timeout=2) as answer:
                if answer.status == 200:
                    return proc, url
        except OSError:
            pass
        if proc.poll() is not None or time.time() > deadline:
            stop(proc)
            tail = log.read_text()[-4000:] if log.exists() else ""
            raise RuntimeError(f"the webhook did not start; end of {log}:\n{tail}")
        time.sleep(0.2)
