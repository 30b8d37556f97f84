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

import os
import threading

import torch


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
