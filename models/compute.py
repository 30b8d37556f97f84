"""How much of the machine one thread of model work may take.

A worker predicts, refits heads and trains LoRA in threads of its own, on a machine whose
cores they share. Left alone, each thread's torch ops use one OpenMP thread per core, so
a consolidation and a micro-batch of answers fight for the same cores (and the cache) and
every answer waits. :func:`limit_this_thread` gives a thread its own torch thread count
(OpenMP's count is per calling thread) and, on Linux, a niceness (also per thread): the
kernel then runs learning only on what serving leaves.

>>> import threading, torch
>>> before, seen = torch.get_num_threads(), []
>>> def learner() -> None:
...     limit_this_thread(torch_threads=1, nice=5)
...     seen.append(torch.get_num_threads())
>>> t = threading.Thread(target=learner); t.start(); t.join()
>>> seen, torch.get_num_threads() == before  # the calling thread keeps its own
([1], True)
>>> torch.set_num_threads(before)  # (threads started later take the last value set)
"""

from __future__ import annotations

import contextlib
import os
import threading
from collections.abc import Callable

import torch

from models.options import PRECISIONS


def serving_threads(requested: int) -> int:
    """Torch threads of the serving thread: ``requested``, or for 0 every core but one
    (at least one). The core left over runs the event loop, the broker client and, on a
    small box, the broker: OpenMP threads wait for each other at every op, so one of
    them descheduled stalls them all (2-core CPU, ``ecc bench serving --quick`` at ~107
    turns/s: p50 / p99 67 / 121 ms with one thread, at 88/s 162 / 460 ms with two).

    >>> serving_threads(3)
    3
    >>> serving_threads(0) == max(1, (os.cpu_count() or 1) - 1)
    True
    """
    return requested or max(1, (os.cpu_count() or 1) - 1)


def limit_this_thread(torch_threads: int, nice: int = 0) -> None:
    """Torch ops started from the calling thread use ``torch_threads`` threads (0: one per
    core); on Linux the thread's niceness goes up by ``nice`` (lowering it would need
    privileges, so a negative value is refused)."""
    if nice < 0:
        raise ValueError(f"nice={nice}: a thread can only be made nicer (0 or more)")
    torch.set_num_threads(torch_threads or os.cpu_count() or 1)
    if nice and hasattr(os, "setpriority"):
        tid = threading.get_native_id()  # Linux: a thread's id is its own scheduling entity
        os.setpriority(os.PRIO_PROCESS, tid, os.getpriority(os.PRIO_PROCESS, tid) + nice)


def resolve_precision(name: str) -> torch.dtype:
    """The dtype that ``name`` (one of :data:`PRECISIONS`) means on this machine for the
    end model's forward passes: ``auto`` is bfloat16 only where oneDNN runs it natively
    (emulated bf16 is slower than float32).

    >>> resolve_precision("float32")
    torch.float32
    >>> resolve_precision("auto") in (torch.bfloat16, torch.float32)
    True
    """
    if name not in PRECISIONS:
        raise ValueError(f"precision {name!r}: choose one of {', '.join(PRECISIONS)}")
    if name == "auto":
        native = (
            torch.backends.mkldnn.is_available() and torch.ops.mkldnn._is_mkldnn_bf16_supported()
        )
        return torch.bfloat16 if native else torch.float32
    return torch.bfloat16 if name == "bfloat16" else torch.float32


def autocast(dtype: torch.dtype) -> Callable[[], contextlib.AbstractContextManager[object]]:
    """A factory of contexts that run CPU ops in ``dtype`` where autocast allows it (matrix
    products; reductions and norms stay float32); float32 is no autocast at all."""
    if dtype == torch.float32:
        return contextlib.nullcontext
    return lambda: torch.autocast("cpu", dtype=dtype)


def store_frozen_linears(module: torch.nn.Module, dtype: torch.dtype) -> None:
    """Keep the weights of ``module``'s frozen ``Linear`` layers in ``dtype``, once, so
    that :func:`autocast` does not cast them again at every forward pass (for one
    utterance, about a fifth of its time). Trainable layers (LoRA) stay float32;
    float32 leaves everything as it is."""
    if dtype == torch.float32:
        return
    for layer in module.modules():
        if isinstance(layer, torch.nn.Linear) and not layer.weight.requires_grad:
            layer.to(dtype)
