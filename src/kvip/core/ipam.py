"""LoadBalancer IP allocation, behaving like kube-vip-cloud-provider on its `kubevip` ConfigMap — pure.

`plan()` takes the pools and every LoadBalancer Service as the cluster has them now and returns the
IPs to give to the services that have none. Nothing is remembered between calls: what is allocated is
read back from the services themselves (the `kube-vip.io/loadbalancerIPs` annotation, or a user's
`spec.loadBalancerIP`), so a restart, a deleted service or a type change frees addresses by design,
and two services can never receive one IP unless sharing is allowed and their ports do not clash.

The provider's rules, kept here (docs/migrating-from-kube-vip.md lists where kvip differs):
- one pool per Service: the first of `cidr-<ns>`, `cidr-global`, `range-<ns>`, `range-global`; a value with
  a `/` is read as CIDRs, otherwise as ranges, whatever its key says; no fallback when it is full;
- `allow-share-<ns>`, else `allow-share-global`: a new Service takes an IPv4 address already in use when
  none of its port numbers is used there (a Service without ports makes its address unshareable);
- `search-order: desc` hands out the highest free address first; IPv4 addresses ending in .0 or .255
  are never handed out; a CIDR's first and last address are removed only with `skip-end-ips-in-cidr`
  (not from a /31 or /32);
- `interface-<ns>`, else `interface-global`, goes with a new allocation as `kube-vip.io/serviceInterface`;
- PreferDualStack takes what it can get (one family is enough), RequireDualStack all or nothing.
"""

from __future__ import annotations

import bisect
import ipaddress
from collections import defaultdict
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field

from kvip.core.model import BadInput, ServiceKey, ServiceView, shown
from kvip.core.vips import LOADBALANCER_IPS_ANNOTATION

SHARE_ANNOTATION = "kvip.io/allow-shared-ip"
FAMILIES = {"IPv4": 4, "IPv6": 6}
DHCP_POOL = "0.0.0.0/32"
# Go's strconv.ParseBool, which the provider reads allow-share-* with.
_TRUE = frozenset({"1", "t", "T", "TRUE", "true", "True"})
_FALSE = frozenset({"0", "f", "F", "FALSE", "false", "False"})
_SCOPED = ("cidr", "range", "allow-share", "interface")

Address = tuple[int, int]  # (IP version, integer value)


class PoolError(ValueError):
    """A pool value the provider could not use either; the message says which entry and why."""


@dataclass(frozen=True)
class Pool:
    """One ConfigMap key's addresses: merged, ascending, inclusive integer bounds per IP version."""

    key: str
    ranges: Mapping[int, tuple[tuple[int, int], ...]]

    def addresses(self, version: int) -> Iterator[int]:
        """Every address of the pool, lowest first (what the provider's address set holds)."""
        for first, last in self.ranges.get(version, ()):
            yield from range(first, last + 1)

    def candidates(self, version: int, descending: bool) -> Iterator[int]:
        """Addresses in hand-out order; IPv4 .0 and .255 are skipped, as the provider always does."""
        bounds = self.ranges.get(version, ())
        for first, last in reversed(bounds) if descending else bounds:
            for value in range(last, first - 1, -1) if descending else range(first, last + 1):
                if version != 4 or value & 0xFF not in (0, 0xFF):
                    yield value

    def __contains__(self, address: Address) -> bool:
        bounds = self.ranges.get(address[0], ())
        i = bisect.bisect_right(bounds, (address[1], 2**128)) - 1
        return i >= 0 and bounds[i][0] <= address[1] <= bounds[i][1]


@dataclass(frozen=True)
class PoolConfig:
    pools: Mapping[str, Pool]  # by ConfigMap key: "cidr-global", "range-shop", ...
    broken: Mapping[str, str] = field(default_factory=dict)  # keys present but unusable, and why
    allow_share: frozenset[str] = frozenset()  # scopes whose allow-share-<scope> is true
    share_keys: frozenset[str] = frozenset()  # scopes with an allow-share key at all (a false one ends the lookup)
    interfaces: Mapping[str, str] = field(default_factory=dict)
    descending: bool = False
    skip_end_ips: bool = False
    problems: tuple[str, ...] = ()

    def pool_key(self, namespace: str) -> str | None:
        for key in (f"cidr-{namespace}", "cidr-global", f"range-{namespace}", "range-global"):
            if key in self.pools or key in self.broken:
                return key
        return None

    def share_allowed(self, namespace: str) -> bool:
        scope = namespace if namespace in self.share_keys else "global"
        return scope in self.allow_share

    def interface(self, namespace: str) -> str | None:
        found = self.interfaces.get(namespace, self.interfaces.get("global"))
        return found or None


