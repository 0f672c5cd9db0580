"""RouteTable against a real kernel in a namespace of its own: ownership by (table, protocol)."""

from __future__ import annotations

import asyncio
import ipaddress
import subprocess
from collections.abc import AsyncIterator, Iterator

import pytest

from kvip.core.model import Advertisement, DesiredState
from kvip.dataplane.base import ApplyError
from kvip.dataplane.routes import OwnedRoute, RouteTable
from kvip.lab.topology import topology

pytestmark = pytest.mark.root


@pytest.fixture
def netns() -> Iterator[str]:
    with topology(["solo"]) as topo:
        yield topo.node("solo").netns


@pytest.fixture
async def table(netns: str) -> AsyncIterator[RouteTable]:
    routes = RouteTable(netns=netns)
    try:
        yield routes
    finally:
        await routes.close()


def want(*vips: str) -> DesiredState:
    return DesiredState({ipaddress.ip_address(v): Advertisement(ipaddress.ip_address(v), frozenset()) for v in vips})


def ip(netns: str, *args: str) -> str:
    return subprocess.run(["ip", "-n", netns, *args], check=True, capture_output=True, text=True).stdout


async def test_adds_and_removes_ipv4_and_ipv6_host_routes_in_table_198_proto_248(table: RouteTable, netns: str) -> None:
    items = table.desired(want("10.96.0.1", "2001:db8::7"))
    await table.apply(items, frozenset())
    assert await table.observe() == items
    assert "10.96.0.1 dev lo proto 248" in ip(netns, "route", "show", "table", "198")
    assert "2001:db8::7 dev lo proto 248" in ip(netns, "-6", "route", "show", "table", "198")
    await table.apply(frozenset(), items)
    assert await table.observe() == frozenset()


async def test_foreign_routes_are_neither_reported_nor_removed(table: RouteTable, netns: str) -> None:
    ip(netns, "route", "add", "10.96.9.9/32", "dev", "lo", "table", "198", "proto", "static")
    ip(netns, "route", "add", "10.96.0.1/32", "dev", "lo", "table", "100", "proto", "248")
    assert await table.observe() == frozenset()
    with pytest.raises(ApplyError) as raised:
        await table.apply(table.desired(want("10.96.9.9")), frozenset())  # the destination is someone else's
    assert "do not own" in str(raised.value)
    assert "10.96.9.9 dev lo proto static" in ip(netns, "route", "show", "table", "198")
    assert "10.96.0.1" in ip(netns, "route", "show", "table", "100")


async def test_our_route_on_another_device_is_a_different_item_and_gets_replaced(table: RouteTable, netns: str) -> None:
    ip(netns, "route", "add", "10.96.0.1/32", "dev", "eth0", "table", "198", "proto", "248")
    seen = await table.observe()
    assert seen == {OwnedRoute.to(ipaddress.ip_network("10.96.0.1/32"), "eth0", 198, 248)}
    wanted = table.desired(want("10.96.0.1"))
    await table.apply(wanted - seen, seen - wanted)
    assert await table.observe() == wanted


async def test_missing_interface_fails_only_that_change(netns: str) -> None:
    routes = RouteTable(netns=netns, interface="kvip-nope0")
    try:
        with pytest.raises(ApplyError) as raised:
            await routes.apply(routes.desired(want("10.96.0.1")), frozenset())
        assert "does not exist" in str(raised.value)
    finally:
        await routes.close()


async def test_changes_fire_on_route_deleted_by_hand_and_on_stale_route_added(table: RouteTable, netns: str) -> None:
    await table.apply(table.desired(want("10.96.0.1")), frozenset())
    hints: asyncio.Queue[None] = asyncio.Queue()

    async def collect() -> None:
        async for hint in table.changes():
            hints.put_nowait(hint)

    watcher = asyncio.create_task(collect())
    try:
        await asyncio.sleep(0.2)
        ip(netns, "route", "del", "10.96.0.1/32", "table", "198")
        await asyncio.wait_for(hints.get(), 2)
        ip(netns, "route", "add", "10.96.7.7/32", "dev", "lo", "table", "198", "proto", "248")
        await asyncio.wait_for(hints.get(), 2)
    finally:
        watcher.cancel()


async def test_thousand_routes_round_trip(table: RouteTable) -> None:
    vips = [f"10.97.{i // 256}.{i % 256}" for i in range(1000)]
    items = table.desired(want(*vips))
    await table.apply(items, frozenset())
    assert await table.observe() == items
    await table.apply(frozenset(), items)
    assert await table.observe() == frozenset()
