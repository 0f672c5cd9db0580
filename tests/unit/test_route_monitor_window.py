"""List-then-watch (kvip issue #21): a pass run while the routes backend's netlink monitor is starting, before
its socket is subscribed, must not seed a kept view, or a route removed by hand in that window would stay
missing until the resync timer. The window is held open by wrapping the monitor's hint source.

A real RouteTable in a namespace of its own and the real netlink monitor, as in test_kept_route_view.
"""

from __future__ import annotations

import asyncio
import ipaddress
import subprocess
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from typing import Any

import pytest

from kvip.core.model import Advertisement, DesiredState
from kvip.dataplane import routes as routes_module
from kvip.dataplane.routes import RouteTable
from kvip.lab.topology import topology
from kvip.reconcile import Reconciler
from kvip.runtime.tasks import Trigger, cancel_and_wait

SOURCE = {"source:endpointslices": 1}  # a pass woken by a cluster change only: it trusts a kept view
VIP = "10.96.0.1"


def want(vip: str) -> DesiredState:
    address = ipaddress.ip_address(vip)
    return DesiredState({address: Advertisement(address, frozenset())})


def ip_route(netns: str, *args: str) -> str:
    return subprocess.run(["ip", "-n", netns, "route", *args], check=True, capture_output=True, text=True).stdout


@pytest.fixture
def netns() -> Iterator[str]:
    with topology(["solo"]) as topo:
        yield topo.node("solo").netns


def holding_the_window_open(in_window: Callable[[], Awaitable[None]]) -> Callable[..., AsyncIterator[None]]:
    real = routes_module.netlink_hints

    async def hints(*args: Any, **kwargs: Any) -> AsyncIterator[None]:
        await in_window()  # the monitor task has started; its socket is not subscribed yet
        async for hint in real(*args, **kwargs):
            yield hint
    return hints


@pytest.mark.root
async def test_a_route_removed_by_hand_before_the_monitor_subscribes_is_repaired_by_the_next_pass(
        netns: str, monkeypatch: pytest.MonkeyPatch) -> None:
    table = RouteTable(netns=netns)
    reconciler = Reconciler(compute=lambda: want(VIP), backends=[table], trigger=Trigger())
    await reconciler.reconcile_once({"start": 1})
    assert f"{VIP} dev lo proto 248" in ip_route(netns, "show", "table", "198")
    opened = asyncio.Event()

    async def in_window() -> None:
        await reconciler.reconcile_once(SOURCE)  # a pass during start-up: its dump must not be kept
        ip_route(netns, "del", f"{VIP}/32", "table", "198")  # by hand: no monitor is there to see it
        opened.set()

    monkeypatch.setattr(routes_module, "netlink_hints", holding_the_window_open(in_window))

    async def monitor() -> None:
        async for _ in table.changes():
            pass

    task = asyncio.create_task(monitor())
    try:
        async with asyncio.timeout(5):
            await opened.wait()
            while table.status()["monitors"] == 0:  # until the socket is subscribed
                await asyncio.sleep(0.01)
        result = await reconciler.reconcile_once(SOURCE)  # no timer, no retry: a cluster change woke it
        assert result is not None and not result.failed
        assert f"{VIP} dev lo proto 248" in ip_route(netns, "show", "table", "198")
    finally:
        await cancel_and_wait([task])
        await table.close()
