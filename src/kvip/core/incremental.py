"""decide(), re-run only where its inputs changed (kvip issue #21).

`kvip.core.decide.decide` stays the whole truth: this class keeps the previous answer per Service and per
VIP and, at the next pass, re-decides only the Services whose own inputs changed: their ServiceView, their
endpoints, whether this node leads them, the probe verdicts of their local endpoint addresses, their DHCP
lease. Services never read each other (`kvip.core.decide_service`); what sharing a VIP does (port
conflicts, merged BGP attributes, the interface, the owner set) is re-done for every VIP a re-decided
Service asked for before or asks for now, so the neighbours on those VIPs are covered. Anything every
Service reads (node view, drain, control-plane addresses, the global Lease) changing → decide all again.
A property test drives random histories through both and requires equal answers after every step.

"Changed" is an identity check first: the cache hands out the same view objects for what did not change,
so a pass costs a pointer scan over the Services plus the work for the changed ones. The memo is mutable
on purpose (copying it per pass is the cost being removed); it is private to one agent, no I/O, no clock.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping
from itertools import chain, compress, repeat
from operator import is_, is_not
from typing import Generic, TypeVar

from kvip.core.decide import (
    NO_LEADERSHIP,
    NO_PROBES,
    conflicts_on,
    control_plane_part,
    vip_advertisement,
)
from kvip.core.decide_service import DecideConfig, node_blocker, service_outcome
from kvip.core.dhcp import NO_LEASES, Leases
from kvip.core.egress import egress_rules
from kvip.core.model import (
    CONTROL_PLANE_KEY,
    Advertisement,
    BadInput,
    ClusterSnapshot,
    ControlPlaneState,
    DesiredState,
    EgressRule,
    EndpointView,
    IPAddress,
    Leadership,
    ProbeVerdicts,
    ServiceDecision,
    ServiceKey,
)

K = TypeVar("K")
V = TypeVar("V")
_MISSING = object()


def changed_keys(old: Mapping[K, V], new: Mapping[K, V], absent: object = _MISSING) -> set[K]:
    """Keys added, removed or whose value changed (`absent`: the value a missing key stands for): an
    identity check per key, equality only when the objects differ (a relist hands out equal copies).
    Two copies of one store list their keys in the same order, so they are first compared side by side
    without hashing (a ServiceKey hashes in Python: looking each one up costs milliseconds at 10,000)."""
    if old is new:
        return set()
    found: set[K] = set()
    if len(old) == len(new) and all(map(is_, old, new)):  # (map and compress: no Python loop per key)
        return {key for key in compress(new, map(is_not, old.values(), new.values())) if old[key] != new[key]}
    added = 0
    for key, value in new.items():
        before = old.get(key, _MISSING)
        if before is value:
            continue
        if before is _MISSING:
            added += 1
            before = absent
        if before != value:
            found.add(key)
    if len(old) > len(new) - added:
        found.update(key for key, value in old.items() if key not in new and value != absent)
    return found


class IdentityMemo(Generic[K, V]):
    """`build(item)` for each of many long-lived immutable items (a pass's VIPs), remembered by identity.

    An ipaddress object hashes in Python: looking 10,000 of them up in a dict cost milliseconds per pass,
    twice or three times over. Here they are looked up by `id()` (C), which is safe because the memo
    holds every item it has seen, so no id is reused while its entry exists. Bounded: at `limit` items
    everything is forgotten and built again once."""

    def __init__(self, build: Callable[[K], V], limit: int = 100_000) -> None:
        self._build = build
        self._limit = limit
        self._values: dict[int, V] = {}
        # Keeps each item alive while its id is a key; never looked up, so a list (8 bytes an item, where a
        # second dict keyed by id cost ~60), emptied only together with `_values`.
        self._items: list[K] = []

    def __call__(self, items: Collection[K]) -> list[V]:
        values = self._values
        found: list[V | None] = list(map(values.get, map(id, items)))
        if not any(map(is_, found, repeat(None))):  # (all in C: no Python code runs per item)
            return found  # type: ignore[return-value]
        missing = list(compress(items, map(is_, found, repeat(None))))
        if len(values) + len(missing) > self._limit:
            values.clear()
            self._items.clear()
            missing = list(items)
        for item in missing:
            values[id(item)] = self._build(item)
            self._items.append(item)
        return list(map(values.__getitem__, map(id, items)))


class IncrementalDecider:
    """One agent's decide(), remembered between passes; `decide()` takes decide()'s inputs."""

    def __init__(self, config: DecideConfig) -> None:
        self.config = config
        self._reset()
        self.redecided = 0  # Services re-decided by the last call (bench, tests)
        self.full = False  # whether the last call decided everything again

    def _reset(self) -> None:
        self._global: tuple[object, ...] | None = None
        self._snapshot = ClusterSnapshot({}, {})
        self._leadership, self._probes, self._dhcp = NO_LEADERSHIP, NO_PROBES, NO_LEASES
        self._decisions: dict[ServiceKey, ServiceDecision] = {}
        self._problems: dict[ServiceKey, tuple[BadInput, ...]] = {}  # non-empty only, as are the others
        self._egress: dict[ServiceKey, frozenset[EgressRule]] = {}
        self._egress_problems: dict[ServiceKey, tuple[BadInput, ...]] = {}
        # Services whose decision asks for the VIP (`_Held`: nearly always one, kept bare; a set once two
        # share it). Its owners (those advertised here) are read off their decisions (`_revip`).
        self._users: dict[IPAddress, _Held] = {}
        self._ads: dict[IPAddress, Advertisement] = {}
        self._clashes: dict[IPAddress, tuple[BadInput, ...]] = {}
        self._conflicts: dict[IPAddress, tuple[BadInput, ...]] = {}
        # Address of an endpoint on this node → its Services, for probe verdicts alone: built at the first
        # verdict that changes (`_local_index`; probes are opt-in), kept up to date from then on. A Service's
        # own addresses are not kept: they are read again from the previous snapshot's endpoints, those it was
        # last decided with (`_redecide`).
        self._local: dict[str, _Held] | None = None
        # Whether `_decisions` and `_ads` are the very dicts of the last answer (lent, not copied: one copy
        # of 10,000 entries fewer kept between passes); the next pass that changes them copies them first.
        self._lent = False

    def decide(self, snapshot: ClusterSnapshot, leadership: Leadership = NO_LEADERSHIP,
               probes: ProbeVerdicts = NO_PROBES, draining: bool = False, *,
               control_plane: ControlPlaneState | None = None, dhcp: Leases = NO_LEASES) -> DesiredState:
        """Equal to `decide(self.config, snapshot, ...)` with the same arguments (problems in another order)."""
        reserved = frozenset(control_plane.addresses) if control_plane is not None else frozenset()
        everyone = (snapshot.node, draining, reserved, leadership.is_global_leader)
        vips: set[IPAddress] = set()
        if everyone != self._global:
            self._reset()  # (_global is None now: `full` below)
            dirty = set(snapshot.services)
        else:
            dirty = self._dirty(snapshot, leadership, probes, dhcp, vips)
        self.full, self.redecided = everyone != self._global, len(dirty)
        self._global = everyone
        before = self._snapshot.endpoints  # what every Service not dirty now was last decided with
        self._snapshot, self._leadership, self._probes, self._dhcp = snapshot, leadership, probes, dhcp
        node_block = node_blocker(self.config, snapshot.node, draining)
        if self._lent and (dirty or vips):
            self._decisions, self._ads, self._lent = dict(self._decisions), dict(self._ads), False
        try:
            for key in dirty:
                self._redecide(key, node_block, reserved, vips, before)
            for vip in vips:
                self._revip(vip, draining)
        except BaseException:
            self._reset()  # a half-updated memo must not outlive the pass: the next one decides everything
            raise
        return self._state(control_plane)

    def _dirty(self, snapshot: ClusterSnapshot, leadership: Leadership, probes: ProbeVerdicts, dhcp: Leases,
               vips: set[IPAddress]) -> set[ServiceKey]:
        """The Services whose own inputs changed since the last call; `vips` gets the VIPs a changed DHCP
        lease held or holds (an advertisement's interface follows the lease)."""
        dirty = changed_keys(self._snapshot.services, snapshot.services)
        dirty |= changed_keys(self._snapshot.endpoints, snapshot.endpoints, ())
        dirty |= self._leadership.led_services ^ leadership.led_services
        flipped = self._probes.failing ^ probes.failing
        if flipped:
            local = self._local_index()
            for address in flipped:
                dirty.update(_members(local.get(address)))
        for key in changed_keys(self._dhcp, dhcp):
            dirty.add(key)
            vips.update(address for lease in (self._dhcp.get(key), dhcp.get(key)) if lease is not None
                        for address in lease.addresses)
        return dirty

    def _redecide(self, key: ServiceKey, node_block: str | None, reserved: frozenset[IPAddress],
                  vips: set[IPAddress], before: Mapping[ServiceKey, tuple[EndpointView, ...]]) -> None:
        # Replaced in place, never popped and re-added: a Service keeps its place in the answer, so the next
        # pass's observers compare the two answers side by side, without hashing a key (`changed_keys`).
        old = self._decisions.get(key)
        if old is not None:
            vips.update(old.vips)
            for vip in old.vips:
                _discard(self._users, vip, key)
        # The endpoints this Service was last decided with are the previous snapshot's: had they changed
        # since, it would have been re-decided then (equal copies give equal addresses).
        node_name, local = self.config.node_name, self._local
        if local is not None:
            for endpoint in before.get(key, ()):
                if endpoint.node_name == node_name:
                    for address in endpoint.addresses:
                        _discard(local, address, key)
        for memo in (self._problems, self._egress, self._egress_problems):
            memo.pop(key, None)
        service = self._snapshot.services.get(key)
        if service is None:
            self._decisions.pop(key, None)
            return
        endpoints = self._snapshot.endpoints.get(key, ())
        if local is not None:
            _add_local(local, node_name, key, endpoints)
        decision, found = service_outcome(self.config, service, endpoints, node_block, self._leadership,
                                          self._probes, reserved, self._snapshot.node, self._dhcp)
        _keep(self._problems, key, found)
        if decision is None:
            self._decisions.pop(key, None)
            return
        self._decisions[key] = decision
        vips.update(decision.vips)
        for vip in decision.vips:
            _add(self._users, vip, key)
        egress_found: list[BadInput] = []
        _keep(self._egress, key, egress_rules(self.config.egress, {key: service}, {key: decision}, egress_found))
        _keep(self._egress_problems, key, tuple(egress_found))

    def _revip(self, vip: IPAddress, draining: bool) -> None:
        services = self._snapshot.services
        users = self._users.get(vip)
        if type(users) is set:  # (one user: no clash, nothing to sort)
            _keep(self._conflicts, vip, tuple(conflicts_on(services, vip, sorted(users))))
        else:
            self._conflicts.pop(vip, None)
        decisions = self._decisions
        owners = [key for key in _members(users) if decisions[key].advertised]
        if not owners:
            self._ads.pop(vip, None)
            self._clashes.pop(vip, None)
            return
        self._ads[vip], clashes = vip_advertisement(self.config, services, owners, vip, draining, self._dhcp)
        _keep(self._clashes, vip, clashes)

    def _local_index(self) -> dict[str, _Held]:
        """`_local`, built from the previous snapshot (what each Service was last decided with) if not yet."""
        if self._local is None:
            local: dict[str, _Held] = {}
            node_name, services = self.config.node_name, self._snapshot.services
            for key, endpoints in self._snapshot.endpoints.items():
                if key in services:  # (a Service decided; `_redecide` indexes no other)
                    _add_local(local, node_name, key, endpoints)
            self._local = local
        return self._local

    def _state(self, control_plane: ControlPlaneState | None) -> DesiredState:
        decisions: dict[ServiceKey, ServiceDecision] = self._decisions
        advertisements: dict[IPAddress, Advertisement] = self._ads
        cp_found: tuple[BadInput, ...] = ()
        if control_plane is None:
            self._lent = True  # nothing added: the answer holds the memo's own dicts (`decide` copies them)
        else:
            decisions, advertisements = dict(decisions), dict(advertisements)
            decisions[CONTROL_PLANE_KEY], cp_found, cp_vips = control_plane_part(self.config, control_plane,
                                                                                  self._leadership)
            advertisements.update(cp_vips)
        problems = tuple(chain(chain.from_iterable(self._problems.values()),
                               chain.from_iterable(self._conflicts.values()),
                               chain.from_iterable(self._clashes.values()), cp_found,
                               chain.from_iterable(self._egress_problems.values())))
        return DesiredState(advertisements, decisions, problems, frozenset().union(*self._egress.values()))


# One index entry: a Service alone, or a set of two or more. Most VIPs and endpoint addresses belong to one
# Service, and a set of one cost 216 bytes each (tens of thousands of them at 10,000 Services).
_Held = ServiceKey | set[ServiceKey]


def _members(held: _Held | None) -> Collection[ServiceKey]:
    if held is None:
        return ()
    return held if type(held) is set else (held,)  # type: ignore[return-value]


def _add(index: dict[K, _Held], at: K, key: ServiceKey) -> None:
    held = index.get(at)
    if held is None:
        index[at] = key
    elif type(held) is set:
        held.add(key)
    elif held != key:
        index[at] = {held, key}  # type: ignore[arg-type]


def _add_local(index: dict[str, _Held], node_name: str, key: ServiceKey, endpoints: tuple[EndpointView, ...]
               ) -> None:
    for endpoint in endpoints:
        if endpoint.node_name == node_name:
            for address in endpoint.addresses:
                _add(index, address, key)


def _discard(index: dict[K, _Held], at: K, key: ServiceKey) -> None:
    held = index.get(at)
    if held is None:
        return
    if type(held) is set:
        held.discard(key)
        if len(held) < 2:  # back to one Service: kept bare again
            if held:
                index[at] = held.pop()
            else:
                del index[at]
    elif held == key:
        del index[at]


def _keep(memo: dict[K, V], at: K, value: V) -> None:
    """Store only what is not empty, so a pass assembles the answer from what exists."""
    if value:
        memo[at] = value
    else:
        memo.pop(at, None)
