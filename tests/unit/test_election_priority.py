"""Lease renewals must not starve while the agent's other API traffic saturates its client (kube-vip #1316).

kube-vip's renewals shared one client (and its rate limiter) with the Service informers; under load
they missed the renew deadline and the VIP moved for no reason. kvip gives the elector a client of
its own (own connection pool, own timeouts bounded by the Lease timing). Here the shared client is
saturated by slow Service lists (more requests in flight than its pool has connections) while the
elector keeps a Lease: every renewal must land within renew_deadline.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import pytest
from lightkube import AsyncClient

from kvip.kube.client import make_client
from kvip.kube.election import (
    LeaseElector,
    LeaseKey,
    LeaseTiming,
    elector_client,
    request_timeout,
)
from kvip.kube.resources import Lease, Service
from kvip.lab.apiserver import StandIn, serving

FAST = LeaseTiming(lease_duration=2.0, renew_deadline=1.5, retry_period=0.25)
KEY = LeaseKey("kube-system", "plndr-cp-lock")
LOAD = 130  # slow lists in flight at once: more than the shared client's 100 pooled connections
LIST_LATENCY = 3.0  # seconds each Service request takes on the server
WINDOW = 4.0  # seconds of saturation observed


@pytest.fixture
async def api() -> AsyncIterator[StandIn]:
    async with serving() as standin:
        yield standin


@pytest.fixture
def kubeconfig(api: StandIn, tmp_path: Path) -> str:
    return str(api.write_kubeconfig(tmp_path / "kubeconfig"))


@asynccontextmanager
async def saturated(client: AsyncClient, api: StandIn) -> AsyncIterator[None]:
    """LOAD loops of Service lists on `client`, each held LIST_LATENCY seconds by the server."""
    api.set_resource_latency("services", LIST_LATENCY)

    async def lister() -> None:
        while True:
            async for _ in client.list(Service, namespace="default"):
                pass

    tasks = [asyncio.create_task(lister()) for _ in range(LOAD)]
    try:
        await asyncio.sleep(LIST_LATENCY / 2)  # every connection busy, a queue behind them
        yield
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


async def hold_under_load(elector: LeaseElector, shared: AsyncClient, api: StandIn) -> tuple[float, float, bool]:
    """(worst renewal age seen, a Lease GET's time through the shared client, held throughout)."""
    loop = asyncio.get_running_loop()
    task = asyncio.create_task(elector.run())
    try:
        while KEY not in elector.held():
            await asyncio.sleep(0.02)
        worst, always = 0.0, True
        async with saturated(shared, api):
            started = loop.time()

            async def timed_get() -> float:
                await shared.get(Lease, KEY.name, namespace=KEY.namespace)
                return loop.time() - started

            probe = asyncio.create_task(timed_get())
            while loop.time() - started < WINDOW:
                renewed = elector.status()[KEY].renewed_at
                worst = max(worst, loop.time() - renewed) if renewed is not None else float("inf")
                always = always and KEY in elector.held()
                await asyncio.sleep(0.02)
            shared_get = await probe
        return worst, shared_get, always
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


async def test_renewals_on_the_electors_own_client_land_while_the_shared_client_is_saturated(
        api: StandIn, kubeconfig: str) -> None:
    shared = make_client(kubeconfig)
    own = elector_client(kubeconfig, FAST)
    elector = LeaseElector(own, identity="cp-1", timing=FAST, on_change=lambda: None)
    elector.want([KEY])
    try:
        worst, shared_get, always = await hold_under_load(elector, shared, api)
    finally:
        await own.close()
        await shared.close()
    print(f"\nshared client: one Lease GET took {shared_get:.2f}s; elector: worst renewal age {worst:.2f}s "
          f"(renew deadline {FAST.renew_deadline}s)")
    assert shared_get > FAST.renew_deadline, "the load must saturate the shared client, or this proves nothing"
    assert always and worst < FAST.renew_deadline


async def test_an_elector_on_the_saturated_shared_client_loses_its_lease(api: StandIn, kubeconfig: str) -> None:
    """The failure the separate client prevents (kube-vip #1316's symptom), shown once on purpose."""
    shared = make_client(kubeconfig)
    elector = LeaseElector(shared, identity="cp-1", timing=FAST, on_change=lambda: None)
    elector.want([KEY])
    try:
        worst, _, always = await hold_under_load(elector, shared, api)
    finally:
        await shared.close()
    assert not always and worst >= FAST.renew_deadline


def test_an_elector_request_leaves_time_for_a_retry_before_the_renew_deadline() -> None:
    for timing in (LeaseTiming(), LeaseTiming(3, 2, 1), FAST):
        assert 2 * request_timeout(timing) <= max(1.0, timing.renew_deadline - timing.renew_after)
    assert request_timeout(LeaseTiming()) == 2.5  # kube-vip's 15/10/2: renew at 5 s, deadline at 10 s


async def test_the_agent_gives_its_elector_a_client_of_its_own(api: StandIn, kubeconfig: str) -> None:
    from kvip.agent.wiring import Agent
    from kvip.config.agent import AgentConfig
    from kvip.core.model import ElectionMode

    agent = Agent(AgentConfig(node_name="n1", metrics_address="", kubeconfig=kubeconfig,
                              election=ElectionMode.GLOBAL), backends=[])
    try:
        assert agent.elector is not None
        assert agent.elector.client is not agent.client
    finally:
        await agent.client.close()
        await agent.elector.client.close()