def _address(text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address:
    try:
        return ipaddress.ip_address(text.strip())
    except ValueError:
        raise PoolError(f"{text.strip()!r} is not an IP address") from None


def _entry_ranges(raw: str) -> tuple[int, int, int]:
    start, sep, end = raw.partition("-")
    first = _address(start)
    last = _address(end) if sep else first
    if first.version != last.version or int(last) < int(first):
        raise PoolError(f"{raw!r} is not a range (first-last, one IP version, first <= last)")
    return first.version, int(first), int(last)


def _merge(ranges: Iterable[tuple[int, int, int]]) -> dict[int, tuple[tuple[int, int], ...]]:
    merged: dict[int, list[tuple[int, int]]] = defaultdict(list)
    for version, first, last in sorted(ranges):
        out = merged[version]
        if out and first <= out[-1][1] + 1:
            out[-1] = (out[-1][0], max(out[-1][1], last))
        else:
            out.append((first, last))
    return {version: tuple(r) for version, r in merged.items()}


def parse_pool(key: str, value: str, skip_end_ips: bool = False) -> Pool:
    """One `cidr-*`/`range-*` value; `PoolError` when any entry is unusable (the provider fails the pool)."""
    entries = [part.strip() for part in value.split(",") if part.strip()]
    if not entries:
        raise PoolError("is empty")
    if value.strip() == DHCP_POOL:
        raise PoolError(f"{DHCP_POOL} asks kube-vip for DHCP addresses; kvip does not allocate through DHCP")
    ranges: list[tuple[int, int, int]] = []
    networks = []
    for raw in entries:
        if "/" not in raw:
            ranges.append(_entry_ranges(raw))
            continue
        try:
            networks.append(ipaddress.ip_network(raw, strict=False))
        except ValueError as exc:
            raise PoolError(f"{raw!r}: {exc}") from None
    for version in (4, 6):
        # Like the provider's address set: overlapping CIDRs merge first, then each resulting prefix loses
        # its network and broadcast address when asked (never a /31 or /32: RFC 3021).
        for net in ipaddress.collapse_addresses(n for n in networks if n.version == version):
            first, last = int(net.network_address), int(net.broadcast_address)
            if version == 4 and skip_end_ips and net.prefixlen < 31:
                first, last = first + 1, last - 1
            ranges.append((version, first, last))
    return Pool(key, _merge(ranges))


def parse_pools(data: Mapping[str, str]) -> PoolConfig:
    """The `kubevip` ConfigMap's data, read as the provider reads it; problems are one line each."""
    problems: list[str] = []
    descending = _switch(data, "search-order", "desc", "asc", problems)
    skip_end = _switch(data, "skip-end-ips-in-cidr", "true", "false", problems)
    pools: dict[str, Pool] = {}
    broken: dict[str, str] = {}
    allow: set[str] = set()
    share_keys: set[str] = set()
    interfaces: dict[str, str] = {}
    for key, value in sorted(data.items()):
        kind = next((k for k in _SCOPED if key.startswith(k + "-") and len(key) > len(k) + 1), None)
        scope = key[len(kind) + 1:] if kind else ""
        if kind in ("cidr", "range"):
            try:
                pools[key] = parse_pool(key, value, skip_end)
            except PoolError as exc:
                broken[key] = str(exc)
                problems.append(f"{key}: {exc}; Services whose pool this is get no address")
        elif kind == "allow-share":
            share_keys.add(scope)
            if value in _TRUE:
                allow.add(scope)
            elif value not in _FALSE:
                problems.append(f"{key}={value!r} is not a boolean; sharing is off for {scope}")
        elif kind == "interface":
            interfaces[scope] = value.strip()
        elif key not in ("search-order", "skip-end-ips-in-cidr"):
            problems.append(f"{key}: not a kube-vip-cloud-provider key; ignored")
    return PoolConfig(pools, broken, frozenset(allow), frozenset(share_keys), interfaces, descending, skip_end,
                      tuple(problems))


def _switch(data: Mapping[str, str], key: str, on: str, off: str, problems: list[str]) -> bool:
    value = data.get(key)
    if value is not None and value not in (on, off):
        problems.append(f"{key}={value!r} is neither {on!r} nor {off!r}; read as {off!r}, as the provider does")
    return value == on


@dataclass(frozen=True)
class Holder:
    service: ServiceKey
    share_key: str | None
    ports: frozenset[int]


@dataclass(frozen=True)
class Allocation:
    """What the controller writes on a Service: its addresses and, when configured, its interface."""

    ips: tuple[str, ...]
    interface: str | None = None


def _compatible(current: list[Holder], who: Holder) -> bool:
    """Sharing one address: every holder has ports, none of the port numbers meets (the provider compares
    numbers, not protocols), and the `kvip.io/allow-shared-ip` keys agree (absent on both counts)."""
    return all(h.ports and not (h.ports & who.ports) and h.share_key == who.share_key for h in current)


class _Cursor:
    """Walks a pool once per plan: taken addresses are never released during a plan, so the next free one
    is never behind the cursor. The head is kept until taken, so a failed RequireDualStack loses nothing."""

    def __init__(self, candidates: Iterator[int]) -> None:
        self._candidates = candidates
        self._head: int | None = None

    def next_free(self, version: int, holders: Mapping[Address, list[Holder]]) -> Address | None:
        while True:
            if self._head is None:
                self._head = next(self._candidates, None)
                if self._head is None:
                    return None
            if (version, self._head) not in holders:
                return (version, self._head)
            self._head = None


@dataclass
class _Ledger:
    """Who holds each address during one plan (built from the cluster, never persisted)."""

    holders: dict[Address, list[Holder]] = field(default_factory=lambda: defaultdict(list))
    cursors: dict[tuple[str, int], _Cursor] = field(default_factory=dict)
    _held_v4: list[int] | None = None  # sorted, built on the first sharing search

    def take(self, address: Address, who: Holder) -> None:
        if address not in self.holders and address[0] == 4 and self._held_v4 is not None:
            bisect.insort(self._held_v4, address[1])
        self.holders[address].append(who)

    def free(self, pool: Pool, version: int, descending: bool) -> Address | None:
        cursor = self.cursors.get((pool.key, version))
        if cursor is None:
            cursor = self.cursors[(pool.key, version)] = _Cursor(pool.candidates(version, descending))
        return cursor.next_free(version, self.holders)

    def shareable(self, pool: Pool, who: Holder, namespace: str | None) -> Address | None:
        """The lowest IPv4 address of the pool in use that `who` may join (the provider: any such address).
        `namespace`: a namespace's own pool is shared within that namespace only, as the provider lists it."""
        if self._held_v4 is None:
            self._held_v4 = sorted(v for version, v in self.holders if version == 4)
        for value in self._held_v4:
            current = self.holders[(4, value)]
            if (4, value) in pool and _compatible(current, who) and (
                    namespace is None or all(h.service.namespace == namespace for h in current)):
                return (4, value)
        return None


def wanted_families(service: ServiceView, pool: Pool) -> tuple[tuple[int, ...], bool] | str:
    """The IP versions to allocate, in order, and whether all are required; or why none can be."""
    families = [FAMILIES[f] for f in service.ip_families if f in FAMILIES]
    has = {v for v in (4, 6) if pool.ranges.get(v)}
    if service.ip_family_policy in ("PreferDualStack", "RequireDualStack"):
        if service.ip_family_policy == "RequireDualStack" and has != {4, 6}:
            return f"RequireDualStack needs IPv4 and IPv6 addresses in {pool.key}"
        primary = 6 if families and families[0] == 6 else 4
        return tuple(v for v in (primary, 10 - primary) if v in has), service.ip_family_policy == "RequireDualStack"
    version = families[0] if families else (4 if 4 in has else 6)
    if version not in has:
        return f"{pool.key} has no IPv{version} address for this IPv{version} Service"
    return (version,), True


def current_ips(service: ServiceView) -> tuple[str, ...]:
    annotated = service.annotations.get(LOADBALANCER_IPS_ANNOTATION, "")
    ips = tuple(p.strip() for p in annotated.split(",") if p.strip())
    if ips:
        return ips
    return (service.load_balancer_ip,) if service.load_balancer_ip else ()


def _held_address(text: str) -> Address | None:
    """The address a Service holds, read broadly on purpose: not `vips.parse_vip`, which refuses what agents
    cannot advertise (link-local, IPv4-mapped). Such an address is still in use (a link-local one from a
    pool, say); giving it to a second Service would be a double allocation. decide() reports it. Text with
    a zone id is the exception: no pool hands it out, so only a tenant's hostile spec holds it."""
    if "%" in text:
        return None  # a zone id is never a VIP (decide() refuses it), so it must not block a real claim
    try:
        parsed = ipaddress.ip_address(text)
    except ValueError:
        return None  # not an address at all: decide() reports it; allocation just does not count it
    return parsed.version, int(parsed)


def plan(config: PoolConfig, services: Iterable[ServiceView], deleting: frozenset[ServiceKey] = frozenset()
         ) -> tuple[dict[ServiceKey, Allocation], list[BadInput]]:
    """New allocations for services without an IP (not for those being deleted: `deleting`), and problems
    (no pool, unusable pool, exhausted pool, clash; a PreferDualStack Service left with one family)."""
    ledger = _Ledger()
    pending: list[ServiceView] = []
    problems: list[BadInput] = []
    for service in sorted(services, key=lambda s: s.key):
        held = current_ips(service)
        if not held:
            if service.key not in deleting:
                pending.append(service)
            continue
        holder = _holder(service)
        allowed = config.share_allowed(service.key.namespace)
        for text in held:
            address = _held_address(text)
            if address is None:
                continue
            current = ledger.holders.get(address)
            if current and not (allowed and _compatible(current, holder)):
                problems.append(BadInput(service.key, "IPClash",
                                         f"{shown(text)} is already used by {current[0].service} and may not be shared "
                                         "(allow-share, one kvip.io/allow-shared-ip key and distinct ports required)"))
            ledger.take(address, holder)
    assignments: dict[ServiceKey, Allocation] = {}
    for service in pending:
        allocation = _allocate(config, service, ledger, problems)
        if allocation is not None:
            assignments[service.key] = allocation
    return assignments, problems


def _holder(service: ServiceView) -> Holder:
    share = service.annotations.get(SHARE_ANNOTATION, "").strip() or None
    return Holder(service.key, share, frozenset(p.port for p in service.ports if p.port is not None))


def _allocate(config: PoolConfig, service: ServiceView, ledger: _Ledger, problems: list[BadInput]
              ) -> Allocation | None:
    namespace = service.key.namespace
    key = config.pool_key(namespace)
    if key is None:
        problems.append(BadInput(service.key, "NoPool", f"no cidr-{namespace}, cidr-global, range-{namespace} "
                                                         "or range-global key in the ConfigMap"))
        return None
    pool = config.pools.get(key)
    if pool is None:
        problems.append(BadInput(service.key, "PoolInvalid", f"pool {key} {config.broken[key]}"))
        return None
    families = wanted_families(service, pool)
    if isinstance(families, str):
        problems.append(BadInput(service.key, "NoPoolForFamily", families))
        return None
    versions, required = families
    holder = _holder(service)
    share_scope = None if key.endswith("-global") else namespace
    picked: list[Address] = []
    missing: list[int] = []
    for version in versions:
        address = None
        if version == 4 and config.share_allowed(namespace):
            address = ledger.shareable(pool, holder, share_scope)
        if address is None:
            address = ledger.free(pool, version, config.descending)
        if address is None:
            missing.append(version)
        else:
            picked.append(address)
    if not picked or (required and missing):
        which = "/".join(f"IPv{v}" for v in missing or versions)
        problems.append(BadInput(service.key, "PoolExhausted", f"no free {which} address in {key}"))
        return None
    if missing:
        problems.append(BadInput(service.key, "PartialDualStack", f"PreferDualStack: no free IPv{missing[0]} "
                                                                   f"address in {key}; single stack for now"))
    for address in picked:
        ledger.take(address, holder)
    return Allocation(tuple(str(_ip(a)) for a in picked), config.interface(namespace))


def _ip(address: Address) -> ipaddress.IPv4Address | ipaddress.IPv6Address:
    return ipaddress.IPv4Address(address[1]) if address[0] == 4 else ipaddress.IPv6Address(address[1])
