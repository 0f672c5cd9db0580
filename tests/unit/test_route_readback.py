"""A route read back from the kernel is the very route desired() handed out (kvip issue #21: routes hold
their destination as ints, so the read-back must produce the same value, and the view shares the objects),
and a route of ours that no VIP asked for (another prefix length, another family) reads back as itself."""

from __future__ import annotations

import asyncio
import ipaddress
import subprocess
import sys
from collections.abc import Iterator

import pytest

from kvip.core.model import Advertisement, DesiredState
from kvip.dataplane.routes import OwnedRoute, RouteTable
from kvip.lab.topology import topology
from kvip.runtime.tasks import cancel_and_wait


def want(*vips: str) -> DesiredState:
    return DesiredState({ipaddress.ip_address(v): Advertisement(ipaddress.ip_address(v), frozenset()) for v in vips})


def add_foreign_prefix(netns: str, prefix: str) -> None:
    subprocess.run(["ip", "-n", netns, "route", "add", prefix, "dev", "lo", "table", "198", "proto", "248"], check=True)


@pytest.fixture
def netns() -> Iterator[str]:
    with topology(["solo"]) as topo:
        yield topo.node("solo").netns


def test_a_route_is_one_small_tuple_sharing_the_vips_int() -> None:
    table = RouteTable()
    vip = ipaddress.ip_address("10.96.0.1")
    (route,) = table.desired(want(str(vip)))
    (again,) = table.desired(DesiredState({vip: Advertisement(vip, frozenset())}))
    assert again.address is int(vip) and again == route  # the VIP's own int object: no copy per route
    assert sys.getsizeof(route) <= 120 and route.dst == ipaddress.ip_network("10.96.0.1/32")
    assert table.vip_of(route) == vip and str(route) == "10.96.0.1/32 dev lo table 198 proto 248"
    assert OwnedRoute.to(ipaddress.ip_network("10.96.0.1/32"), "lo", 198, 248) == route


@pytest.mark.root
async def test_the_read_back_is_what_desired_handed_out(netns: str) -> None:
    table = RouteTable(netns=netns)
    try:
        wanted = table.desired(want("10.96.0.1", "2001:db8::7"))
        await table.apply(wanted, frozenset())
        add_foreign_prefix(netns, "10.97.0.0/24")  # our protocol, a prefix no VIP asked for
        add_foreign_prefix(netns, "2001:db8:1::/64")
        table.doubt()
        seen = await table.observe()
        assert wanted < seen
        by_value = {route: route for route in seen}
        assert all(by_value[route] is route for route in wanted)  # one copy: the view shares desired()'s
        extra = sorted(str(route) for route in seen - wanted)
        assert extra == ["10.97.0.0/24 dev lo table 198 proto 248", "2001:db8:1::/64 dev lo table 198 proto 248"]
        assert {table.vip_of(route) for route in seen - wanted} == {
            ipaddress.ip_address("10.97.0.0"), ipaddress.ip_address("2001:db8:1::")}
        await table.apply(frozenset(), seen - wanted)  # ours by protocol: removable
        table.doubt()
        assert await table.observe() == wanted
    finally:
        await table.close()


@pytest.mark.root
async def test_echoes_nobody_can_read_any_more_are_not_kept(netns: str) -> None:
    """An overrun ends the monitor mid-burst (9,000 of a first sync's 10,000 echoes were left pending until
    the next apply); a monitor subscribing later never sees them either."""
    table = RouteTable(netns=netns)
    msg = {"event": "RTM_NEWROUTE", "table": 198, "dst": "10.96.0.1", "dst_len": 32, "proto": 248}
    dst = ipaddress.ip_network("10.96.0.1/32")

    async def monitor() -> None:
        async for _ in table.changes():
            pass

    try:
        task = asyncio.create_task(monitor())
        await asyncio.sleep(0.3)
        table.echoes.expect(True, [dst, dst])
        assert not table.echoes.foreign(msg)  # pending while the monitor runs
        await cancel_and_wait([task])
        assert table.echoes.foreign(msg)  # forgotten once no monitor runs
        table.echoes.expect(True, [dst])
        task = asyncio.create_task(monitor())
        await asyncio.sleep(0.3)
        assert table.echoes.foreign(msg)  # sent before this monitor subscribed: not its echo
        await cancel_and_wait([task])
    finally:
        await table.close()
