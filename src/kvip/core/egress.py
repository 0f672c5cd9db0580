"""Service egress (kube-vip.io/egress): which SNAT rules this node should hold — pure.

A Service annotated `kube-vip.io/egress: "true"` wants the traffic its pods start towards the outside
to leave with the Service's VIP as source address, so an outside firewall can tell that Service's
traffic apart. SNAT happens on the node the packet leaves from, and the replies come back to whoever
holds the VIP, so a node holds a rule only for the Services it advertises, and only for their endpoints
on this node (use externalTrafficPolicy: Local so that the VIP follows the pods). kube-vip SNATs one
"active" endpoint per Service; kvip SNATs every ready local one.

Never SNATed: traffic to the pod, service and cluster CIDRs of the agent's settings (internal traffic)
and to `kube-vip.io/egress-denied-networks`; when `kube-vip.io/egress-allowed-networks` is set, only
traffic to those networks; when `kube-vip.io/egress-destination-ports` is set (`tcp:443,udp:53`; a bare
port is TCP), only traffic to those ports. IPv4 unless `kube-vip.io/egress-ipv6: "true"`.
A malformed annotation costs this Service its egress (never more SNAT than asked) and is one BadInput.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Mapping
from dataclasses import dataclass

from kvip.core.model import (
    BadInput,
    EgressRule,
    IPAddress,
    ServiceDecision,
    ServiceKey,
    ServiceView,
    shown,
)

Network = ipaddress.IPv4Network | ipaddress.IPv6Network

EGRESS = "kube-vip.io/egress"
EGRESS_IPV6 = "kube-vip.io/egress-ipv6"
DESTINATION_PORTS = "kube-vip.io/egress-destination-ports"
ALLOWED_NETWORKS = "kube-vip.io/egress-allowed-networks"
DENIED_NETWORKS = "kube-vip.io/egress-denied-networks"
DETECT_API_SERVER = "kube-vip.io/egress-detect-api-server"
# kube-vip's default when it can neither read nor discover the service CIDR (IPv4 only).
DEFAULT_SERVICE_CIDR = ipaddress.IPv4Network("10.96.0.0/12")
PROTOCOLS = ("tcp", "udp", "sctp")
MAX_ENTRIES = 256  # per annotation: bounds the rule a Service can make us write
MAX_TEXT = 8192
_INSTANCE = re.compile(r"[A-Za-z0-9._-]{1,200}")


class EgressInputError(ValueError):
    """An egress annotation that cannot be read; the message is the one line to show."""


@dataclass(frozen=True)
class EgressSettings:
    """The agent's egress settings (egress_podcidr, egress_servicecidr, egress_clustercidr). Egress is on
    when the pod CIDR is known: kvip does not discover it, and guessing wrong would SNAT pod-to-pod traffic."""

    pod_cidrs: tuple[Network, ...]
    service_cidrs: tuple[Network, ...] = (DEFAULT_SERVICE_CIDR,)
    cluster_cidrs: tuple[Network, ...] = ()

    def internal(self, version: int) -> tuple[Network, ...]:
        """Destinations of this IP version that are never SNATed (empty: no pod CIDR of that version)."""
        if not any(n.version == version for n in self.pod_cidrs):
            return ()
        every = (*self.pod_cidrs, *self.service_cidrs, *self.cluster_cidrs)
        return tuple(n for n in every if n.version == version)


def parse_instance_name(text: str) -> str:
    """kube-vip's instance_name: it names the egress table, so only letters, digits, '.', '-', '_' (at most
    200: the table name must fit nftables' limit)."""
    name = text.strip()
    if not _INSTANCE.fullmatch(name):
        raise EgressInputError(f"{text!r} is not 1-200 of the characters A-Z a-z 0-9 . - _")
    return name


def egress_rules(settings: EgressSettings | None, services: Mapping[ServiceKey, ServiceView],
                 decisions: Mapping[ServiceKey, ServiceDecision], problems: list[BadInput]) -> frozenset[EgressRule]:
    """Every SNAT rule this node should hold; a Service's bad input is appended to `problems` and costs
    that Service's egress only."""
    rules: list[EgressRule] = []
    for key in sorted(services):
        decision = decisions.get(key)
        if decision is None:
            continue  # not ours (type, class, ignore)
        try:
            rules.extend(service_egress(settings, services[key], decision, problems))
        except Exception as exc:  # noqa: BLE001 (defence in depth: a bug met by one Service costs its egress only)
            problems.append(BadInput(key, "InternalError", f"cannot decide egress: {type(exc).__name__}: "
                                     f"{shown(str(exc))}; not SNATed"))
    return frozenset(rules)


