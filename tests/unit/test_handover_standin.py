"""kvip.io/preferred-nodes through real LeaseElectors and the API stand-in over HTTP: the preferred node asks
after its hold-down, the holder withdraws and hands the Lease over, nobody holds it twice; a preferred node
whose readiness flaps never asks; the VIP of a simulated dataplane is never on two nodes."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

from lightkube import AsyncClient
from standin_electors import FakeClock, WriteLandsFirst, standin_fixtures

from kvip.core.preference import HANDOVER_TO_ANNOTATION, HOLDER_SCORE_ANNOTATION, Rank
from kvip.kube.election import LeaseElector, LeaseKey, LeaseTiming
from kvip.lab.apiserver import StandIn

FAST = LeaseTiming(lease_duration=1.5, renew_deadline=1.0, retry_period=0.2)
HOLDDOWN = 0.6
KEY = LeaseKey("default", "kubevip-web")
TOKENS = {"token-a": "node-a", "token-b": "node-b", "token-c": "node-c"}
PREFERRED, PLAIN = Rank(100, 100), Rank(0, 100)


api, clients = standin_fixtures(TOKENS)  # the stand-in, and a client per node speaking with its token


def lease(api: StandIn) -> dict:  # type: ignore[type-arg]
    return api.get("leases", KEY.name, KEY.namespace)


async def step_all(clock: FakeClock, electors: list[LeaseElector], seconds: float) -> None:
    """Advance the fake clock a retry period at a time, every elector running one cycle per period; after
    each cycle, at most one elector counts the Lease as held."""
    for _ in range(round(seconds / FAST.retry_period)):
        clock.now += FAST.retry_period
        for elector in electors:
            await elector.cycle()
            assert sum(KEY in e.held() for e in electors) <= 1, [e.identity for e in electors if e.held()]


async def test_the_preferred_node_asks_after_its_hold_down_and_the_holder_hands_the_lease_over(
        clients: Callable[[str], AsyncClient], api: StandIn) -> None:
    clock = FakeClock()
    a, b, c = (LeaseElector(clients(n), identity=n, timing=FAST, on_change=lambda: None, clock=clock,
                            holddown=HOLDDOWN) for n in ("node-a", "node-b", "node-c"))
    b.want([KEY], {KEY: PLAIN})
    await step_all(clock, [b], 4 * FAST.retry_period)
    assert b.held() == {KEY} and lease(api)["metadata"]["annotations"][HOLDER_SCORE_ANNOTATION] == "0"

    a.want([KEY], {KEY: PREFERRED})
    c.want([KEY], {KEY: PLAIN})
    await step_all(clock, [a, b, c], HOLDDOWN - FAST.retry_period)
    assert HANDOVER_TO_ANNOTATION not in lease(api)["metadata"].get("annotations", {}), "asked before the hold-down"
    assert b.held() == {KEY}

    await step_all(clock, [a, b, c], 3 * FAST.retry_period)
    assert a.held() == {KEY} and not b.held() and not c.held()
    written = lease(api)
    assert written["spec"]["holderIdentity"] == "node-a"
    assert written["metadata"]["annotations"] == {HOLDER_SCORE_ANNOTATION: "100"}  # request answered, score mine
    assert (a.handovers.asked, b.handovers.handed_over) == (1, 1)

    await step_all(clock, [a, b, c], 10 * FAST.retry_period)  # no way back: the others do not outscore it
    assert a.held() == {KEY} and (b.handovers.asked, c.handovers.asked) == (0, 0)


async def test_a_preferred_node_whose_readiness_flaps_never_asks(
        clients: Callable[[str], AsyncClient], api: StandIn) -> None:
    clock = FakeClock()
    a, b = (LeaseElector(clients(n), identity=n, timing=FAST, on_change=lambda: None, clock=clock,
                         holddown=HOLDDOWN) for n in ("node-a", "node-b"))
    b.want([KEY], {KEY: PLAIN})
    await step_all(clock, [b], 4 * FAST.retry_period)
    for _ in range(20):  # ready for 0.4 s, then not for 0.2 s: never a whole hold-down (0.6 s) ready
        a.want([KEY], {KEY: PREFERRED})
        await step_all(clock, [a, b], 2 * FAST.retry_period)
        a.want([], {})
        await step_all(clock, [a, b], FAST.retry_period)
    assert b.held() == {KEY} and a.handovers.asked == 0
    assert HANDOVER_TO_ANNOTATION not in lease(api)["metadata"].get("annotations", {})
    a.want([KEY], {KEY: PREFERRED})  # it settles: now it asks, once
    await step_all(clock, [a, b], HOLDDOWN + 3 * FAST.retry_period)
    assert a.held() == {KEY} and a.handovers.asked == 1


async def test_a_request_taken_back_when_the_node_stops_being_ready_is_never_granted(
        clients: Callable[[str], AsyncClient], api: StandIn) -> None:
    clock = FakeClock()
    a, b = (LeaseElector(clients(n), identity=n, timing=FAST, on_change=lambda: None, clock=clock,
                         holddown=HOLDDOWN) for n in ("node-a", "node-b"))
    b.want([KEY], {KEY: PLAIN})
    await step_all(clock, [b], 4 * FAST.retry_period)
    a.want([KEY], {KEY: PREFERRED})
    await step_all(clock, [a], HOLDDOWN + FAST.retry_period)  # b does not look meanwhile: a's request waits
    assert a.handovers.pending and lease(api)["metadata"]["annotations"][HANDOVER_TO_ANNOTATION] == "node-a"
    a.want([], {})  # a turns unhealthy: it takes its request back before b answers
    await step_all(clock, [a, b], 4 * FAST.retry_period)
    assert b.held() == {KEY} and lease(api)["spec"]["holderIdentity"] == "node-b"
    assert HANDOVER_TO_ANNOTATION not in lease(api)["metadata"].get("annotations", {})


class SimulatedNode:
    """An elector and a dataplane whose withdraw is slow (0.3 s) and whose add is fast (10 ms): a holder that
    handed over before its withdraw completed would overlap its successor."""

    def __init__(self, client: AsyncClient, name: str) -> None:
        self.vip = False
        self.pass_done_started = 0.0
        self.elector = LeaseElector(client, identity=name, timing=FAST, on_change=self.changed, holddown=HOLDDOWN,
                                    withdrawn=lambda since: self.pass_done_started >= since)
        self._passes: set[asyncio.Task[None]] = set()

    def changed(self) -> None:
        task = asyncio.get_running_loop().create_task(self._pass())
        self._passes.add(task)
        task.add_done_callback(self._passes.discard)

    async def _pass(self) -> None:
        started = time.time()
        want = KEY in self.elector.held()
        await asyncio.sleep(0.01 if want else 0.3)
        self.vip = want
        self.pass_done_started = max(self.pass_done_started, started)


@asynccontextmanager
async def running(*electors: LeaseElector) -> AsyncIterator[None]:
    tasks = [asyncio.create_task(e.run()) for e in electors]
    try:
        yield
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


async def test_during_a_live_handover_the_vip_is_never_on_two_nodes_and_off_only_briefly(
        clients: Callable[[str], AsyncClient], api: StandIn) -> None:
    a, b = SimulatedNode(clients("node-a"), "node-a"), SimulatedNode(clients("node-b"), "node-b")
    b.elector.want([KEY], {KEY: PLAIN})
    async with running(a.elector, b.elector):
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 5
        while not b.vip:
            assert loop.time() < deadline
            await asyncio.sleep(0.01)
        a.elector.want([KEY], {KEY: PREFERRED})
        samples: list[tuple[float, int]] = []
        deadline = loop.time() + HOLDDOWN + 10 * FAST.retry_period
        while not (a.vip and not b.vip) and loop.time() < deadline:
            samples.append((loop.time(), a.vip + b.vip))
            await asyncio.sleep(0.005)
    assert a.vip and not b.vip, "no handover"
    assert max(n for _, n in samples) == 1, "the VIP was on two nodes"
    gaps = [t for t, n in samples if n == 0]
    gap = gaps[-1] - gaps[0] if gaps else 0.0
    assert gap < 0.3 + FAST.retry_period + 0.5, f"off for {gap:.2f}s"  # withdraw + one poll + renew, generous


class RequestLandsFirst(WriteLandsFirst):
    """The holder's client, except that a handover request reaches the server between its read and its PUT."""

    key = KEY

    def edit(self, lease: dict[str, Any]) -> None:
        lease["metadata"].setdefault("annotations", {})[HANDOVER_TO_ANNOTATION] = "node-a"


async def test_a_request_that_lands_between_the_holders_read_and_its_renewal_does_not_cost_it_the_lease(
        clients: Callable[[str], AsyncClient], api: StandIn) -> None:
    clock = FakeClock()
    racing = RequestLandsFirst(clients("node-b"), api)
    b = LeaseElector(racing, identity="node-b", timing=FAST, clock=clock,  # type: ignore[arg-type]
                     on_change=lambda: None)
    b.want([KEY], {KEY: PLAIN})
    await step_all(clock, [b], 4 * FAST.retry_period)
    assert b.held() == {KEY}
    clock.now += FAST.renew_after
    racing.armed = True
    await b.cycle()  # the renewal meets 409 Conflict: the Lease is re-read, still ours
    assert b.held() == {KEY}, "the holder dropped the VIP for a request"
    assert HANDOVER_TO_ANNOTATION in lease(api)["metadata"]["annotations"]
