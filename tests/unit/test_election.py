"""LeaseElector against the API stand-in over HTTP: exclusivity, failover, fencing, scale."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
from lightkube import AsyncClient, KubeConfig

from kvip.kube.election import ElectionConfigError, LeaseElector, LeaseKey, LeaseTiming, service_lease_key
from kvip.lab.apiserver import StandIn
from kvip.lab.objects import namespace
from kvip.model import ServiceKey

FAST = LeaseTiming(lease_duration=1.5, renew_deadline=1.0, retry_period=0.2)
KEY = LeaseKey("kube-system", "plndr-svcs-lock")


@pytest.fixture
async def api() -> AsyncIterator[StandIn]:
    standin = StandIn(tokens={"ta": "node-a", "tb": "node-b"})
    await standin.start()
    for ns in ("default", "kube-system"):
        standin.create(namespace(ns))
    try:
        yield standin
    finally:
        await standin.stop()


def elector(api: StandIn, name: str, timing: LeaseTiming = FAST) -> tuple[LeaseElector, asyncio.Event]:
    client = AsyncClient(config=KubeConfig.from_dict(api.kubeconfig(token=f"t{name[-1]}")))
    changed = asyncio.Event()
    return LeaseElector(client, identity=name, timing=timing, on_change=changed.set), changed


async def until(predicate, timeout: float = 5.0) -> float:  # type: ignore[no-untyped-def]
    loop = asyncio.get_running_loop()
    start = loop.time()
    while not predicate():
        if loop.time() - start > timeout:
            raise AssertionError("condition not reached")
        await asyncio.sleep(0.01)
    return loop.time() - start


def test_timing_must_fence_before_anyone_else_can_acquire() -> None:
    LeaseTiming(15, 10, 2)
    for bad in ((10, 10, 2), (15, 10, 10), (15, 20, 2), (15, 10, 0)):
        with pytest.raises(ElectionConfigError):
            LeaseTiming(*bad)


def test_service_lease_name_is_kube_vip_compatible() -> None:
    assert service_lease_key(ServiceKey("shop", "web")) == LeaseKey("shop", "kubevip-web")


async def test_two_electors_one_lease_exactly_one_holds(api: StandIn) -> None:
    (a, _), (b, _) = elector(api, "node-a"), elector(api, "node-b")
    a.want([KEY])
    b.want([KEY])
    tasks = [asyncio.create_task(a.run()), asyncio.create_task(b.run())]
    try:
        await until(lambda: bool(a.held() or b.held()))
        for _ in range(30):
            assert not (a.held() and b.held())
            await asyncio.sleep(0.05)
        holder = "node-a" if a.held() else "node-b"
        assert api.get("leases", KEY.name, KEY.namespace)["spec"]["holderIdentity"] == holder
    finally:
        for t in tasks:
            t.cancel()


async def test_clean_release_hands_over_within_one_retry_period(api: StandIn) -> None:
    (a, _), (b, _) = elector(api, "node-a"), elector(api, "node-b")
    a.want([KEY])
    ta = asyncio.create_task(a.run())
    await until(lambda: bool(a.held()))
    b.want([KEY])
    tb = asyncio.create_task(b.run())
    try:
        await asyncio.sleep(0.5)
        assert not b.held()
        ta.cancel()
        await a.release_all()
        assert not a.held()
        took = await until(lambda: bool(b.held()), timeout=3)
        assert took < FAST.retry_period * 3
    finally:
        tb.cancel()


async def test_partitioned_holder_fences_itself_before_the_other_can_acquire(api: StandIn) -> None:
    (a, a_changed), (b, _) = elector(api, "node-a"), elector(api, "node-b")
    a.want([KEY])
    ta = asyncio.create_task(a.run())
    await until(lambda: bool(a.held()))
    b.want([KEY])
    tb = asyncio.create_task(b.run())
    try:
        await asyncio.sleep(0.3)
        a_changed.clear()
        api.deny("leases", ("get", "list", "create", "update", "patch"), user="node-a")
        loop = asyncio.get_running_loop()
        lost_at = acquired_at = None
        start = loop.time()
        while acquired_at is None and loop.time() - start < 6:
            if lost_at is None and not a.held():
                lost_at = loop.time()
            if b.held():
                acquired_at = loop.time()
            assert not (a.held() and b.held()), "two holders at once"
            await asyncio.sleep(0.01)
        assert lost_at is not None and acquired_at is not None and lost_at < acquired_at
        assert a_changed.is_set()  # the agent was told, by time alone
    finally:
        ta.cancel()
        tb.cancel()


async def test_unwanted_lease_is_released_at_once(api: StandIn) -> None:
    (a, _), (b, _) = elector(api, "node-a"), elector(api, "node-b")
    a.want([KEY])
    b.want([KEY])
    tasks = [asyncio.create_task(a.run()), asyncio.create_task(b.run())]
    try:
        await until(lambda: bool(a.held() or b.held()))
        holder, other = (a, b) if a.held() else (b, a)
        holder.want([])
        assert not holder.held()
        await until(lambda: bool(other.held()), timeout=2)
    finally:
        for t in tasks:
            t.cancel()


async def test_two_hundred_leases_are_all_held_and_renewals_stay_cheap(api: StandIn) -> None:
    a, _ = elector(api, "node-a")
    keys = [service_lease_key(ServiceKey("default", f"svc-{i}")) for i in range(200)]
    a.want(keys)
    task = asyncio.create_task(a.run())
    try:
        await until(lambda: len(a.held()) == 200, timeout=10)
        before = a.requests
        await asyncio.sleep(2.0)
        per_second = (a.requests - before) / 2.0
        # Naive: one GET and one PUT per lease per retry period = 2 * 200 / 0.2 = 2,000/s.
        assert per_second < 2 * 200 / FAST.retry_period / 2
        assert len(a.held()) == 200
    finally:
        task.cancel()
