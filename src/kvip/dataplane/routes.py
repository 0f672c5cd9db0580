"""Routing-table backend: one /32 or /128 route per VIP in a dedicated kernel table (kube-vip's
routing-table mode), exported to the fabric by BIRD/FRR.

Ownership is the pair (table, route protocol): we read, add and delete only routes in our table
that carry our protocol. A foreign route in our table (another protocol) is never reported, never
removed, and never replaced — if it occupies a VIP's destination, adding ours fails loudly for that
VIP alone. A netlink monitor on our table turns any change made behind our back into a hint; the
kernel's echo of a change we just made ourselves is not one (it would cost a whole second pass per
change), so each request sent is remembered until its echo arrives (`OwnEchoes`).

The table is not dumped on every pass (kvip issue #21: 63 ms at 10,000 routes): while the monitor runs,
`observe()` answers from a kept view — the last dump plus what our own requests did — and the view is
dropped (one full dump on the next pass) on any foreign change or link change the monitor reports, a
request that failed, the monitor (re)starting or ending (a netlink overrun ends it with an error), and
`doubt()`, which the reconciler calls on every pass the resync timer, a retry or a resync request woke.
The monitor counts only once its socket is subscribed, and the view is dropped at that moment, so the dump
that seeds a kept view always follows the subscription (list-then-watch): a foreign change before it is in
the dump, one after it reaches the monitor.
"""

from __future__ import annotations

import asyncio
import errno
import ipaddress
import logging
import os
from collections import Counter
from collections.abc import AsyncIterator, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from pyroute2 import AsyncIPRoute

from kvip.config.settings import ROUTE_TYPES
from kvip.core.incremental import IdentityMemo
from kvip.core.model import DesiredState, IPAddress
from kvip.dataplane.base import ApplyError, DataplaneBase, DataplaneError
from kvip.dataplane.netlink_batch import (
    RT_SCOPE_HOST,
    RT_SCOPE_UNIVERSE,
    RouteBatcher,
    RouteRequest,
)
from kvip.dataplane.netlink_monitor import (
    RTMGRP_IPV4_ROUTE,
    RTMGRP_IPV6_ROUTE,
    RTMGRP_LINK,
    LazyRtnl,
    netlink_hints,
)

log = logging.getLogger("kvip.routes")

RouteNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

_TYPE_NAMES = {v: k for k, v in ROUTE_TYPES.items()}


class RouteTableError(DataplaneError):
    """The routing table cannot be read or the configured interface does not exist."""


@dataclass(frozen=True, order=True)
class OwnedRoute:
    dst: ipaddress.IPv4Network | ipaddress.IPv6Network
    ifname: str
    table: int
    protocol: int
    route_type: str = "unicast"
    # Cached: the reconciler's set difference hashes every route on every pass, and the generated
    # hash (a tuple holding an ip_network, hashed in Python) cost more than the rest of the diff.
    _hash: int = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_hash", hash((self.dst, self.ifname, self.table, self.protocol, self.route_type)))

    def __hash__(self) -> int:
        return self._hash

    def __str__(self) -> str:
        return f"{self.dst} dev {self.ifname} table {self.table} proto {self.protocol}"


