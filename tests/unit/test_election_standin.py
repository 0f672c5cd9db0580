"""LeaseElector against the API stand-in over HTTP: exclusivity, clean and fenced failover, races, scale."""

from __future__ import annotations

import asyncio
import re
from collections.abc import Callable
from typing import Any

from lightkube import AsyncClient
from standin_electors import FakeClock, WriteLandsFirst, running, standin_fixtures

from kvip.core.model import ServiceKey
from kvip.kube.election import (
    LeaseElector,
    LeaseKey,
    LeaseTiming,
    micro_time,
    service_lease_key,
)
from kvip.lab.apiserver import StandIn

FAST = LeaseTiming(lease_duration=1.5, renew_deadline=1.0, retry_period=0.2)
KEY = LeaseKey("kube-system", "plndr-svcs-lock")
LEASE_VERBS = ("get", "list", "create", "update", "patch")
TOKENS = {"token-a": "node-a", "token-b": "node-b"}


api, clients = standin_fixtures(TOKENS)  # the stand-in, and a client per node speaking with its token


async def until(predicate: Callable[[], bool], timeout: float = 5.0) -> float:
    loop = asyncio.get_running_loop()
    start = loop.time()
    while not predicate():
        if loop.time() - start > timeout:
            raise AssertionError(f"condition not reached within {timeout}s")
        await asyncio.sleep(0.005)
    return loop.time() - start


async def track(elector: LeaseElector, stop: Callable[[], bool], timeout: float) -> list[tuple[float, bool]]:
    """Poll `elector.held()` until `stop()`: (time read just before the call, held?) pairs. The time is
    read first, so a lease seen held at t was held at some instant at or after t."""
    loop = asyncio.get_running_loop()
    polls: list[tuple[float, bool]] = []
    deadline = loop.time() + timeout
    while not stop():
        assert loop.time() < deadline, f"condition not reached within {timeout}s"
        now = loop.time()
        polls.append((now, bool(elector.held())))
        await asyncio.sleep(0.005)
    return polls


def contender(clients: Callable[[str], AsyncClient], name: str, *, want: bool = True) -> LeaseElector:
    """An elector for `name` with the fast timing, wanting the one test Lease unless told not to."""
    elector = LeaseElector(clients(name), identity=name, timing=FAST, on_change=lambda: None)
    if want:
        elector.want([KEY])
    return elector


def holder_of(api: StandIn, key: LeaseKey = KEY) -> str | None:
    return api.get("leases", key.name, key.namespace)["spec"].get("holderIdentity")


async def test_two_nodes_contending_for_one_lease_never_both_hold_it(
        clients: Callable[[str], AsyncClient], api: StandIn) -> None:
    a, b = contender(clients, "node-a"), contender(clients, "node-b")
    async with running(a, b):
        await until(lambda: bool(a.held() or b.held()))
        for _ in range(100):  # 2 s: many renewals and lease durations
            assert len([e for e in (a, b) if e.held()]) == 1
            await asyncio.sleep(0.02)
        leader = a if a.held() else b
        assert holder_of(api) == leader.identity


async def test_the_lease_is_written_the_way_kube_vip_and_client_go_read_it(
        clients: Callable[[str], AsyncClient], api: StandIn) -> None:
    a = contender(clients, "node-a")
    async with running(a):
        await until(lambda: bool(a.held()))
    spec = api.get("leases", KEY.name, KEY.namespace)["spec"]
    micro = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z$")
    assert spec["holderIdentity"] == "node-a"
    assert spec["leaseDurationSeconds"] == 2  # 1.5 s rounded up, never down
    assert micro.match(spec["renewTime"]) and micro.match(spec["acquireTime"])
    assert spec["leaseTransitions"] == 0


async def test_clean_stop_hands_the_lease_over_on_the_next_cycle_without_waiting_out_the_lease(
        clients: Callable[[str], AsyncClient], api: StandIn) -> None:
    clock = FakeClock()  # no time passes between release and takeover: the lease is free at once
    a = LeaseElector(clients("node-a"), identity="node-a", timing=FAST, on_change=lambda: None, clock=clock)
    b = LeaseElector(clients("node-b"), identity="node-b", timing=FAST, on_change=lambda: None, clock=clock)
    a.want([KEY])
    await a.cycle()
    clock.now += 2 * FAST.retry_period  # past the spread delay
    await a.cycle()
    assert a.held() == {KEY}
    b.want([KEY])
    await b.cycle()
    assert not b.held()  # a holds it, and its lease has not run out
    await a.release_all()
    assert not a.held()
    await b.cycle()
    assert b.held() == {KEY} and holder_of(api) == "node-b"
    assert api.get("leases", KEY.name, KEY.namespace)["spec"]["leaseTransitions"] == 1


