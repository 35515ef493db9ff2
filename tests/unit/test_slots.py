"""Slots: at most N holders in all and M per key; waiting, or refusing a key at once."""

from __future__ import annotations

import asyncio

import pytest

from aichat_backend.limits.slots import Slots, SlotsBusy

pytestmark = pytest.mark.timeout(10)


async def test_a_key_at_its_share_is_refused_at_once_or_waits() -> None:
    slots = Slots(total=None, per_key=1)
    async with slots.hold("alice", wait=5):
        with pytest.raises(SlotsBusy) as busy:
            async with slots.hold("alice", wait=5, key_waits=False):
                pass
        assert (busy.value.scope, busy.value.limit) == ("key", 1)
        with pytest.raises(SlotsBusy):
            async with slots.hold("alice", wait=0.05):  # waits, then gives up
                pass
        async with slots.hold("bob", wait=0):  # another key is not held back
            assert slots.held() == 2 and slots.held("bob") == 1
    assert slots.held() == 0 and slots.held("alice") == 0


async def test_a_waiter_gets_the_slot_freed_for_it() -> None:
    slots = Slots(total=1, per_key=None)
    order: list[str] = []
    first = slots.hold("a", wait=5)
    await first.__aenter__()

    async def second() -> None:
        async with slots.hold("b", wait=5):
            order.append("b in")

    waiter = asyncio.create_task(second())
    await asyncio.sleep(0)  # the waiter is queued behind the holder
    assert not waiter.done() and slots.held() == 1
    order.append("a out")
    await first.__aexit__(None, None, None)
    await waiter
    assert order == ["a out", "b in"] and slots.held() == 0


async def test_the_total_refuses_after_its_wait() -> None:
    slots = Slots(total=2, per_key=None)
    async with slots.hold("a", wait=0), slots.hold("b", wait=0):
        with pytest.raises(SlotsBusy) as busy:
            async with slots.hold("c", wait=0.01):
                pass
        assert (busy.value.scope, busy.value.limit) == ("total", 2)