class RouteTable(DataplaneBase):
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
        self._rtnl = LazyRtnl(netns)
        self._ifindex: dict[str, int] = {}
        self._ifname: dict[int, str] = {}
        self._batch: RouteBatcher | None = None
        self._seen: dict[tuple[bytes, int, int, int | None], OwnedRoute] = {}
        self._wanted = IdentityMemo(self._route_for)
        self._interned: dict[OwnedRoute, OwnedRoute] = {}
        self.echoes = OwnEchoes(table, protocol)
        self._view: frozenset[OwnedRoute] | None = None  # kept while trusted (see the module docstring)
        self._doubts = 0  # bumped whenever the view is dropped: a dump or apply that overlapped one keeps nothing
        self._monitors = 0  # netlink monitors running: without one, nothing keeps the view true
        self._links_stale = True
        self.readbacks = 0  # full dumps of the table
        self.kept_reads = 0  # observe() answered from the kept view

    # -- Dataplane ---------------------------------------------------------------------------

    def desired(self, state: DesiredState) -> frozenset[OwnedRoute]:
        return frozenset(self._wanted(state.advertisements))

    def vip_of(self, item: OwnedRoute) -> IPAddress:
        return item.dst.network_address

    def _route_for(self, vip: IPAddress) -> OwnedRoute:
        # Memoized: building 10,000 ip_network objects on every pass would cost more than the diff.
        route = OwnedRoute(ipaddress.ip_network(vip), self.interface, self.table, self.protocol, self.route_type)
        if len(self._interned) > 200_000:
            self._interned.clear()
        return self._interned.setdefault(route, route)

    def doubt(self) -> None:
        self._doubts += 1
        self._view = None
        self._links_stale = True

    async def observe(self) -> frozenset[OwnedRoute]:
        if self._view is not None and self._monitors:
            self.kept_reads += 1
            return self._view
        ipr = await self._conn()
        doubts = self._doubts
        try:
            dumped = await asyncio.to_thread(self._batcher().dump, self.table, self.protocol)
            if any(oif is not None and oif not in self._ifname for _, _, _, oif in dumped):
                await self._refresh_links(ipr)
                self._seen.clear()
        except OSError as exc:
            raise RouteTableError(f"cannot dump table {self.table}: {exc}") from exc
        self.readbacks += 1
        view = frozenset(self._seen.get(raw) or self._remember(raw) for raw in dumped)
        # Kept only if nothing was doubted while the dump ran (it may or may not show that change).
        self._view = view if self._monitors and doubts == self._doubts else None
        return view

    def _remember(self, raw: tuple[bytes, int, int, int | None]) -> OwnedRoute:
        dst, dst_len, rtm_type, oif = raw
        if len(self._seen) > 200_000:
            self._seen.clear()
        route = OwnedRoute(
            ipaddress.ip_network((ipaddress.ip_address(dst), dst_len), strict=False),
            self._ifname.get(oif, f"if{oif}") if oif is not None else "",
            self.table, self.protocol, _TYPE_NAMES.get(rtm_type, str(rtm_type)),
        )
        # The very object desired() hands out, if it did: the diff's equality is then an identity check.
        route = self._interned.get(route, route)
        self._seen[raw] = route
        return route

    async def apply(self, add: frozenset[OwnedRoute], remove: frozenset[OwnedRoute]) -> None:
        ipr = await self._conn()
        failed: dict[OwnedRoute, str] = {}
        view, doubts = self._view, self._doubts
        # An echo of an earlier apply still unseen now was lost (or is late): forgetting it can only
        # cost one spare pass, while keeping it could hide a foreign change of that same route.
        self.echoes.clear()
        # A route of ours on the wrong device is replaced: delete first, or the add collides with it.
        replaced_dsts = {r.dst for r in add}
        first = [r for r in remove if r.dst in replaced_dsts]
        last = [r for r in remove if r.dst not in replaced_dsts]
        await self._run(ipr, "del", first, failed)
        if add and (self._links_stale or not self._monitors or any(r.ifname not in self._ifindex for r in add)):
            await self._refresh_links(ipr)
            self._links_stale = False
        await self._run(ipr, "add", list(add), failed)
        await self._run(ipr, "del", last, failed)
        # What our requests did, on top of a view still trusted; anything uncertain: the next pass dumps.
        trusted = view is not None and not failed and doubts == self._doubts
        self._view = (view - remove) | add if trusted else None
        if failed:
            raise ApplyError(failed)  # type: ignore[arg-type]

    async def changes(self) -> AsyncIterator[None]:
        """A hint per burst of route changes in our table (or link changes, which move routes). While this
        runs, the view is kept; a monitor (re)starting or ending (overrun, error) drops it."""
        subscribed = False

        def count_in() -> None:
            # List-then-watch: the monitor counts (so a dump may be kept) only once its socket is
            # subscribed, and the view is dropped then, so the dump that seeds it is taken after that.
            nonlocal subscribed
            subscribed = True
            self._monitors += 1
            self.doubt()

        try:
            groups = RTMGRP_IPV4_ROUTE | RTMGRP_IPV6_ROUTE | RTMGRP_LINK
            async for hint in netlink_hints(self._netns, groups, self._foreign, bound=count_in):
                yield hint
        finally:
            if subscribed:
                self._monitors -= 1
            self.doubt()

    def _foreign(self, msg: Mapping[str, Any]) -> bool:
        foreign = self.echoes.foreign(msg)
        if foreign:
            self.doubt()  # somebody else changed our table or a link: read it all back
        return foreign

    def status(self) -> Mapping[str, object]:
        return {"readbacks": self.readbacks, "keptReads": self.kept_reads, "monitors": self._monitors}

    async def close(self) -> None:
        if self._batch is not None:
            self._batch.close()
            self._batch = None
        self._rtnl.close()

    # -- internals ---------------------------------------------------------------------------

    async def _conn(self) -> AsyncIPRoute:
        return await self._rtnl.get()

    async def _refresh_links(self, ipr: AsyncIPRoute) -> None:
        names: dict[int, str] = {}
        async for link in await ipr.link("dump"):
            names[link["index"]] = link.get("ifname")
        self._ifname = names
        self._ifindex = {name: index for index, name in names.items()}

    def _batcher(self) -> RouteBatcher:
        if self._batch is None:
            self._batch = RouteBatcher(self._netns)
        return self._batch

    async def _run(self, ipr: AsyncIPRoute, command: str, routes: list[OwnedRoute],
                   failed: dict[OwnedRoute, str]) -> None:
        add = command == "add"
        requests, sent = [], []
        for route in routes:
            if add and route.ifname and route.ifname not in self._ifindex:
                failed[route] = f"interface {route.ifname!r} does not exist"
                continue
            requests.append(RouteRequest(
                add=add, dst=route.dst, table=route.table, protocol=route.protocol,
                oif=self._ifindex.get(route.ifname) if route.ifname else None,
                route_type=ROUTE_TYPES.get(route.route_type, 1),
                scope=RT_SCOPE_HOST if route.route_type == "local" else RT_SCOPE_UNIVERSE,
            ))
            sent.append(route)
        if not requests:
            return
        # Expected before sending: the monitor may read the echo before the batch returns.
        self.echoes.expect(add, (r.dst for r in sent))
        codes = await asyncio.to_thread(self._batcher().run, requests)
        self.echoes.unexpect(add, (r.dst for r, code in zip(sent, codes) if code != 0))  # refused: no echo
        for route, code in zip(sent, codes):
            if code == 0 or (not add and code == errno.ESRCH):
                continue  # done, or already gone: the goal is reached either way
            if add and code == errno.EEXIST:
                failed[route] = "destination already routed in this table by a route we do not own"
            else:
                failed[route] = f"{command}: {os.strerror(code)}"