def service_egress(settings: EgressSettings | None, service: ServiceView, decision: ServiceDecision,
                   problems: list[BadInput]) -> list[EgressRule]:
    key = service.key
    if not flag(service, EGRESS, problems, "egress off"):
        return []
    version = 6 if flag(service, EGRESS_IPV6, problems, "IPv4 egress") else 4
    try:
        ports = parse_ports(annotation(service, DESTINATION_PORTS))
        allowed = parse_networks(annotation(service, ALLOWED_NETWORKS))
        denied = parse_networks(annotation(service, DENIED_NETWORKS))
    except EgressInputError as exc:
        problems.append(BadInput(key, "InvalidAnnotation", f"{exc}; egress (SNAT through the VIP) not configured "
                                 "for this Service"))
        return []
    if flag(service, DETECT_API_SERVER, problems, "not detected"):
        problems.append(BadInput(key, "UnsupportedAnnotation", f"{DETECT_API_SERVER}: kvip does not detect the API "
                                 f"server; list its address in {DENIED_NETWORKS} to keep it un-SNATed"))
    if settings is None:
        problems.append(BadInput(key, "EgressNotConfigured", f"{EGRESS}=true but this agent has no egress_podcidr "
                                 "(kvip does not discover the pod CIDR); not SNATed"))
        return []
    internal = settings.internal(version)
    if not internal:
        problems.append(BadInput(key, "EgressNotConfigured", f"IPv{version} egress needs an IPv{version} CIDR in "
                                 "egress_podcidr; not SNATed"))
        return []
    vip = next((v for v in decision.vips if v.version == version), None)
    if vip is None:
        if decision.vips:
            problems.append(BadInput(key, "InvalidAnnotation", f"IPv{version} egress but the Service has no "
                                     f"IPv{version} VIP; not SNATed"))
        return []
    wanted = tuple(n for n in allowed if n.version == version)
    if allowed and not wanted:
        problems.append(BadInput(key, "InvalidAnnotation", f"{ALLOWED_NETWORKS} lists no IPv{version} network; "
                                 "not SNATed"))
        return []
    if not decision.advertised:
        return []  # another node holds the VIP: the replies would not come back here
    excluded = collapsed((*internal, *(n for n in denied if n.version == version)))
    return [EgressRule(key, vip, pod, excluded, collapsed(wanted), ports)
            for pod in local_pods(decision, version)]


def local_pods(decision: ServiceDecision, version: int) -> tuple[IPAddress, ...]:
    found: list[IPAddress] = []
    for text in decision.local_endpoints:
        try:
            address = ipaddress.ip_address(text)
        except ValueError:
            continue  # not an address: decide() already judged the endpoints
        if address.version == version and address not in found:
            found.append(address)
    return tuple(found)


def annotation(service: ServiceView, name: str) -> tuple[str, str]:
    value = service.annotations.get(name, "")
    return name, value if isinstance(value, str) else ""


def flag(service: ServiceView, name: str, problems: list[BadInput], otherwise: str) -> bool:
    """kube-vip's "true" (any case); anything but true, false or empty is one BadInput and reads as false."""
    _, value = annotation(service, name)
    word = value.strip().lower()
    if word in ("", "false"):
        return False
    if word == "true":
        return True
    problems.append(BadInput(service.key, "InvalidAnnotation", f"{name}={shown(value)} is not true or false; "
                             f"{otherwise}"))
    return False


def _entries(named: tuple[str, str]) -> list[str]:
    name, text = named
    if len(text) > MAX_TEXT:
        raise EgressInputError(f"{name} is {len(text)} characters long, more than {MAX_TEXT}")
    entries = [part.strip() for part in text.split(",") if part.strip()]
    if len(entries) > MAX_ENTRIES:
        raise EgressInputError(f"{name} lists {len(entries)} entries, more than {MAX_ENTRIES}")
    return entries


def parse_ports(named: tuple[str, str]) -> tuple[tuple[str, int], ...]:
    """`tcp:443,udp:53` (a bare port is TCP) → sorted unique (protocol, port) pairs."""
    found: set[tuple[str, int]] = set()
    for entry in _entries(named):
        protocol, _, port = entry.rpartition(":")
        protocol = protocol.strip().lower() or "tcp"
        port = port.strip()
        if protocol not in PROTOCOLS:
            raise EgressInputError(f"{named[0]}: {shown(entry)} names no protocol of {'/'.join(PROTOCOLS)}")
        if not (port.isascii() and port.isdigit() and len(port) <= 5 and 1 <= int(port) <= 65535):
            raise EgressInputError(f"{named[0]}: {shown(entry)} is not a port (1-65535)")
        found.add((protocol, int(port)))
    return tuple(sorted(found))


def parse_networks(named: tuple[str, str]) -> tuple[Network, ...]:
    """CIDRs (host bits allowed, as kube-vip's Go parser does) or bare addresses, comma separated."""
    found: list[Network] = []
    for entry in _entries(named):
        if "%" in entry or not entry.isascii():
            raise EgressInputError(f"{named[0]}: {shown(entry)} is not a network")
        try:
            found.append(ipaddress.ip_network(entry, strict=False))
        except ValueError:
            raise EgressInputError(f"{named[0]}: {shown(entry)} is not a network") from None
    return tuple(found)


def collapsed(networks: tuple[Network, ...]) -> tuple[Network, ...]:
    """Sorted, overlaps merged, per version: one canonical form, so equal intent is an equal rule."""
    result: list[Network] = []
    for version in (4, 6):
        same = [n for n in networks if n.version == version]
        result.extend(ipaddress.collapse_addresses(same))  # type: ignore[arg-type]
    return tuple(result)
