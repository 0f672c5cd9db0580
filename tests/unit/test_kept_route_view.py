"""The routes backend answers a pass from the view it keeps (the last dump plus its own requests) instead
of dumping the table each time (kvip issue #21), and reads everything back whenever that view may be
wrong: a foreign change the netlink monitor reports, no monitor running, the resync timer, a retry.

A real RouteTable in a namespace of its own and the real netlink monitor; the test drives the passes
itself (`reconcile_once` with the reason a trigger would carry), so it knows what woke each one.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import subprocess
from collections.abc import AsyncIterator, Iterator

import pytest

from kvip.core.model import Advertisement, DesiredState
from kvip.dataplane.routes import RouteTable
from kvip.lab.topology import topology
from kvip.reconcile import Reconciler
from kvip.runtime.tasks import Trigger, cancel_and_wait

SOURCE = {"source:endpointslices": 1}  # a pass woken by a cluster change only


def want(*vips: str) -> DesiredState:
    return DesiredState({ipaddress.ip_address(v): Advertisement(ipaddress.ip_address(v), frozenset()) for v in vips})


def ip_route(netns: str, *args: str) -> str:
    return subprocess.run(["ip", "-n", netns, "route", *args], check=True, capture_output=True, text=True).stdout


def routes(netns: str) -> str:
    return ip_route(netns, "show", "table", "198")


class Node:
    def __init__(self, netns: str) -> None:
        self.netns = netns
        self.table = RouteTable(netns=netns)
        self.desired = want()
        self.reconciler = Reconciler(compute=lambda: self.desired, backends=[self.table], trigger=Trigger())
        self.hints = asyncio.Event()  # set by the monitor on each foreign change; wakes no pass here

    async def monitor(self) -> None:
        async for _ in self.table.changes():
            self.hints.set()

    async def pass_for(self, reasons: dict[str, int], *vips: str) -> None:
        self.desired = want(*vips)
        result = await self.reconciler.reconcile_once(reasons)
        assert result is not None and not result.failed and result.error is None
        await asyncio.sleep(0.05)  # the kernel's echoes land (one arriving after the next pass's requests is foreign)


@pytest.fixture
def netns() -> Iterator[str]:
    with topology(["solo"]) as topo:
        yield topo.node("solo").netns


@contextlib.asynccontextmanager
async def node_in(netns: str, *, monitored: bool = True) -> AsyncIterator[Node]:
    node = Node(netns)
    tasks = [asyncio.create_task(node.monitor())] if monitored else []
    try:
        await asyncio.sleep(0.2)  # the monitor has bound its socket
        await node.pass_for({"start": 1}, "10.96.0.1")
        yield node
    finally:
        await cancel_and_wait(tasks)
        await node.table.close()


@pytest.mark.root
async def test_passes_woken_by_the_cluster_dump_nothing_while_the_monitor_runs(netns: str) -> None:
    async with node_in(netns) as node:
        dumps = node.table.readbacks
        await node.pass_for(SOURCE, "10.96.0.1", "10.96.0.2")
        await node.pass_for(SOURCE, "10.96.0.2", "2001:db8::7")
        await node.pass_for(SOURCE, "10.96.0.2", "2001:db8::7")
        assert node.table.readbacks == dumps and node.table.kept_reads == 3
        assert "10.96.0.1 " not in routes(netns) and "10.96.0.2 dev lo proto 248" in routes(netns)


@pytest.mark.root
async def test_a_route_deleted_behind_our_back_is_seen_by_the_next_pass_whatever_woke_it(netns: str) -> None:
    async with node_in(netns) as node:
        await node.pass_for(SOURCE, "10.96.0.1")  # the view is kept from here
        node.hints.clear()
        ip_route(netns, "del", "10.96.0.1/32", "table", "198")
        async with asyncio.timeout(5):
            await node.hints.wait()
        await node.pass_for(SOURCE, "10.96.0.1")
        assert "10.96.0.1 dev lo proto 248" in routes(netns)


@pytest.mark.root
async def test_without_a_monitor_every_pass_reads_the_table_back(netns: str) -> None:
    async with node_in(netns, monitored=False) as node:
        dumps = node.table.readbacks
        ip_route(netns, "del", "10.96.0.1/32", "table", "198")
        await node.pass_for(SOURCE, "10.96.0.1")
        assert node.table.readbacks == dumps + 1 and "10.96.0.1 dev lo proto 248" in routes(netns)


@pytest.mark.root
@pytest.mark.parametrize("reason", ["timer", "retry", "manual"])
async def test_the_resync_timer_a_retry_and_a_resync_request_read_everything_back(netns: str, reason: str) -> None:
    async with node_in(netns) as node:
        dumps = node.table.readbacks
        await node.pass_for({reason: 1}, "10.96.0.1")
        await node.pass_for({**SOURCE, reason: 1}, "10.96.0.1")
        assert node.table.readbacks == dumps + 2