class OwnEchoes:
    """The route changes we sent whose netlink notification has not arrived yet.

    `foreign(msg)` says whether one rtnetlink message is a change someone else made: a link change,
    or a route change in our table that is not the pending echo of one of our own requests (same
    direction, destination and protocol). Each echo is consumed once, so a foreign delete of a
    route we just added still counts; the periodic full read-back covers anything this misjudges.
    """

    def __init__(self, table: int, protocol: int) -> None:
        self.table = table
        self.protocol = protocol
        self._pending: Counter[tuple[bool, RouteNetwork]] = Counter()
        self.consumed = 0

    def expect(self, add: bool, dsts: Iterable[RouteNetwork]) -> None:
        self._pending.update((add, dst) for dst in dsts)

    def unexpect(self, add: bool, dsts: Iterable[RouteNetwork]) -> None:
        self._pending.subtract((add, dst) for dst in dsts)
        self._pending = +self._pending  # drop the zeros

    def clear(self) -> None:
        self._pending.clear()

    def foreign(self, msg: Mapping[str, Any]) -> bool:
        event = msg.get("event", "")
        if event in ("RTM_NEWLINK", "RTM_DELLINK"):
            return True
        if msg.get("table") != self.table:
            return False
        dst = msg.get("dst")
        if event not in ("RTM_NEWROUTE", "RTM_DELROUTE") or dst is None or msg.get("proto") != self.protocol:
            return True
        key = (event == "RTM_NEWROUTE", ipaddress.ip_network((dst, msg.get("dst_len", 0)), strict=False))
        if self._pending[key] <= 0:
            self._pending.pop(key, None)
            return True
        self._pending[key] -= 1
        if not self._pending[key]:
            del self._pending[key]
        self.consumed += 1
        return False
