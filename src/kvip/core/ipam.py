"""LoadBalancer IP allocation, compatible with kube-vip-cloud-provider's ConfigMap — pure.

`plan()` takes the pools and every LoadBalancer Service as the cluster has them now and returns the
IPs to give to the services that have none. Nothing is remembered between calls: what is allocated is
read back from the services themselves (the `kube-vip.io/loadbalancerIPs` annotation, or a user's
`spec.loadBalancerIP`), so a restart, a deleted service or a type change frees addresses by design,
and two services can never receive one IP unless both ask to share it and their ports do not clash.
"""

from __future__ import annotations

import ipaddress
from collections import defaultdict
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field

from kvip.core.model import BadInput, ServiceKey, ServiceView
from kvip.core.vips import LOADBALANCER_IPS_ANNOTATION

SHARE_ANNOTATION = "kvip.io/allow-shared-ip"
FAMILIES = {"IPv4": 4, "IPv6": 6}


@dataclass(frozen=True)
class Pool:
    """Address ranges (inclusive integer bounds) per IP version, in the order the ConfigMap lists them."""

    name: str
    ranges: Mapping[int, tuple[tuple[int, int], ...]]

    def addresses(self, version: int) -> Iterator[int]:
        for first, last in self.ranges.get(version, ()):
            yield from range(first, last + 1)


@dataclass(frozen=True)
class PoolConfig:
    pools: Mapping[str, Pool]  # "global" or a namespace
    allow_share: frozenset[str] = frozenset()  # namespaces where sharing by annotation is allowed
    problems: tuple[str, ...] = ()

    def candidates(self, namespace: str) -> list[Pool]:
        return [p for p in (self.pools.get(namespace), self.pools.get("global")) if p is not None]


def _usable_range(first: ipaddress.IPv4Address | ipaddress.IPv6Address,
                  last: ipaddress.IPv4Address | ipaddress.IPv6Address) -> tuple[int, int]:
    if first.version != last.version or int(last) < int(first):
        raise ValueError(f"{first}-{last} is not a range")
    return int(first), int(last)


def _parse_entries(kind: str, text: str) -> dict[int, list[tuple[int, int]]]:
    found: dict[int, list[tuple[int, int]]] = defaultdict(list)
    for raw in (part.strip() for part in text.split(",")):
        if not raw:
            continue
        if kind == "cidr":
            net = ipaddress.ip_network(raw, strict=False)
            hosts = (net.network_address, net.broadcast_address)
            if net.version == 4 and net.prefixlen < 31:  # skip network and broadcast, as the provider does
                hosts = (net.network_address + 1, net.broadcast_address - 1)
            found[net.version].append(_usable_range(*hosts))
        else:
            start, _, end = raw.partition("-")
            first, last = ipaddress.ip_address(start.strip()), ipaddress.ip_address(end.strip() or start.strip())
            found[first.version].append(_usable_range(first, last))
    return found


def parse_pools(data: Mapping[str, str]) -> PoolConfig:
    """The `kubevip` ConfigMap's data: cidr-/range-<global|namespace>, allow-share-<namespace>."""
    merged: dict[str, dict[int, list[tuple[int, int]]]] = defaultdict(lambda: defaultdict(list))
    share: set[str] = set()
    problems: list[str] = []
    for key, value in sorted(data.items()):
        kind, _, scope = key.partition("-")
        if kind in ("cidr", "range") and scope:
            try:
                for version, ranges in _parse_entries(kind, value).items():
                    merged[scope][version].extend(ranges)
            except ValueError as exc:
                problems.append(f"{key}: {exc}; entry ignored, other pools unaffected")
        elif key.startswith("allow-share-") and value.strip().lower() == "true":
            share.add(key[len("allow-share-"):])
    pools = {scope: Pool(scope, {v: tuple(r) for v, r in versions.items()}) for scope, versions in merged.items()}
    return PoolConfig(pools, frozenset(share), tuple(problems))


@dataclass(frozen=True)
class Holder:
    service: ServiceKey
    share_key: str | None
    ports: frozenset[tuple[int | None, str]]


@dataclass
class _Ledger:
    """Who holds each address during one plan (built from the cluster, never persisted)."""

    holders: dict[tuple[int, int], list[Holder]] = field(default_factory=lambda: defaultdict(list))
    cursors: dict[tuple[str, int], Iterator[int]] = field(default_factory=dict)

    def can_take(self, address: tuple[int, int], who: Holder, share_allowed: bool) -> bool:
        current = self.holders.get(address)
        if not current:
            return True
        if not share_allowed or who.share_key is None:
            return False
        return all(h.share_key == who.share_key and not (h.ports & who.ports) for h in current)

    def take(self, address: tuple[int, int], who: Holder) -> None:
        self.holders[address].append(who)