async def test_holder_cut_off_from_leases_fences_itself_before_the_other_can_acquire(
        clients: Callable[[str], AsyncClient], api: StandIn) -> None:
    a_told: list[float] = []
    loop = asyncio.get_running_loop()
    a = LeaseElector(clients("node-a"), identity="node-a", timing=FAST,
                     on_change=lambda: a_told.append(loop.time()))
    b = contender(clients, "node-b", want=False)
    a.want([KEY])
    async with running(a):
        await until(lambda: bool(a.held()))
        b.want([KEY])
        async with running(b):
            await asyncio.sleep(0.5)
            api.deny("leases", LEASE_VERBS, user="node-a")
            denied_at = loop.time()
            b_won: list[float] = []

            def b_holds() -> bool:
                assert not (a.held() and b.held()), "two holders at once"
                if b.held():
                    b_won.append(loop.time())
                return bool(b_won)

            polls = await track(a, b_holds, timeout=3 * FAST.lease_duration)
    last_renewal = a.status()[KEY].renewed_at
    assert last_renewal is not None and last_renewal <= denied_at  # nothing got through the deny
    fence_end = last_renewal + FAST.renew_deadline
    # The guarantees, free of scheduling delays: held only before its fence, ...
    assert all(t < fence_end for t, held in polls if held)
    assert any(not held for _, held in polls)
    # ... the rival only after a full lease since that last renewal, ...
    assert b_won[0] >= last_renewal + FAST.lease_duration
    # ... and the agent told by time alone (its requests only fail) after the fence, before the rival won.
    assert any(fence_end <= t < b_won[0] for t in a_told), (fence_end, b_won[0], a_told)


async def test_holder_that_can_still_renew_but_not_list_keeps_the_lease(
        clients: Callable[[str], AsyncClient], api: StandIn) -> None:
    # A blind renewal is safe: the resourceVersion we last wrote only matches if nobody else wrote.
    a = contender(clients, "node-a")
    async with running(a):
        await until(lambda: bool(a.held()))
        api.deny("leases", ("list",), user="node-a")
        await asyncio.sleep(3 * FAST.renew_deadline)
        assert a.held() == {KEY}


async def test_holder_whose_requests_hang_fences_itself_by_time_alone_and_recovers(
        clients: Callable[[str], AsyncClient], api: StandIn) -> None:
    loop = asyncio.get_running_loop()
    told: list[float] = []
    a = LeaseElector(clients("node-a"), identity="node-a", timing=FAST, on_change=lambda: told.append(loop.time()))
    a.want([KEY])
    hang = 3 * FAST.renew_deadline  # every request now outlives the renew deadline by far
    async with running(a):
        await until(lambda: bool(a.held()))
        api.set_latency(hang)
        hung_at = loop.time()
        polls = await track(a, lambda: not a.held(), timeout=hang)
        lost_at = loop.time()
        last_renewal = a.status()[KEY].renewed_at
        api.set_latency(0)
        await until(lambda: bool(a.held()), timeout=2 * hang)
    assert last_renewal is not None and last_renewal <= hung_at
    fence_end = last_renewal + FAST.renew_deadline
    assert all(t < fence_end for t, held in polls if held)  # never held past its fence
    assert lost_at < hung_at + hang  # dropped while every request still hangs
    assert any(fence_end <= t < hung_at + hang for t in told), (fence_end, hung_at, told)  # and told then


async def test_one_failed_renewal_does_not_drop_leadership_before_the_deadline(
        clients: Callable[[str], AsyncClient], api: StandIn) -> None:
    clock = FakeClock()
    a = LeaseElector(clients("node-a"), identity="node-a", timing=FAST, on_change=lambda: None, clock=clock)
    a.want([KEY])
    await a.cycle()
    clock.now += 2 * FAST.retry_period  # past the spread delay
    await a.cycle()
    assert a.held() == {KEY}
    clock.now += FAST.renew_after + 0.01
    api.deny("leases", ("update",), user="node-a")
    await a.cycle()  # 403 on the renewal: a blip, not a lost lease
    assert a.held() == {KEY}
    api.allow("leases", ("update",), user="node-a")
    clock.now += FAST.retry_period
    await a.cycle()
    assert a.held() == {KEY}
    clock.now += FAST.renew_deadline - 0.01  # renewed one period late, and counted from then
    assert a.held() == {KEY}


