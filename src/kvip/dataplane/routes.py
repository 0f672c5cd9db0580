"""Routing-table backend: one /32 or /128 route per VIP in a dedicated kernel table (kube-vip's
routing-table mode), exported to the fabric by BIRD/FRR.

Ownership is the pair (table, route protocol): we read, add and delete only routes in our table
that carry our protocol. A foreign route in our table (another protocol) is never reported, never
removed, and never replaced — if it occupies a VIP's destination, adding ours fails loudly for that
VIP alone. A netlink monitor on our table turns any change made behind our back into a hint.
"""

from __future__ import annotations

import asyncio
import errno
import ipaddress
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass

from pyroute2 import AsyncIPRoute
from pyroute2.netlink.exceptions import NetlinkError

from kvip.dataplane.base import ApplyError, DataplaneError
from kvip.model import DesiredState

log = logging.getLogger("kvip.routes")

RTMGRP_IPV4_ROUTE = 0x40
RTMGRP_IPV6_ROUTE = 0x400
RTMGRP_LINK = 0x1
ROUTE_TYPES = {"unicast": 1, "local": 2}
RT_SCOPE_UNIVERSE, RT_SCOPE_HOST, RT_SCOPE_NOWHERE = 0, 254, 255
# How many netlink requests are in flight at once: enough to hide round trips, small enough that
# the kernel's socket buffer never overflows (which would lose acks).
IN_FLIGHT = 256


class RouteTableError(DataplaneError):
    """The routing table cannot be read or the configured interface does not exist."""


@dataclass(frozen=True, order=True)
class OwnedRoute:
    dst: ipaddress.IPv4Network | ipaddress.IPv6Network
    ifname: str
    table: int
    protocol: int
    route_type: str = "unicast"

    def __str__(self) -> str:
        return f"{self.dst} dev {self.ifname} table {self.table} proto {self.protocol}"


class RouteTable:
    name = "routes"

    def __init__(
        self,
        *,
        table: int = 198,
        protocol: int = 248,
        interface: str = "lo",
        route_type: str = "unicast",
        netns: str | None = None,
    ) -> None:
        if route_type not in ROUTE_TYPES:
            raise RouteTableError(f"route type {route_type!r} is not one of {sorted(ROUTE_TYPES)}")
        self.table = table
        self.protocol = protocol
        self.interface = interface
        self.route_type = route_type
        self._netns = netns
        self._ipr: AsyncIPRoute | None = None
        self._ifindex: dict[str, int] = {}
        self._ifname: dict[int, str] = {}

    # -- Dataplane ---------------------------------------------------------------------------

    def desired(self, state: DesiredState) -> frozenset[OwnedRoute]:
        return frozenset(
            OwnedRoute(ipaddress.ip_network(vip), self.interface, self.table, self.protocol, self.route_type)
            for vip in state.advertisements
        )

    async def observe(self) -> frozenset[OwnedRoute]:
        ipr = await self._conn()
        await self._refresh_links(ipr)
        found = set()
        type_names = {v: k for k, v in ROUTE_TYPES.items()}
        try:
            for family in (2, 10):
                async for msg in await ipr.route("dump", family=family, table=self.table, proto=self.protocol):
                    if msg.get("table") != self.table or msg["proto"] != self.protocol:
                        continue  # never even look at what is not ours
                    dst = msg.get("dst")
                    if dst is None:
                        continue
                    oif = msg.get("oif")
                    found.add(OwnedRoute(
                        ipaddress.ip_network(f"{dst}/{msg['dst_len']}", strict=False),
                        self._ifname.get(oif, f"if{oif}") if oif is not None else "",
                        self.table, self.protocol, type_names.get(msg["type"], str(msg["type"])),
                    ))
        except NetlinkError as exc:
            raise RouteTableError(f"cannot dump table {self.table}: {exc}") from exc
        return frozenset(found)

    async def apply(self, add: frozenset[OwnedRoute], remove: frozenset[OwnedRoute]) -> None:
        ipr = await self._conn()
        failed: dict[OwnedRoute, str] = {}
        # A route of ours on the wrong device is replaced: delete first, or the add collides with it.
        replaced_dsts = {r.dst for r in add}
        first = [r for r in remove if r.dst in replaced_dsts]
        last = [r for r in remove if r.dst not in replaced_dsts]
        await self._run(ipr, "del", first, failed)
        if add:
            await self._refresh_links(ipr)
        await self._run(ipr, "add", list(add), failed)
        await self._run(ipr, "del", last, failed)
        if failed:
            raise ApplyError(failed)  # type: ignore[arg-type]

    async def changes(self) -> AsyncIterator[None]:
        """A hint per burst of route changes in our table (or link changes, which move routes)."""
        monitor = AsyncIPRoute(netns=self._netns, groups=RTMGRP_IPV4_ROUTE | RTMGRP_IPV6_ROUTE | RTMGRP_LINK)
        try:
            await monitor.bind()
            while True:
                # get() yields one batch of broadcast messages and ends; a burst is one hint.
                relevant = False
                async for msg in monitor.get():
                    event = msg.get("event", "")
                    relevant |= event in ("RTM_NEWLINK", "RTM_DELLINK") or msg.get("table") == self.table
                if relevant:
                    yield None
        finally:
            monitor.close()

    async def close(self) -> None:
        if self._ipr is not None:
            self._ipr.close()
            self._ipr = None

    # -- internals ---------------------------------------------------------------------------

    async def _conn(self) -> AsyncIPRoute:
        if self._ipr is None:
            self._ipr = AsyncIPRoute(netns=self._netns)
        return self._ipr

    async def _refresh_links(self, ipr: AsyncIPRoute) -> None:
        names: dict[int, str] = {}
        async for link in await ipr.link("dump"):
            names[link["index"]] = link.get("ifname")
        self._ifname = names
        self._ifindex = {name: index for index, name in names.items()}

    def _request(self, command: str, route: OwnedRoute) -> dict[str, object]:
        request: dict[str, object] = {"dst": str(route.dst), "table": route.table, "proto": route.protocol}
        if command == "add":
            request["type"] = ROUTE_TYPES.get(route.route_type, 1)
            request["scope"] = RT_SCOPE_HOST if route.route_type == "local" else RT_SCOPE_UNIVERSE
            if route.ifname:
                request["oif"] = self._ifindex[route.ifname]
        else:
            # RT_SCOPE_NOWHERE makes the kernel ignore scope when matching, as `ip route del` does:
            # a stale route someone added with our protocol but another scope is still ours to remove.
            request["scope"] = RT_SCOPE_NOWHERE
        return request

    async def _run(self, ipr: AsyncIPRoute, command: str, routes: list[OwnedRoute],
                   failed: dict[OwnedRoute, str]) -> None:
        gate = asyncio.Semaphore(IN_FLIGHT)

        async def one(route: OwnedRoute) -> None:
            if command == "add" and route.ifname and route.ifname not in self._ifindex:
                failed[route] = f"interface {route.ifname!r} does not exist"
                return
            async with gate:
                try:
                    await ipr.route(command, **self._request(command, route))
                except NetlinkError as exc:
                    if command == "add" and exc.code == errno.EEXIST:
                        # Ours already there (raced with ourselves) is fine; someone else's is not.
                        failed[route] = "destination already routed in this table by a route we do not own"
                    elif command == "del" and exc.code == errno.ESRCH:
                        return  # already gone: the goal is reached
                    else:
                        failed[route] = f"{command}: {exc}"
                except KeyError:
                    failed[route] = f"interface {route.ifname!r} does not exist"

        await asyncio.gather(*(one(r) for r in routes))
