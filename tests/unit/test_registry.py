"""Adapter registry: atomic versions, checksums, pruning, rollback."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

from models.registry import WEIGHTS, AdapterRegistry, CorruptAdapterError


def tensors(value: float = 0.0) -> dict[str, torch.Tensor]:
    return {"head.weight": torch.full((2, 4), value), "head.bias": torch.zeros(2)}


def test_publish_load_round_trip(tmp_path: Path) -> None:
    reg = AdapterRegistry(tmp_path)
    v = reg.publish("n1", tensors(1.5), ["a", "b"], "tiny", None, {"acc": 0.9}, {"why": "x"})
    assert (v.version, v.parent, v.labels, v.is_current) == (1, None, ["a", "b"], True)
    info, loaded = reg.load("n1", 1)
    assert torch.equal(loaded["head.weight"], tensors(1.5)["head.weight"])
    assert info.metrics == {"acc": 0.9} and info.extra == {"why": "x"}
    assert reg.nodes() == ["n1"]
    assert not list(tmp_path.rglob("*.pt")) and not list(tmp_path.rglob("*.bin"))


def test_a_tampered_file_is_refused(tmp_path: Path) -> None:
    reg = AdapterRegistry(tmp_path)
    v = reg.publish("n1", tensors(), ["a", "b"], "tiny", None)
    weights = v.path / WEIGHTS
    data = bytearray(weights.read_bytes())
    data[-1] ^= 0xFF
    weights.write_bytes(bytes(data))
    with pytest.raises(CorruptAdapterError, match="sha256"):
        reg.load("n1", 1)
    with pytest.raises(CorruptAdapterError):
        reg.rollback("n1", 1)


def test_a_half_written_version_never_shows(tmp_path: Path) -> None:
    reg = AdapterRegistry(tmp_path)
    reg.publish("n1", tensors(), ["a", "b"], "tiny", None)
    # what a crash mid-publish leaves behind: a temporary folder, never a version
    (tmp_path / "n1" / ".tmp-crashed").mkdir()
    (tmp_path / "n1" / ".tmp-crashed" / WEIGHTS).write_bytes(b"partial")
    assert [v.version for v in reg.versions("n1")] == [1]
    assert reg.publish("n1", tensors(), ["a", "b"], "tiny", 1).version == 2


def test_keeps_the_last_n_and_the_serving_one(tmp_path: Path) -> None:
    reg = AdapterRegistry(tmp_path, keep_last=2)
    for i in range(5):
        reg.publish("n1", tensors(i), ["a", "b"], "tiny", i or None)
    assert [v.version for v in reg.versions("n1")] == [4, 5]
    assert reg.current("n1").version == 5  # type: ignore[union-attr]


def test_rollback_to_parent_and_to_a_version(tmp_path: Path) -> None:
    reg = AdapterRegistry(tmp_path)
    reg.publish("n1", tensors(), ["a", "b"], "tiny", None)
    reg.publish("n1", tensors(), ["a", "b"], "tiny", 1)
    reg.publish("n1", tensors(), ["a", "b", "c"][:2], "tiny", 2)
    assert reg.rollback("n1").version == 2
    assert reg.rollback("n1", 3).version == 3
    assert reg.current("n1").version == 3  # type: ignore[union-attr]
    with pytest.raises(LookupError):
        reg.rollback("n1", 42)
    with pytest.raises(LookupError):
        reg.rollback("nobody")
    reg.rollback("n1", 1)
    with pytest.raises(ValueError, match="no parent"):
        reg.rollback("n1")


def test_current_pointer_is_replaced_atomically(tmp_path: Path) -> None:
    reg = AdapterRegistry(tmp_path)
    reg.publish("n1", tensors(), ["a", "b"], "tiny", None)
    reg.publish("n1", tensors(), ["a", "b"], "tiny", 1)
    leftovers = [p for p in os.listdir(tmp_path / "n1") if p.startswith(".")]
    assert leftovers == []


WRITER = """
import sys, torch
from models.registry import AdapterRegistry
reg = AdapterRegistry(sys.argv[1], keep_last=3)  # prunes on every publish
big = {"head.weight": torch.randn(2000, 2000), "head.bias": torch.zeros(2000)}
print("ready", flush=True)
while True:
    reg.publish("n1", big, [str(i) for i in range(2000)], "tiny", None)
"""


def test_a_writer_killed_mid_write_never_leaves_a_loadable_half_version(tmp_path: Path) -> None:
    """kill -9 a process while it publishes 16 MB versions, many times: every version the
    registry lists loads with a valid checksum (pruning included: it runs on every publish
    here), and CURRENT always points at one."""
    import random
    import signal
    import subprocess
    import sys
    import time

    rng = random.Random(0)
    for _ in range(8):
        proc = subprocess.Popen(
            [sys.executable, "-c", WRITER, str(tmp_path)], stdout=subprocess.PIPE, text=True
        )
        assert proc.stdout is not None and proc.stdout.readline().strip() == "ready"
        time.sleep(rng.uniform(0.05, 0.6))
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    reg = AdapterRegistry(tmp_path, keep_last=3)
    versions = reg.versions("n1")
    assert versions, "the writer never finished a version"
    for v in versions:
        _, loaded = reg.load("n1", v.version)
        assert loaded["head.weight"].shape == (2000, 2000)
    current = reg.current("n1")
    assert current is not None
    reg.load("n1", current.version)
