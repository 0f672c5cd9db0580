"""The control-plane VIP's rules — pure, no I/O: its address, its DNS answer, and whether this node advertises it.

kube-vip's `address` (or the deprecated `vip_address`) is one or more comma-separated IPs or DNS names.
A name is resolved by the agent (off the event loop) and `select_addresses` keeps what `dns_mode` asks for:
`first` the first answer, `ipv4` / `ipv6` the first of that family, `dual` the first of each.

Whether this node advertises the VIP (`control_plane_decision`), in order:
1. the agent is stopping → withdraw at once (the API server behind it is going away with the node's pod);
2. no address (a name that does not resolve yet) → nothing to advertise;
3. this node's API server unhealthy → withdraw (anycast) / give the Lease up (election);
4. election: only the holder of the control-plane Lease; anycast: every healthy node.
Node state (cordon, exclude-from-external-load-balancers, which kubeadm sets on control-plane nodes,
NetworkUnavailable) is ignored, as kube-vip does: a cordoned node's API server still serves.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterable, Sequence

from kvip.core.model import (
    CONTROL_PLANE_KEY,
    BadInput,
    ControlPlaneState,
    IPAddress,
    ServiceDecision,
    shown,
)

DNS_MODES = ("first", "ipv4", "ipv6", "dual")
_LABEL = r"[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
_HOSTNAME = re.compile(rf"{_LABEL}(\.{_LABEL})*\.?")


class InvalidControlPlaneAddress(ValueError):
    """`address` / `vip_address` holds something that is neither an IP nor a DNS name."""


def split_address(text: str) -> tuple[tuple[IPAddress, ...], tuple[str, ...]]:
    """kube-vip's `address`: comma-separated IPs and DNS names → (IPs, names), each in the given order."""
    ips: list[IPAddress] = []
    names: list[str] = []
    for part in (p.strip() for p in text.split(",")):
        if not part:
            continue
        try:
            ips.append(ipaddress.ip_address(part))
            continue
        except ValueError:
            pass
        if len(part) > 253 or not _HOSTNAME.fullmatch(part) or part.replace(".", "").isdigit():
            raise InvalidControlPlaneAddress(f"{shown(part)} is neither an IP address nor a DNS name")
        names.append(part.rstrip(".").lower())
    if not ips and not names:
        raise InvalidControlPlaneAddress("no address given")
    return tuple(ips), tuple(names)


def select_addresses(resolved: Sequence[IPAddress], dns_mode: str) -> tuple[IPAddress, ...]:
    """What a DNS answer (in resolver order) means under `dns_mode`; empty when it holds nothing usable."""
    if not resolved:
        return ()
    mode = dns_mode.lower()
    if mode == "first":
        return (resolved[0],)
    versions = {"ipv4": (4,), "ipv6": (6,), "dual": (4, 6)}.get(mode, ())
    return tuple(found for version in versions
                 if (found := next((a for a in resolved if a.version == version), None)) is not None)


def control_plane_addresses(literal: Iterable[IPAddress], resolved: Iterable[IPAddress]) -> tuple[IPAddress, ...]:
    """The VIP set: literal IPs, then resolved ones, each once."""
    return tuple(dict.fromkeys([*literal, *resolved]))


def wants_lease(state: ControlPlaneState) -> bool:
    """Contend for the control-plane Lease only while this node could serve the VIP: an unhealthy
    API server (or a stopping agent) gives it up so a healthy node takes over."""
    return state.healthy and not state.leaving and bool(state.addresses)


def control_plane_decision(state: ControlPlaneState, *, election: bool, leader: bool,
                           address_families: frozenset[int]) -> tuple[ServiceDecision, list[BadInput]]:
    """The control-plane VIP's decision (under `CONTROL_PLANE_KEY`) and its problems."""
    problems: list[BadInput] = []
    vips = tuple(v for v in state.addresses if v.version in address_families)
    for vip in state.addresses:
        if vip not in vips:
            problems.append(BadInput(CONTROL_PLANE_KEY, "NoPeerForFamily",
                                     f"control-plane VIP {vip} is IPv{vip.version} but no IPv{vip.version} BGP "
                                     "peer is configured; not announced"))
    if state.leaving:
        return ServiceDecision(CONTROL_PLANE_KEY, vips, False, False, "agent-stopping"), problems
    if not vips:
        return ServiceDecision(CONTROL_PLANE_KEY, (), False, False, "no-address"), problems
    if not state.healthy:
        return ServiceDecision(CONTROL_PLANE_KEY, vips, False, False, "apiserver-unhealthy"), problems
    if election and not leader:
        return ServiceDecision(CONTROL_PLANE_KEY, vips, True, False, "not-leader"), problems
    return ServiceDecision(CONTROL_PLANE_KEY, vips, True, True, "advertised"), problems

