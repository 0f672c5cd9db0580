"""The kernel's echo of our own route change costs no second pass; anybody else's change still wakes one.

A real RouteTable in a namespace of its own, the real netlink monitor and the real reconcile loop; the
only trigger besides netlink is the test's own `fire("source")`, and there is no resync timer, so
the pass counter says exactly what woke the loop.
"""

from __future__ import annotations

import asyncio
import ipaddress
import subprocess
from collections.abc import AsyncIterator, Iterator

import pytest

from kvip.core.model import Advertisement, DesiredState
from kvip.dataplane.routes import OwnEchoes, RouteTable
from kvip.lab.topology import topology
from kvip.reconcile import Reconciler
from kvip.runtime.tasks import Trigger, cancel_and_wait

QUIET = 0.5  # seconds to wait for a pass that must not come (an echo arrives within a millisecond)


def want(*vips: str) -> DesiredState:
    return DesiredState({ipaddress.ip_address(v): Advertisement(ipaddress.ip_address(v), frozenset()) for v in vips})


def ip(netns: str, *args: str) -> str:
    return subprocess.run(["ip", "-n", netns, *args], check=True, capture_output=True, text=True).stdout


class Loop:
    """A reconciler over one RouteTable whose desired state the test sets."""

    def __init__(self, netns: str) -> None:
        self.netns = netns
        self.table = RouteTable(netns=netns)
        self.desired = want()
        self.reconciler = Reconciler(compute=lambda: self.desired, backends=[self.table], trigger=Trigger())

    async def passes_after(self, change: object, count: int, timeout: float = 5.0) -> int:
        """Wait until `count` more passes ran after `change` (a callable), then QUIET more; the total."""
        start = self.reconciler.passes
        change()  # type: ignore[operator]
        async with asyncio.timeout(timeout):
            while self.reconciler.passes < start + count:
                await asyncio.sleep(0.005)
        await asyncio.sleep(QUIET)
        return self.reconciler.passes - start

    def set(self, *vips: str) -> None:
        self.desired = want(*vips)
        self.reconciler.trigger.fire("source")


@pytest.fixture
def netns() -> Iterator[str]:
    with topology(["solo"]) as topo:
        yield topo.node("solo").netns


@pytest.fixture
async def loop(netns: str) -> AsyncIterator[Loop]:
    loop = Loop(netns)
    tasks = [asyncio.create_task(loop.reconciler.run()),
             asyncio.create_task(loop.reconciler.watch_dataplane(loop.table))]
    try:
        async with asyncio.timeout(5):
            while loop.reconciler.passes < 1:
                await asyncio.sleep(0.005)
        await asyncio.sleep(0.2)  # the monitor has bound its socket
        yield loop
    finally:
        await cancel_and_wait(tasks)
        await loop.table.close()


@pytest.mark.root
async def test_adding_and_removing_our_routes_costs_one_pass_each(loop: Loop) -> None:
    assert await loop.passes_after(lambda: loop.set("10.96.0.1", "10.96.0.2", "2001:db8::7"), 1) == 1
    assert "10.96.0.2 dev lo proto 248" in ip(loop.netns, "route", "show", "table", "198")
    assert await loop.passes_after(lambda: loop.set("10.96.0.1"), 1) == 1
    assert await loop.passes_after(lambda: loop.set(), 1) == 1
    assert ip(loop.netns, "route", "show", "table", "198").strip() == ""


@pytest.mark.root
async def test_a_route_deleted_behind_our_back_is_repaired_at_once(loop: Loop) -> None:
    await loop.passes_after(lambda: loop.set("10.96.0.1"), 1)
    tamper = lambda: ip(loop.netns, "route", "del", "10.96.0.1/32", "table", "198")
    # One pass woken by the foreign delete; its repair's own echo wakes none.
    assert await loop.passes_after(tamper, 1, timeout=1.0) == 1
    assert "10.96.0.1 dev lo proto 248" in ip(loop.netns, "route", "show", "table", "198")


@pytest.mark.root
async def test_a_foreign_route_of_ours_added_by_hand_is_removed_at_once(loop: Loop) -> None:
    await loop.passes_after(lambda: loop.set("10.96.0.1"), 1)
    tamper = lambda: ip(loop.netns, "route", "add", "10.96.0.9/32", "dev", "lo", "table", "198",
                        "proto", "248")
    assert await loop.passes_after(tamper, 1, timeout=1.0) == 1
    assert "10.96.0.9" not in ip(loop.netns, "route", "show", "table", "198")


def route_msg(event: str, dst: str, proto: int = 248, table: int = 198) -> dict[str, object]:
    network = ipaddress.ip_network(dst)
    return {"event": event, "table": table, "dst": str(network.network_address), "dst_len": network.prefixlen,
            "proto": proto}


def test_an_echo_is_consumed_once_so_a_second_identical_change_is_foreign() -> None:
    echoes = OwnEchoes(198, 248)
    echoes.expect(True, [ipaddress.ip_network("10.96.0.1/32")])
    assert not echoes.foreign(route_msg("RTM_NEWROUTE", "10.96.0.1/32"))
    assert echoes.foreign(route_msg("RTM_NEWROUTE", "10.96.0.1/32"))


def test_only_the_same_direction_destination_and_protocol_is_an_echo() -> None:
    echoes = OwnEchoes(198, 248)
    echoes.expect(True, [ipaddress.ip_network("10.96.0.1/32")])
    assert echoes.foreign(route_msg("RTM_DELROUTE", "10.96.0.1/32"))  # someone deleted what we added
    assert echoes.foreign(route_msg("RTM_NEWROUTE", "10.96.0.2/32"))
    assert echoes.foreign(route_msg("RTM_NEWROUTE", "10.96.0.1/32", proto=4))
    assert not echoes.foreign(route_msg("RTM_NEWROUTE", "10.96.0.1/32"))


def test_other_tables_are_ignored_and_link_changes_always_count() -> None:
    echoes = OwnEchoes(198, 248)
    assert not echoes.foreign(route_msg("RTM_NEWROUTE", "10.0.0.0/8", table=254))
    assert echoes.foreign({"event": "RTM_NEWLINK"})


def test_a_refused_request_leaves_no_echo_behind() -> None:
    echoes = OwnEchoes(198, 248)
    dst = ipaddress.ip_network("10.96.0.1/32")
    echoes.expect(True, [dst])
    echoes.unexpect(True, [dst])  # EEXIST: the kernel sent nothing
    assert echoes.foreign(route_msg("RTM_NEWROUTE", "10.96.0.1/32"))
