"""The reconcile loop against an in-memory dataplane: level-triggered diff, coalescing, retries.

The kernel-backed version of every behaviour here is proven in tests/e2e; these pin the loop's
own rules where a real dataplane would make failures hard to provoke.
"""

from __future__ import annotations

import asyncio
import ipaddress
from collections.abc import AsyncIterator

import pytest

from kvip.core.model import Advertisement, DesiredState, IPAddress, ServiceKey
from kvip.dataplane.base import ApplyError, DataplaneBase
from kvip.reconcile import Reconciler
from kvip.runtime.tasks import Trigger

WEB = ServiceKey("default", "web")


def state(*vips: str) -> DesiredState:
    return DesiredState(
        advertisements={
            ipaddress.ip_address(v): Advertisement(ipaddress.ip_address(v), frozenset({WEB})) for v in vips
        }
    )


class MemoryDataplane(DataplaneBase):
    """Holds strings; can be told to fail some of them, like a kernel refusing a route."""

    name = "memory"

    def __init__(self, held: set[str] | None = None) -> None:
        self.held: set[str] = set(held or ())
        self.refuse: set[str] = set()
        self.apply_calls: list[tuple[frozenset[str], frozenset[str]]] = []
        self.hints: asyncio.Queue[None] = asyncio.Queue()

    def desired(self, s: DesiredState) -> frozenset[str]:
        return frozenset(str(v) for v in s.advertisements)

    async def observe(self) -> frozenset[str]:
        return frozenset(self.held)

    async def apply(self, add: frozenset[str], remove: frozenset[str]) -> None:
        self.apply_calls.append((add, remove))
        failed = {item: "refused" for item in add | remove if item in self.refuse}
        self.held |= add - failed.keys()
        self.held -= remove - failed.keys()
        if failed:
            raise ApplyError(failed)

    async def changes(self) -> AsyncIterator[None]:
        while True:
            yield await self.hints.get()

    def vip_of(self, item: str) -> IPAddress:
        return ipaddress.ip_address(item)


async def test_pass_adds_missing_and_removes_stale_owned_items() -> None:
    plane = MemoryDataplane(held={"192.0.2.9"})
    reconciler = Reconciler(compute=lambda: state("192.0.2.1"), backends=[plane], trigger=Trigger())
    result = await reconciler.reconcile_once()
    assert plane.held == {"192.0.2.1"}
    assert result is not None and result.changed and result.failed == 0


async def test_pass_with_nothing_to_change_does_not_touch_the_dataplane() -> None:
    plane = MemoryDataplane(held={"192.0.2.1"})
    reconciler = Reconciler(compute=lambda: state("192.0.2.1"), backends=[plane], trigger=Trigger())
    result = await reconciler.reconcile_once()
    assert plane.apply_calls == []
    assert result is not None and not result.changed


async def test_unsynced_cache_leaves_dataplane_exactly_as_it_was() -> None:
    plane = MemoryDataplane(held={"192.0.2.1", "192.0.2.2"})
    reconciler = Reconciler(compute=lambda: None, backends=[plane], trigger=Trigger())
    assert await reconciler.reconcile_once() is None
    assert plane.held == {"192.0.2.1", "192.0.2.2"}


async def test_many_triggers_between_passes_coalesce_into_one_pass() -> None:
    trigger = Trigger()
    for i in range(100):
        trigger.fire("source:endpointslices" if i % 2 else "dataplane:routes")
    reasons = await trigger.wait()
    assert reasons == {"source:endpointslices": 50, "dataplane:routes": 50}
    with pytest.raises(TimeoutError):
        async with asyncio.timeout(0.05):
            await trigger.wait()


async def test_refused_item_is_retried_until_it_lands_and_others_are_applied_meanwhile() -> None:
    plane = MemoryDataplane()
    plane.refuse = {"192.0.2.2"}
    trigger = Trigger()
    reconciler = Reconciler(compute=lambda: state("192.0.2.1", "192.0.2.2"), backends=[plane], trigger=trigger)
    loop = asyncio.create_task(reconciler.run())
    try:
        async with asyncio.timeout(2):
            while "192.0.2.1" not in plane.held:
                await asyncio.sleep(0.01)
        assert "192.0.2.2" not in plane.held
        plane.refuse.clear()
        async with asyncio.timeout(5):
            while "192.0.2.2" not in plane.held:
                await asyncio.sleep(0.01)
    finally:
        loop.cancel()