class RivalWritesFirst(WriteLandsFirst):
    """Our client, except that a rival's takeover reaches the server between our read and our PUT."""

    key = KEY

    def edit(self, lease: dict[str, Any]) -> None:
        lease["spec"].update(holderIdentity="node-z", renewTime=micro_time(), leaseDurationSeconds=1)


async def test_a_renewal_that_loses_a_race_drops_the_lease_and_waits_out_the_winners_term(
        clients: Callable[[str], AsyncClient], api: StandIn) -> None:
    clock = FakeClock()
    racing = RivalWritesFirst(clients("node-a"), api)
    a = LeaseElector(racing, identity="node-a", timing=FAST, on_change=lambda: None,  # type: ignore[arg-type]
                     clock=clock)
    a.want([KEY])
    await a.cycle()  # sees no lease: waits out this node's spread delay before creating it
    assert a.held() == frozenset()
    clock.now += 2 * FAST.retry_period
    await a.cycle()
    assert a.held() == {KEY}

    clock.now += FAST.renew_after + 0.01
    racing.armed = True
    await a.cycle()  # our renewal meets 409 Conflict
    assert a.held() == frozenset()
    assert holder_of(api) == "node-z"

    await a.cycle()  # we see node-z as holder from now on (its renewTime is not trusted)
    clock.now += FAST.lease_duration - 0.01
    await a.cycle()  # node-z never renews; its term (never shorter than ours) counts from our sighting
    assert holder_of(api) == "node-z"
    clock.now += 0.02
    await a.cycle()
    assert holder_of(api) == "node-a" and a.held() == {KEY}
    assert a.status()[KEY].transitions == 2


async def test_unwanted_lease_is_released_at_once_and_the_other_node_takes_it(
        clients: Callable[[str], AsyncClient], api: StandIn) -> None:
    clock = FakeClock()
    a = LeaseElector(clients("node-a"), identity="node-a", timing=FAST, on_change=lambda: None, clock=clock)
    b = LeaseElector(clients("node-b"), identity="node-b", timing=FAST, on_change=lambda: None, clock=clock)
    for elector in (a, b):
        elector.want([KEY])
        await elector.cycle()
    clock.now += 2 * FAST.retry_period  # past both spread delays
    for elector in (a, b):
        await elector.cycle()
    leader, other = (a, b) if a.held() else (b, a)
    assert leader.held() == {KEY} and not other.held()
    leader.want([])
    assert not leader.held()  # at once, before any request
    await leader.cycle()  # the release goes out on the next cycle ...
    assert holder_of(api) is None
    await other.cycle()  # ... and the other node takes it on its next, no lease expiry waited out
    assert other.held() == {KEY} and holder_of(api) == other.identity


async def test_two_hundred_service_leases_are_all_held_within_two_cycles_at_a_fraction_of_naive_cost(
        clients: Callable[[str], AsyncClient], api: StandIn) -> None:
    # Counted in cycles and requests on a fake clock: how fast 400 renewals/s run on this shared machine
    # is the benchmark's business (bench_election.py), not a pass/fail line.
    timing = LeaseTiming(lease_duration=6, renew_deadline=4, retry_period=0.5)
    clock = FakeClock()
    a = LeaseElector(clients("node-a"), identity="node-a", timing=timing, on_change=lambda: None, clock=clock)
    keys = [service_lease_key(ServiceKey("default", f"svc-{i}")) for i in range(200)]
    a.want(keys)
    await a.cycle()  # sees none of them: each waits out its own spread delay (alone in a burst of 200:
    clock.now += 3 * timing.retry_period  # at most log8(200) = 2.5 periods, see spread_delay)
    await a.cycle()
    assert len(a.held()) == 200
    before = api.requests_served
    for _ in range(10):
        clock.now += timing.retry_period
        await a.cycle()
    per_period = len(api.request_log(after=before)) / 10
    assert len(a.held()) == 200
    naive = 2 * 200  # one GET and one PUT per lease per retry period
    assert per_period < naive / 3, per_period
    assert {holder_of(api, k) for k in keys} == {"node-a"}