def wanted_families(service: ServiceView) -> tuple[int, ...]:
    families = tuple(FAMILIES[f] for f in service.ip_families if f in FAMILIES) or (4,)
    if service.ip_family_policy in ("PreferDualStack", "RequireDualStack") and len(families) == 1:
        families = families + ((6,) if families[0] == 4 else (4,))
    return families if service.ip_family_policy in ("PreferDualStack", "RequireDualStack") else families[:1]


def current_ips(service: ServiceView) -> tuple[str, ...]:
    annotated = service.annotations.get(LOADBALANCER_IPS_ANNOTATION, "")
    ips = tuple(p.strip() for p in annotated.split(",") if p.strip())
    if ips:
        return ips
    return (service.load_balancer_ip,) if service.load_balancer_ip else ()


def plan(config: PoolConfig, services: Iterable[ServiceView]) -> tuple[dict[ServiceKey, tuple[str, ...]],
                                                                        list[BadInput]]:
    """New allocations for services without an IP, and problems (exhausted pool, clash, no pool)."""
    ledger = _Ledger()
    pending: list[ServiceView] = []
    problems: list[BadInput] = []
    ordered = sorted(services, key=lambda s: s.key)
    for service in ordered:
        holder = _holder(service)
        held = current_ips(service)
        if not held:
            pending.append(service)
            continue
        for text in held:
            try:
                parsed = ipaddress.ip_address(text)
                address = (parsed.version, int(parsed))
            except ValueError:
                continue  # decide() reports malformed VIPs; allocation just does not count them
            allowed = service.key.namespace in config.allow_share
            if not ledger.can_take(address, holder, allowed):
                problems.append(BadInput(service.key, "IPClash",
                                         f"{text} is already used by {ledger.holders[address][0].service} and may "
                                         "not be shared (sharing key and non-overlapping ports required)"))
            ledger.take(address, holder)
    assignments: dict[ServiceKey, tuple[str, ...]] = {}
    for service in pending:
        pools = config.candidates(service.key.namespace)
        if not pools:
            problems.append(BadInput(service.key, "NoPool",
                                     f"no cidr/range for namespace {service.key.namespace!r} or global in ConfigMap"))
            continue
        chosen = _allocate(service, pools, ledger, service.key.namespace in config.allow_share)
        if chosen is None:
            problems.append(BadInput(service.key, "PoolExhausted",
                                     f"no free address in pool(s) {', '.join(p.name for p in pools)}"))
            continue
        assignments[service.key] = chosen
    return assignments, problems


def _holder(service: ServiceView) -> Holder:
    share = service.annotations.get(SHARE_ANNOTATION, "").strip() or None
    return Holder(service.key, share, frozenset((p.port, p.protocol) for p in service.ports))


def _allocate(service: ServiceView, pools: Sequence[Pool], ledger: _Ledger, share_allowed: bool
              ) -> tuple[str, ...] | None:
    holder = _holder(service)
    picked: list[tuple[int, int]] = []
    for version in wanted_families(service):
        address = _first_fit(version, pools, ledger, holder, share_allowed)
        if address is None:
            if service.ip_family_policy == "PreferDualStack" and picked:
                continue  # one family is enough when dual stack is only preferred
            return None
        picked.append(address)
    for address in picked:
        ledger.take(address, holder)
    return tuple(str(_ip(a)) for a in picked)


def _ip(address: tuple[int, int]) -> ipaddress.IPv4Address | ipaddress.IPv6Address:
    return ipaddress.IPv4Address(address[1]) if address[0] == 4 else ipaddress.IPv6Address(address[1])


def _first_fit(version: int, pools: Sequence[Pool], ledger: _Ledger, holder: Holder,
               share_allowed: bool) -> tuple[int, int] | None:
    if share_allowed and holder.share_key is not None:
        for address in sorted(ledger.holders):
            if address[0] == version and ledger.can_take(address, holder, True) and any(
                    f <= address[1] <= l for p in pools for f, l in p.ranges.get(version, ())):
                return address
    for pool in pools:
        # One cursor per pool and family for the whole plan: lowest free first, without rescanning
        # from the start for each of 10,000 services.
        cursor = ledger.cursors.setdefault((pool.name, version), pool.addresses(version))
        for value in cursor:
            if (version, value) not in ledger.holders:
                return (version, value)
    return None
