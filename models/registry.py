"""Adapter registry on local disk: one directory per version, atomic, checksummed.

Layout (the same under an object-store prefix for a fleet)::

    <root>/<node_id>/v000003/adapter.safetensors   LoRA weights and intent head
    <root>/<node_id>/v000003/manifest.json         labels, parent, metrics, sha256, ...
    <root>/<node_id>/CURRENT                       the serving version number

A version is written into a temporary directory and renamed into place, and ``CURRENT`` is
replaced by an atomic rename too, so a crash mid-write never leaves a version that loads
half-written. Weights are safetensors only (no pickle), and loading verifies the sha256
recorded in the manifest, so a tampered or truncated file is refused.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file

from models.options import KEEP_VERSIONS

WEIGHTS = "adapter.safetensors"
MANIFEST = "manifest.json"
CURRENT = "CURRENT"
FORMAT = 1
FLEET_ID = "_fleet"
"""The registry's folder of fleet priors (:mod:`learners.fleet`): a node id cannot start
with ``_``, so it never names a node, and :meth:`AdapterRegistry.nodes` leaves it out."""


class CorruptAdapterError(ValueError):
    """A version whose files do not match its manifest (tampered, truncated, missing)."""


@dataclass(frozen=True)
class VersionInfo:
    node_id: str
    version: int
    labels: list[str]
    parent: int | None
    base_model: str
    sha256: str
    created_at: str
    path: Path
    metrics: dict[str, float] = field(default_factory=dict)
    extra: dict[str, Any] = field(default_factory=dict)
    is_current: bool = False


def _dir_name(version: int) -> str:
    return f"v{version:06d}"


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _write_atomic(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex}")
    with open(tmp, "w") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


class AdapterRegistry:
    """Versions of every node's adapter under ``root``; keeps the last ``keep_last``.

    >>> import tempfile, torch
    >>> reg = AdapterRegistry(Path(tempfile.mkdtemp()), keep_last=3)
    >>> tensors = {"head.weight": torch.zeros(2, 4), "head.bias": torch.zeros(2)}
    >>> v1 = reg.publish("store-1", tensors, ["a", "b"], "tiny", parent=None)
    >>> v2 = reg.publish("store-1", tensors, ["a", "b"], "tiny", parent=1)
    >>> reg.current("store-1").version, [v.version for v in reg.versions("store-1")]
    (2, [1, 2])
    >>> reg.rollback("store-1").version
    1
    """

    def __init__(self, root: str | Path, keep_last: int = KEEP_VERSIONS) -> None:
        if keep_last < 1:
            raise ValueError("keep_last must be >= 1")
        self.root = Path(root)
        self.keep_last = keep_last
        self._lock = threading.Lock()

    # --- reading ----------------------------------------------------------------------------
    def nodes(self) -> list[str]:
        if not self.root.exists():
            return []
        return sorted(
            p.name
            for p in self.root.iterdir()
            if p.is_dir() and not p.name.startswith("_") and (p / CURRENT).exists()
        )

    def _current_number(self, node_id: str) -> int | None:
        try:
            return int((self.root / node_id / CURRENT).read_text().strip())
        except (FileNotFoundError, ValueError):
            return None

    def get(self, node_id: str, version: int) -> VersionInfo | None:
        folder = self.root / node_id / _dir_name(version)
        try:
            manifest = json.loads((folder / MANIFEST).read_text())
        except (FileNotFoundError, json.JSONDecodeError):
            return None
        return VersionInfo(
            node_id=node_id,
            version=int(manifest["version"]),
            labels=list(manifest["labels"]),
            parent=manifest.get("parent"),
            base_model=str(manifest.get("base_model", "")),
            sha256=str(manifest["sha256"]),
            created_at=str(manifest.get("created_at", "")),
            path=folder,
            metrics=dict(manifest.get("metrics", {})),
            extra=dict(manifest.get("extra", {})),
            is_current=self._current_number(node_id) == version,
        )

    def _numbers(self, node_id: str) -> list[int]:
        """Version numbers on disk, from the folder names alone (no manifest is read)."""
        folder = self.root / node_id
        if not folder.exists():
            return []
        return sorted(
            int(p.name[1:]) for p in folder.iterdir() if p.name.startswith("v") and p.is_dir()
        )

    def versions(self, node_id: str) -> list[VersionInfo]:
        return [v for n in self._numbers(node_id) if (v := self.get(node_id, n)) is not None]

    def current(self, node_id: str) -> VersionInfo | None:
        number = self._current_number(node_id)
        return self.get(node_id, number) if number is not None else None

    def load(self, node_id: str, version: int) -> tuple[VersionInfo, dict[str, torch.Tensor]]:
        """A version's manifest and tensors, after checking the weights' sha256."""
        info = self.get(node_id, version)
        if info is None:
            raise LookupError(f"node {node_id!r} has no version {version} in {self.root}")
        weights = info.path / WEIGHTS
        if not weights.exists():
            raise CorruptAdapterError(f"{weights} is missing")
        digest = _sha256(weights)
        if digest != info.sha256:
            raise CorruptAdapterError(
                f"{weights}: sha256 {digest[:12]}... does not match the manifest's "
                f"{info.sha256[:12]}...; refusing to load it"
            )
        return info, load_file(str(weights))

    # --- writing ----------------------------------------------------------------------------
    def publish(
        self,
        node_id: str,
        tensors: dict[str, torch.Tensor],
        labels: list[str],
        base_model: str,
        parent: int | None,
        metrics: dict[str, float] | None = None,
        extra: dict[str, Any] | None = None,
        make_current: bool = True,
    ) -> VersionInfo:
        """Write a new version atomically and (by default) make it the serving one."""
        node_dir = self.root / node_id
        node_dir.mkdir(parents=True, exist_ok=True)
        with self._lock:
            tmp = node_dir / f".tmp-{uuid.uuid4().hex}"
            tmp.mkdir()
            try:
                weights = tmp / WEIGHTS
                save_file({k: v.detach().contiguous().cpu() for k, v in tensors.items()}, weights)
                existing = self._numbers(node_id)
                version = max([0, *existing, self._current_number(node_id) or 0]) + 1
                manifest = {
                    "format": FORMAT,
                    "node_id": node_id,
                    "version": version,
                    "parent": parent,
                    "labels": list(labels),
                    "base_model": base_model,
                    "sha256": _sha256(weights),
                    "created_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                    "metrics": metrics or {},
                    "extra": extra or {},
                }
                _write_atomic(tmp / MANIFEST, json.dumps(manifest, indent=2, sort_keys=True))
                os.rename(tmp, node_dir / _dir_name(version))
            except BaseException:
                shutil.rmtree(tmp, ignore_errors=True)
                raise
            if make_current:
                _write_atomic(node_dir / CURRENT, str(version))
            self._prune(node_id)
        info = self.get(node_id, version)
        assert info is not None
        return info

    def rollback(self, node_id: str, version: int | None = None) -> VersionInfo:
        """Serve ``version`` (default: the serving version's parent) again."""
        current = self.current(node_id)
        if current is None:
            raise LookupError(f"node {node_id!r} has no versions in {self.root}")
        target = version if version is not None else current.parent
        if target is None:
            raise ValueError(f"v{current.version} of {node_id!r} has no parent to roll back to")
        self.load(node_id, target)  # refuses a missing or corrupt version
        _write_atomic(self.root / node_id / CURRENT, str(target))
        info = self.get(node_id, target)
        assert info is not None
        return info

    def _prune(self, node_id: str) -> None:
        current = self._current_number(node_id)
        versions = self._numbers(node_id)
        node_dir = self.root / node_id
        for old in versions[: max(0, len(versions) - self.keep_last)]:
            if old != current:
                # Rename first (atomic), delete after: a crash mid-delete must not leave a
                # listed version whose manifest survived its weights.
                trash = node_dir / f".trash-{uuid.uuid4().hex}"
                with contextlib.suppress(OSError):
                    os.rename(node_dir / _dir_name(old), trash)
                    shutil.rmtree(trash, ignore_errors=True)
        for leftover in node_dir.glob(".trash-*"):
            shutil.rmtree(leftover, ignore_errors=True)
        for leftover in node_dir.glob(".tmp-*"):
            with contextlib.suppress(OSError):
                if time.time() - leftover.stat().st_mtime > 3600:
                    shutil.rmtree(leftover, ignore_errors=True)
