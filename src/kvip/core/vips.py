"""Reading a Service's VIPs out of its spec, annotations and status — pure, no I/O.

kube-vip reads the first non-empty of: the `kube-vip.io/loadbalancerIPs` annotation (comma separated),
`spec.loadBalancerIP`, `status.loadBalancer.ingress[].ip`. kvip reads the same sources in the same
order. An entry that is not a usable host address (garbage, a prefix, an IPv6 zone id, the wrong
family for the Service, multicast, loopback, unspecified, link-local) is dropped with a `BadInput`
naming it; the valid entries of that service still count, and no other service is affected. A source
listing more than `MAX_VIPS` addresses is refused whole (a `BadInput` naming the limit): every VIP
costs a route, a BIRD line or an ARP announcer on every node, so one Service cannot ask for thousands.
"""

from __future__ import annotations

import ipaddress
import weakref
from collections.abc import Callable
from typing import TypeVar

from kvip.core.model import BadInput, IPAddress, ServiceView, shown

LOADBALANCER_IPS_ANNOTATION = "kube-vip.io/loadbalancerIPs"
MAX_VIPS = 16  # per Service (dual stack needs 2; kube-vip users rarely list more than a handful)
MAX_VIP_CHARS = 45  # the longest IPv6 text form ("ffff:...:255.255.255.255"); longer is not an address

_FAMILY_NAME = {4: "IPv4", 6: "IPv6"}
UNSPECIFIED = ipaddress.IPv4Address(0)
DHCP_WILDCARDS = {"0.0.0.0": 4, "::": 6}  # kube-vip: the address comes from the LAN's DHCP server

Result = TypeVar("Result")


class InvalidVIP(ValueError):
    """A VIP text that is not a plain, usable host address; the message says why."""


def memoized_per_view(compute: Callable[[ServiceView], Result]) -> Callable[[ServiceView], Result]:
    """Memoize a pure function of one ServiceView for as long as that view is alive.

    Every reconcile re-decides every service, and parsing was most of decide()'s cost at 10,000
    services. The memo is weak: an entry goes when its view does (the reflector replaced it on an
    update, or dropped it on delete), so it holds what exists now, never the history of edits.
    """
    memo: weakref.WeakKeyDictionary[ServiceView, Result] = weakref.WeakKeyDictionary()

    def memoized(service: ServiceView) -> Result:
        try:
            return memo[service]
        except KeyError:
            pass
        except TypeError:  # an unhashable field (a view not built by the conversion): no memo
            return compute(service)
        result = compute(service)
        memo[service] = result
        return result

    memoized.__doc__ = compute.__doc__
    memoized.memo = memo  # type: ignore[attr-defined]  # for tests: what the memo holds
    return memoized


def _entries(service: ServiceView) -> tuple[str, tuple[str, ...]]:
    """The first non-empty VIP source and its raw entries."""
    annotated = service.annotations.get(LOADBALANCER_IPS_ANNOTATION)
    if isinstance(annotated, str):
        entries = tuple(part.strip() for part in annotated.split(",") if part.strip())
        if entries:
            return f"annotation {LOADBALANCER_IPS_ANNOTATION}", entries
    if isinstance(service.load_balancer_ip, str) and service.load_balancer_ip.strip():
        return "spec.loadBalancerIP", (service.load_balancer_ip.strip(),)
    ingress = tuple(ip.strip() for ip in service.ingress_ips if isinstance(ip, str) and ip.strip())
    return "status.loadBalancer.ingress", ingress


def dhcp_families(service: ServiceView) -> frozenset[int]:
    """The IP versions a Service asks DHCP for: kube-vip's `0.0.0.0` / `::` in its first VIP source."""
    return frozenset(DHCP_WILDCARDS[e] for e in _entries(service)[1] if e in DHCP_WILDCARDS)


