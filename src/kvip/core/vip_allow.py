"""The optional VIP allow-list: which addresses a namespace's Services may have advertised — pure.

kube-vip advertises whatever address a Service names, so anyone who may create a Service can claim a
gateway, a node's address or another tenant's VIP. With the allow-list on, a VIP is advertised only
inside the CIDRs allowed to its Service's namespace: that namespace's own entry if it has one (it
replaces the global list), else the global list minus every namespace's own entry (a tenant's range is
its own even where the global list overlaps it), else nothing. Off (None in `DecideConfig`) unless one
of the two options is set, for kube-vip compatibility.

The parsers here are the option table's: each raises `InvalidAllowList` (a ValueError) with one line.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

from kvip.core.model import IPAddress, shown

Network = ipaddress.IPv4Network | ipaddress.IPv6Network
GLOBAL_OPTION = "kvip_vip_allow"
NAMESPACE_OPTION = "kvip_vip_allow_namespaces"
MAX_CIDRS = 256  # per list: an operator's list, not a routing table; bounds the work per VIP
_NAMESPACE = re.compile(r"[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?")  # RFC 1123 label, as Kubernetes names namespaces


class InvalidAllowList(ValueError):
    """An allow-list option that cannot be read; the message is the one line to show."""


def parse_cidrs(text: str) -> tuple[Network, ...]:
    """'10.96.0.0/16,2001:db8::/64' → networks. Host bits set, an empty entry list or a bare address
    with a zone id are refused: an allow-list that does not mean what it says is worse than none."""
    entries = [part.strip() for part in text.split(",")]
    if not any(entries):
        raise InvalidAllowList("lists no CIDR")
    if len(entries) > MAX_CIDRS:
        raise InvalidAllowList(f"lists {len(entries)} CIDRs, more than {MAX_CIDRS}")
    found: list[Network] = []
    for entry in entries:
        if not entry:
            raise InvalidAllowList(f"{text!r} has an empty entry")
        if "%" in entry or not entry.isascii() or "/" not in entry:
            raise InvalidAllowList(f"{entry!r} is not a CIDR (address/prefix length)")
        try:
            network = ipaddress.ip_network(entry)
        except ValueError as exc:
            raise InvalidAllowList(f"{entry!r} is not a CIDR: {exc}") from None
        if network not in found:
            found.append(network)
    return tuple(found)


def parse_namespace_cidrs(text: str) -> tuple[tuple[str, tuple[Network, ...]], ...]:
    """'team-a=10.96.1.0/24;team-b=10.96.2.0/24,2001:db8:b::/64' → ((namespace, networks), ...)."""
    found: dict[str, tuple[Network, ...]] = {}
    for entry in (part.strip() for part in text.split(";")):
        if not entry:
            continue
        namespace, sep, cidrs = (s.strip() for s in entry.partition("="))
        if not sep:
            raise InvalidAllowList(f"{entry!r} is not namespace=CIDR[,CIDR...]")
        if not _NAMESPACE.fullmatch(namespace):
            raise InvalidAllowList(f"{namespace!r} is not a namespace name")
        if namespace in found:
            raise InvalidAllowList(f"namespace {namespace} is listed twice")
        try:
            found[namespace] = parse_cidrs(cidrs)
        except InvalidAllowList as exc:
            raise InvalidAllowList(f"namespace {namespace}: {exc}") from None
    if not found:
        raise InvalidAllowList("lists no namespace")
    return tuple(sorted(found.items()))


def _described(networks: tuple[Network, ...]) -> str:
    shown_ = ",".join(str(n) for n in networks[:4])
    return shown_ + (f",... ({len(networks)} CIDRs)" if len(networks) > 4 else "")


@dataclass(frozen=True)
class VipAllowList:
    """`global_cidrs` None: kvip_vip_allow unset (namespaces without their own entry may claim nothing)."""

    global_cidrs: tuple[Network, ...] | None = None
    namespaces: tuple[tuple[str, tuple[Network, ...]], ...] = ()
    _by_namespace: Mapping[str, tuple[Network, ...]] = field(init=False, repr=False, compare=False, hash=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_by_namespace", MappingProxyType(dict(self.namespaces)))

    def refusal(self, namespace: str, vip: IPAddress) -> str | None:
        """Why `vip` may not be advertised for a Service of `namespace`, naming the rule; None if allowed."""
        own = self._by_namespace.get(namespace)
        if own is not None:
            networks, rule = own, f"{NAMESPACE_OPTION} entry for namespace {namespace}"
        elif self.global_cidrs is not None:
            networks, rule = self.global_cidrs, GLOBAL_OPTION
            for owner, reserved in self.namespaces:
                if any(vip.version == n.version and vip in n for n in reserved):
                    return f"is reserved to namespace {owner} ({NAMESPACE_OPTION}: {_described(reserved)})"
        else:
            return (f"is refused: namespace {shown(namespace)} has no {NAMESPACE_OPTION} entry and "
                    f"{GLOBAL_OPTION} is unset")
        if any(vip.version == n.version and vip in n for n in networks):
            return None
        return f"is outside the VIP allow-list ({rule}: {_described(networks)})"
