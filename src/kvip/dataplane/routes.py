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
from collections.abc import AsyncIterator, Iterable, Mapping, Sequence
from typing import Any, NamedTuple, overload

from pyroute2 import AsyncIPRoute

from kvip.config.settings import ROUTE_TYPES
from kvip.core.incremental import IdentityMemo
from kvip.core.model import DesiredState, IPAddress
from kvip.dataplane.base import ApplyError, DataplaneBase, DataplaneError
from kvip.dataplane.netlink_batch import (
    RT_SCOPE_HOST,
    RT_SCOPE_UNIVERSE,
    DumpedRoute,
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


class OwnedRoute(NamedTuple):
    """One route of ours: its destination as IP version, address (an int) and prefix length.

    A plain tuple of ints and strings (kvip issue #21): with an ip_network for its destination, 10,000
    routes held 5.3 MiB (nine objects a route, an interning dict beside them), and hashing one ran in
    Python. A route for a VIP holds the VIP's own int, so it costs one tuple; hashing and comparing run in
    C, so a route read back from the kernel equals the one desired() built. `dst` builds the ip_network
    where a netlink request needs one."""

    version: int  # 4 or 6
    address: int  # the destination's network address
    prefixlen: int
    ifname: str
    table: int
    protocol: int
    route_type: str = "unicast"

    @classmethod
    def to(cls, dst: RouteNetwork, ifname: str, table: int, protocol: int,
           route_type: str = "unicast") -> OwnedRoute:
        return cls(dst.version, int(dst.network_address), dst.prefixlen, ifname, table, protocol, route_type)

    @property
    def dst(self) -> RouteNetwork:
        return (ipaddress.IPv4Network if self.version == 4 else ipaddress.IPv6Network)((self.address, self.prefixlen))

    @property
    def vip(self) -> IPAddress:
        return (ipaddress.IPv4Address if self.version == 4 else ipaddress.IPv6Address)(self.address)

    def __str__(self) -> str:
        return f"{self.vip}/{self.prefixlen} dev {self.ifname} table {self.table} proto {self.protocol}"

    def __repr__(self) -> str:
        return f"OwnedRoute({self.vip}/{self.prefixlen}, {self.ifname!r}, {self.table}, {self.protocol}, {self.route_type!r})"


def _dst_key(route: OwnedRoute) -> tuple[int, int, int]:
    return route.version, route.address, route.prefixlen


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
        self._wanted = IdentityMemo(self._route_for)
        self._last_wanted: list[OwnedRoute] = []  # what desired() last handed out: a dump reuses these
        self.echoes = OwnEchoes(table, protocol)
        self._view: frozenset[OwnedRoute] | None = None  # kept while trusted (see the module docstring)
        self._doubts = 0  # bumped whenever the view is dropped: a dump or apply that overlapped one keeps nothing
        self._monitors = 0  # netlink monitors running: without one, nothing keeps the view true
        self._links_stale = True
        self.readbacks = 0  # full dumps of the table
        self.kept_reads = 0  # observe() answered from the kept view

    # -- Dataplane ---------------------------------------------------------------------------

    def desired(self, state: DesiredState) -> frozenset[OwnedRoute]:
        self._last_wanted = self._wanted(state.advertisements)
        return frozenset(self._last_wanted)

    def vip_of(self, item: OwnedRoute) -> IPAddress:
        return item.vip

    def _route_for(self, vip: IPAddress) -> OwnedRoute:
        # Memoized, so a pass builds none; int(vip) is the VIP's own int object (no copy per route).
        return OwnedRoute(vip.version, int(vip), vip.max_prefixlen, self.interface, self.table, self.protocol,
                          self.route_type)

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
        except OSError as exc:
            raise RouteTableError(f"cannot dump table {self.table}: {exc}") from exc
        self.readbacks += 1
        view = self._read_back(dumped)
        # Kept only if nothing was doubted while the dump ran (it may or may not show that change).
        self._view = view if self._monitors and doubts == self._doubts else None
        return view

    def _read_back(self, dumped: Iterable[DumpedRoute]) -> frozenset[OwnedRoute]:
        # A route desired() handed out is taken as that very object: the view then shares them (one copy
        # in memory), and the diff's equality stops at identity. The lookup lives only while this runs.
        # (tuple.__new__: NamedTuple's own __new__ is one more Python call per route of a 10,000-route dump.)
        known = {route: route for route in self._last_wanted}
        names, table, protocol, get, new = self._ifname, self.table, self.protocol, known.get, tuple.__new__
        routes = []
        for dst, dst_len, rtm_type, oif in dumped:
            bits = len(dst) * 8
            address = int.from_bytes(dst, "big")
            if dst_len != bits:
                if bits not in (32, 128) or not 0 <= dst_len < bits:
                    raise RouteTableError(f"table {table}: unreadable route destination {dst!r}/{dst_len}")
                # Masked as ip_network(strict=False) would: the kernel's own answer, made canonical.
                address = address >> (bits - dst_len) << (bits - dst_len)
            elif bits != 32 and bits != 128:
                raise RouteTableError(f"table {table}: unreadable route destination {dst!r}/{dst_len}")
            route = new(OwnedRoute, (4 if bits == 32 else 6, address, dst_len,
                                     names.get(oif, f"if{oif}") if oif is not None else "",
                                     table, protocol, _TYPE_NAMES.get(rtm_type) or str(rtm_type)))
            routes.append(get(route, route))
        return frozenset(routes)

    async def apply(self, add: frozenset[OwnedRoute], remove: frozenset[OwnedRoute]) -> None:
        ipr = await self._conn()
        failed: dict[OwnedRoute, str] = {}
        view, doubts = self._view, self._doubts
        # An echo of an earlier apply still unseen now was lost (or is late): forgetting it can only
        # cost one spare pass, while keeping it could hide a foreign change of that same route.
        self.echoes.clear()
        # A route of ours on the wrong device is replaced: delete first, or the add collides with it.
        replaced_dsts = set(map(_dst_key, add))
        first = [r for r in remove if _dst_key(r) in replaced_dsts]
        last = [r for r in remove if _dst_key(r) not in replaced_dsts]
        await self._run(ipr, "del", first, failed)
        if add and (self._links_stale or not self._monitors or any(r.ifname not in self._ifindex for r in add)):
            await self._refresh_links(ipr)
            self._links_stale = False
        # In address order: the kernel inserts 10,000 routes in order ~30% faster than in hash order.
        await self._run(ipr, "add", sorted(add), failed)
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
            if self._monitors == 1:
                self.echoes.clear()  # sent while no socket listened: they never reach this one
            self.doubt()

        try:
            groups = RTMGRP_IPV4_ROUTE | RTMGRP_IPV6_ROUTE | RTMGRP_LINK
            async for hint in netlink_hints(self._netns, groups, self._foreign, bound=count_in):
                yield hint
        finally:
            if subscribed:
                self._monitors -= 1
            if not self._monitors:
                # Nobody will read them (an overrun ends a monitor mid-burst: 9,000 of a first sync's
                # 10,000 echoes were left pending, and held until the next apply).
                self.echoes.clear()
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
        sent = []
        for route in routes:
            if add and route.ifname and route.ifname not in self._ifindex:
                failed[route] = f"interface {route.ifname!r} does not exist"
                continue
            sent.append(route)
        if not sent:
            return
        # Expected before sending: the monitor may read the echo before the batch returns.
        self.echoes.expect(add, sent)
        codes = await asyncio.to_thread(self._batcher().run, _Requests(sent, add, self._ifindex))
        self.echoes.unexpect(add, (r for r, code in zip(sent, codes) if code != 0))  # refused: no echo
        for route, code in zip(sent, codes):
            if code == 0 or (not add and code == errno.ESRCH):
                continue  # done, or already gone: the goal is reached either way
            if add and code == errno.EEXIST:
                failed[route] = "destination already routed in this table by a route we do not own"
            else:
                failed[route] = f"{command}: {os.strerror(code)}"


class _Requests(Sequence[RouteRequest]):
    """One batch's requests, each built as the batcher encodes it (in its thread): built all at once, the
    10,000 of a first sync held some 5 MiB of requests and ip_networks at the agent's peak (issue #21)."""

    def __init__(self, routes: list[OwnedRoute], add: bool, ifindex: Mapping[str, int]) -> None:
        self._routes, self._add, self._ifindex = routes, add, ifindex

    def __len__(self) -> int:
        return len(self._routes)

    @overload
    def __getitem__(self, index: int) -> RouteRequest: ...
    @overload
    def __getitem__(self, index: slice) -> Sequence[RouteRequest]: ...

    def __getitem__(self, index: int | slice) -> RouteRequest | Sequence[RouteRequest]:
        if isinstance(index, slice):
            return [self[i] for i in range(len(self))[index]]
        route = self._routes[index]
        return RouteRequest(
            add=self._add, dst=route.dst, table=route.table, protocol=route.protocol,
            oif=self._ifindex.get(route.ifname) if route.ifname else None,
            route_type=ROUTE_TYPES.get(route.route_type, 1),
            scope=RT_SCOPE_HOST if route.route_type == "local" else RT_SCOPE_UNIVERSE,
        )


EchoKey = tuple[bool, int, int, int]  # (an add?, IP version, destination address, prefix length)


def _echo_key(add: bool, dst: OwnedRoute | RouteNetwork) -> EchoKey:
    if isinstance(dst, OwnedRoute):
        return add, dst.version, dst.address, dst.prefixlen
    return add, dst.version, int(dst.network_address), dst.prefixlen


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
        # Keyed by ints, not ip_network: 10,000 routes of a first sync are pending at once (issue #21).
        self._pending: Counter[EchoKey] = Counter()
        self.consumed = 0

    def expect(self, add: bool, dsts: Iterable[OwnedRoute | RouteNetwork]) -> None:
        """`dsts`: the routes sent, or their destinations."""
        self._pending.update(_echo_key(add, dst) for dst in dsts)

    def unexpect(self, add: bool, dsts: Iterable[OwnedRoute | RouteNetwork]) -> None:
        self._pending.subtract(_echo_key(add, dst) for dst in dsts)
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
        key = _echo_key(event == "RTM_NEWROUTE", ipaddress.ip_network((dst, msg.get("dst_len", 0)), strict=False))
        if self._pending[key] <= 0:
            self._pending.pop(key, None)
            return True
        self._pending[key] -= 1
        if not self._pending[key]:
            del self._pending[key]
            if not self._pending:
                self._pending = Counter()  # (a dict never shrinks: this frees a burst's table)
        self.consumed += 1
        return False