def _why_unusable(address: IPAddress) -> str | None:
    if address.is_unspecified:
        return "is the unspecified address"
    if address.is_loopback:
        return "is a loopback address"
    if address.is_multicast:
        return "is a multicast address"
    if address.is_link_local:
        return "is a link-local address"
    if address.version == 4 and address == ipaddress.IPv4Address("255.255.255.255"):
        return "is the broadcast address"
    return None


def parse_vip(text: str) -> IPAddress:
    """A plain IPv4 or IPv6 host address usable as a VIP; `InvalidVIP` saying why otherwise.

    Python's `ip_address` accepts an IPv6 zone id ("2001:db8::1%eth0", any text after the %), which
    BIRD, netlink and ARP all refuse: a VIP is the address alone.
    """
    if "%" in text:
        raise InvalidVIP("has a zone id (a VIP is a plain address)")
    if len(text) > MAX_VIP_CHARS or not text.isascii():
        raise InvalidVIP("is not an IP address")
    try:
        address = ipaddress.ip_address(text)
    except ValueError:
        raise InvalidVIP("is not an IP address") from None
    if isinstance(address, ipaddress.IPv6Address) and (address.ipv4_mapped is not None or address.scope_id):
        raise InvalidVIP("is an IPv4-mapped IPv6 address" if address.scope_id is None else "has a zone id")
    why = _why_unusable(address)
    if why is not None:
        raise InvalidVIP(why)
    return address


class _Refused(tuple):  # type: ignore[type-arg]
    """A memo entry with problems: (VIPs, problems). Without problems (nearly every Service) the entry is the
    VIP tuple alone: 72 bytes a Service fewer than a pair, at one entry per live view."""

    __slots__ = ()


def service_vips(service: ServiceView) -> tuple[tuple[IPAddress, ...], tuple[BadInput, ...]]:
    """The VIPs a service asks for, in order, deduplicated, and what was wrong with the rest."""
    parsed = _parsed_vips(service)
    return parsed if type(parsed) is _Refused else (parsed, ())  # type: ignore[return-value]


@memoized_per_view
def _parsed_vips(service: ServiceView) -> tuple[IPAddress, ...] | _Refused:
    vips, problems = _service_vips(service)
    return _Refused((vips, problems)) if problems else vips


service_vips.memo = _parsed_vips.memo  # type: ignore[attr-defined]  # for tests: what the memo holds


def _service_vips(service: ServiceView) -> tuple[tuple[IPAddress, ...], tuple[BadInput, ...]]:
    source, entries = _entries(service)
    problems: list[BadInput] = []
    annotated = service.annotations.get(LOADBALANCER_IPS_ANNOTATION, "")
    if isinstance(annotated, str) and annotated.strip() and not source.startswith("annotation"):
        problems.append(BadInput(service.key, "InvalidVIP",
                                 f"annotation {LOADBALANCER_IPS_ANNOTATION}={shown(annotated)} lists no address; "
                                 "ignored"))
    distinct = len(set(entries))
    if distinct > MAX_VIPS:
        problems.append(BadInput(service.key, "TooManyVIPs",
                                 f"{source} lists {distinct} addresses, more than the limit of {MAX_VIPS} "
                                 "per service; all ignored"))
        return (), tuple(problems)
    families = {f for f in service.ip_families if f in ("IPv4", "IPv6")}
    vips: dict[IPAddress, None] = {}  # ordered and O(1) membership: de-duplication stays linear
    for raw in entries:
        if raw in DHCP_WILDCARDS:
            continue  # "ask DHCP" (kvip.core.dhcp), not an address
        try:
            address = parse_vip(raw)
        except InvalidVIP as why:
            problems.append(BadInput(service.key, "InvalidVIP", f"{source}: {shown(raw)} {why}; ignored"))
            continue
        family = _FAMILY_NAME[address.version]
        if families and family not in families:
            problems.append(
                BadInput(
                    service.key,
                    "WrongIPFamily",
                    f"{source}: {address} is {family} but the service's ipFamilies are "
                    f"{', '.join(sorted(families))}; ignored",
                )
            )
            continue
        vips[address] = None
    return tuple(vips), tuple(problems)
