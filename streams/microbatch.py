"""Micro-batches of what is waiting, and no wait for more.

Serving takes everything queued, up to ``max_batch``, the moment the model is free: a lone
turn on an idle node is predicted at once (a timed window would hold it for the window),
and under load the batch grows by itself with whatever arrived during the previous
forward pass. ``max_waiting`` bounds the queue, so a slow model pushes back on the
consumer instead of buffering without end.

>>> import asyncio
>>> async def demo() -> list[list[int]]:
...     batches = MicroBatches[int](max_batch=3, max_waiting=8)
...     for i in range(5):
...         await batches.put(i)
...     return [await batches.take(), await batches.take()]
>>> asyncio.run(demo())
[[0, 1, 2], [3, 4]]
"""

from __future__ import annotations

import asyncio
from typing import Generic, TypeVar

T = TypeVar("T")


class MicroBatches(Generic[T]):
    def __init__(self, max_batch: int, max_waiting: int) -> None:
        if max_batch < 1 or max_waiting < max_batch:
            raise ValueError("need 1 <= max_batch <= max_waiting")
        self.max_batch = max_batch
        self._queue: asyncio.Queue[T] = asyncio.Queue(max_waiting)

    async def put(self, item: T) -> None:
        """Queue ``item``; waits while ``max_waiting`` items are queued."""
        await self._queue.put(item)

    async def take(self) -> list[T]:
        """The queued items (at least one: waits for it), at most ``max_batch``."""
        batch = [await self._queue.get()]
        while len(batch) < self.max_batch and not self._queue.empty():
            batch.append(self._queue.get_nowait())
        return batch

    def __len__(self) -> int:
        return self._queue.qsize()
