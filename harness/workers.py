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

from harness.processes import spawn, stop
from streams import topics
from streams.settings import Settings

ALL_ROLES = ",".join(topics.SERVICE_ROLES)


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
    settings.ready_marker.unlink(missing_ok=True)
    proc = spawn_ecc(settings, log, "serve", "--roles", roles)
    _wait_ready(proc, log, settings.ready_marker.exists, "the stream worker", timeout, tick)
    return proc


def start_webhook(
    settings: Settings, log: Path, timeout: float = 60.0
) -> tuple[subprocess.Popen[bytes], str]:
    """An ``ecc webhook`` child with ``settings``; returns it and its base URL once its
    ``/healthz`` answers (it waits for the broker before it listens)."""
    host = "127.0.0.1" if settings.webhook_host in ("0.0.0.0", "") else settings.webhook_host
    url = f"http://{host}:{settings.webhook_port}"

    def healthy() -> bool:
        try:
            with urllib.request.urlopen(url + "/healthz", timeout=2) as answer:
                return bool(answer.status == 200)
        except OSError:
            return False

    proc = spawn_ecc(settings, log, "webhook")
    _wait_ready(proc, log, healthy, "the webhook", timeout)
    return proc, url


def spawn_ecc(settings: Settings, log: Path, *command: str) -> subprocess.Popen[bytes]:
    """``ecc COMMAND`` as a child with ``settings`` in its environment; SIGKILL if we die."""
    env = {**os.environ, **settings.to_env(), "PYTHONUNBUFFERED": "1"}
    return spawn(
        [sys.executable, "-m", "streams.cli", *command],
        env=env,
        log=log,
        death_signal=signal.SIGKILL,
    )


def _wait_ready(
    proc: subprocess.Popen[bytes],
    log: Path,
    ready: Callable[[], bool],
    what: str,
    timeout: float,
    tick: Callable[[], None] | None = None,
) -> None:
    """Until ``ready()``; if ``proc`` exits or ``timeout`` passes first, stop it and raise
    with the end of its log."""
    deadline = time.time() + timeout
    while not ready():
        problem = None
        if proc.poll() is not None:
            problem = f"{what} exited ({proc.returncode})"
        elif time.time() > deadline:
            problem = f"{what} was not ready in {timeout:.0f} s"
        if problem:
            stop(proc)
            tail = log.read_text()[-4000:] if log.exists() else ""
            raise RuntimeError(f"{problem}; end of {log}:\n{tail}")
        if tick is not None:
            tick()
        time.sleep(0.2)
