"""Serving's micro-batches: what is waiting, at once; backpressure when full."""

from __future__ import annotations

import asyncio

import pytest

from streams.microbatch import MicroBatches


def test_a_lone_item_is_taken_at_once_without_waiting_for_more() -> None:
    async def run() -> list[int]:
        batches = MicroBatches[int](max_batch=64, max_waiting=128)
        await batches.put(1)
        return await asyncio.wait_for(batches.take(), timeout=1)

    assert asyncio.run(run()) == [1]


def test_take_waits_for_the_first_item() -> None:
    async def run() -> list[int]:
        batches = MicroBatches[int](max_batch=4, max_waiting=8)
        taker = asyncio.create_task(batches.take())
        await asyncio.sleep(0.01)
        assert not taker.done()
        await batches.put(7)
        return await asyncio.wait_for(taker, timeout=1)

    assert asyncio.run(run()) == [7]


def test_a_full_queue_pushes_back_until_a_batch_is_taken() -> None:
    async def run() -> tuple[bool, bool, list[int]]:
        batches = MicroBatches[int](max_batch=2, max_waiting=2)
        await batches.put(1)
        await batches.put(2)
        blocked = asyncio.create_task(batches.put(3))
        await asyncio.sleep(0.01)
        was_blocked = not blocked.done()
        first = await batches.take()
        await asyncio.wait_for(blocked, timeout=1)
        return was_blocked, len(batches) == 1, first

    assert asyncio.run(run()) == (True, True, [1, 2])


def test_sizes_are_checked() -> None:
    with pytest.raises(ValueError):
        MicroBatches[int](max_batch=0, max_waiting=4)
    with pytest.raises(ValueError):
        MicroBatches[int](max_batch=8, max_waiting=4)