async def test_dataplane_hint_triggers_a_pass_that_repairs_tampering() -> None:
    plane = MemoryDataplane()
    trigger = Trigger()
    reconciler = Reconciler(compute=lambda: state("192.0.2.1"), backends=[plane], trigger=trigger)
    tasks = [asyncio.create_task(reconciler.run()), asyncio.create_task(reconciler.watch_dataplane(plane))]
    try:
        async with asyncio.timeout(2):
            while plane.held != {"192.0.2.1"}:
                await asyncio.sleep(0.01)
        plane.held.clear()  # someone ran `ip route del`
        plane.held.add("192.0.2.77")  # and someone added a stale route with our protocol
        plane.hints.put_nowait(None)
        async with asyncio.timeout(2):
            while plane.held != {"192.0.2.1"}:
                await asyncio.sleep(0.01)
    finally:
        for task in tasks:
            task.cancel()


async def test_last_known_good_endpoint_is_reported_but_dropped_with_the_service() -> None:
    from kvip.core.model import ServiceDecision

    decisions = {WEB: ServiceDecision(WEB, (), True, True, "local endpoint", ("10.1.0.5",))}
    current = [DesiredState(advertisements={}, decisions=decisions)]
    reconciler = Reconciler(compute=lambda: current[0], backends=[MemoryDataplane()], trigger=Trigger())
    await reconciler.reconcile_once()
    assert reconciler.last_known_good_endpoint == {WEB: "10.1.0.5"}
    current[0] = DesiredState(advertisements={})
    await reconciler.reconcile_once()
    assert reconciler.last_known_good_endpoint == {}


async def test_withdraw_all_removes_every_owned_item() -> None:
    plane = MemoryDataplane(held={"192.0.2.1", "2001:db8::1"})
    reconciler = Reconciler(compute=lambda: state("192.0.2.1"), backends=[plane], trigger=Trigger())
    assert await reconciler.withdraw_all() == 2
    assert plane.held == set()


async def test_the_last_service_going_away_withdraws_its_vip() -> None:
    plane = MemoryDataplane()
    current = [state("192.0.2.1")]
    reconciler = Reconciler(compute=lambda: current[0], backends=[plane], trigger=Trigger())
    await reconciler.reconcile_once()
    assert plane.held == {"192.0.2.1"}
    current[0] = state()  # nothing is wanted any more: the route must go, not linger
    result = await reconciler.reconcile_once()
    assert plane.held == set()
    assert result is not None and result.held_vips == frozenset()


async def test_held_vips_count_failed_adds_as_missing_and_failed_removes_as_still_held() -> None:
    plane = MemoryDataplane(held={"192.0.2.9"})
    plane.refuse = {"192.0.2.2", "192.0.2.9"}
    reconciler = Reconciler(compute=lambda: state("192.0.2.1", "192.0.2.2"), backends=[plane], trigger=Trigger())
    result = await reconciler.reconcile_once()
    assert result is not None
    assert result.held_vips == {ipaddress.ip_address("192.0.2.1"), ipaddress.ip_address("192.0.2.9")}


async def test_the_first_synced_pass_freezes_the_long_lived_objects_out_of_the_collectors_sight() -> None:
    import gc

    gc.unfreeze()
    synced: list[bool] = [False]
    reconciler = Reconciler(compute=lambda: state("192.0.2.1") if synced[0] else None,
                            backends=[MemoryDataplane()], trigger=Trigger())
    running = asyncio.create_task(reconciler.run())
    try:
        await asyncio.sleep(0.05)
        assert gc.get_freeze_count() == 0  # a cache that never synced holds nothing worth freezing
        synced[0] = True
        reconciler.trigger.fire("source")
        async with asyncio.timeout(5):
            while reconciler.passes < 1:
                await asyncio.sleep(0.01)
        assert gc.get_freeze_count() > 0
    finally:
        running.cancel()
        await asyncio.gather(running, return_exceptions=True)
        gc.unfreeze()
