"""BGP settings values and the parsers of kube-vip's BGP variables (one value each).

`BgpSettings` is what the BGP speaker takes; the parsers here are the ones the option table uses for
`bgp_as`, `bgp_peers`, `bgp_peerpass`, `bgp_routerid`, `bgp_sourceif` and `mpbgp_*`. A peer is
kube-vip's "addr:as[:password[:multihop[:port[:mpbgp[:bfd]]]]]" (IPv6 in brackets, comma separated):
the 6th field is `key=value;...` of mpbgp_nexthop/mpbgp_ipv4/mpbgp_ipv6, the 7th
"enable;receive;transmit;multiplier" with the intervals in microseconds, as GoBGP reads them.
Combining the values (the single-peer variables with the list, hold time against keepalive) is
`kvip.config.bgp`'s job.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass

from kvip.config.values import int_range, ip_address, parse_bool
from kvip.core.model import IPAddress

MPBGP_MODES = ("fixed", "auto_sourceip", "auto_sourceif")


@dataclass(frozen=True)
class BfdTimers:
    """One peer's BFD session (kube-vip's 7th peer field); microseconds, kube-vip's defaults."""

    receive_us: int = 300
    transmit_us: int = 300
    multiplier: int = 3


@dataclass(frozen=True)
class BgpPeer:
    address: IPAddress
    asn: int
    password: str = ""
    multihop: bool = False
    port: int = 179
    mpbgp_nexthop: str = ""  # "" = the global mpbgp_nexthop; else one of MPBGP_MODES
    mpbgp_ipv4: ipaddress.IPv4Address | None = None
    mpbgp_ipv6: ipaddress.IPv6Address | None = None
    bfd: BfdTimers | None = None  # None: no BFD for this peer (unless kvip_bgp_bfd)

    def __str__(self) -> str:
        host = f"[{self.address}]" if self.address.version == 6 else str(self.address)
        return f"{host}:{self.asn}"


@dataclass(frozen=True)
class Mpbgp:
    """How one peer carries the other address family (kube-vip's MP-BGP): the mode and fixed next hops."""

    mode: str
    ipv4: ipaddress.IPv4Address | None = None
    ipv6: ipaddress.IPv6Address | None = None


@dataclass(frozen=True)
class BgpSettings:
    asn: int
    peers: tuple[BgpPeer, ...]
    router_id: str | None = None  # None: bgp_routerinterface's, else the source address, else the host's
    router_interface: str | None = None  # kube-vip's bgp_routerinterface: the router id is its address
    source_ip: IPAddress | None = None
    source_interface: str | None = None
    hold_time: int = 30  # kube-vip's defaults
    keepalive_time: int = 10
    bfd: bool = False
    graceful_restart: int = 0  # seconds; 0 = off
    drain_time: float = 5.0  # seconds announced with GRACEFUL_SHUTDOWN before the withdraw
    run_dir: str = "/run/kvip/bgp"
    bird_path: str = "/usr/sbin/bird"
    mpbgp: Mpbgp | None = None  # the global mpbgp_nexthop / mpbgp_ipv4 / mpbgp_ipv6
    notes: tuple[str, ...] = ()  # where kvip does what kube-vip does differently; logged at start

    def peer_mpbgp(self, peer: BgpPeer) -> Mpbgp | None:
        """kube-vip's rule: each of the peer's MP-BGP fields, else the global one."""
        glob = self.mpbgp or Mpbgp("")
        mode = peer.mpbgp_nexthop or glob.mode
        if not mode:
            return None
        return Mpbgp(mode, peer.mpbgp_ipv4 or glob.ipv4, peer.mpbgp_ipv6 or glob.ipv6)

    @property
    def address_families(self) -> frozenset[int]:
        """What the sessions can carry: each peer's own family, and both for an MP-BGP peer."""
        families: set[int] = set()
        for peer in self.peers:
            families |= {4, 6} if self.peer_mpbgp(peer) else {peer.address.version}
        return frozenset(families)


_port = int_range(1, 65535)
_interval_us = int_range(1, 2**32 - 1)
_multiplier = int_range(1, 255)


def parse_asn(text: str) -> int:
    try:
        return int_range(1, 2**32 - 1)(text)
    except ValueError as exc:
        raise ValueError(f"{text!r} is not an AS number: {exc}") from None


def check_password(password: str) -> str:
    """BIRD's config strings have no escapes: a quote or newline could not be written safely."""
    if any(c in password for c in '"\n\r\\'):
        raise ValueError("a BGP password must not contain a double quote, backslash or newline")
    return password


def parse_interface_name(text: str) -> str:
    """An interface name that can be written into BIRD's config as it is."""
    if any(c in text for c in '"\n\r\\'):
        raise ValueError(f"{text!r} is not an interface name")
    return text


def parse_router_id(text: str) -> str:
    try:
        return str(ipaddress.IPv4Address(text.strip()))
    except ValueError:
        raise ValueError(f"{text!r} is not an IPv4 address (BGP router ids are 32-bit)") from None


def parse_mpbgp_mode(text: str) -> str:
    if text not in MPBGP_MODES:
        raise ValueError(f"{text!r} is not an MP-BGP next hop mode ({', '.join(MPBGP_MODES)})")
    return text


def parse_ipv4(text: str) -> ipaddress.IPv4Address:
    try:
        return ipaddress.IPv4Address(text.strip())
    except ValueError:
        raise ValueError(f"{text!r} is not an IPv4 address") from None


def parse_ipv6(text: str) -> ipaddress.IPv6Address:
    try:
        return ipaddress.IPv6Address(text.strip())
    except ValueError:
        raise ValueError(f"{text!r} is not an IPv6 address") from None


def _parse_mpbgp_field(text: str) -> Mpbgp:
    """The 6th peer field: 'mpbgp_nexthop=auto_sourceif;mpbgp_ipv4=...' (kube-vip's keys only)."""
    found: dict[str, str] = {}
    for item in text.split(";"):
        key, sep, value = item.partition("=")
        if not sep:
            raise ValueError(f"peer option {key!r} has no value (expected key=value)")
        if key not in ("mpbgp_nexthop", "mpbgp_ipv4", "mpbgp_ipv6"):
            raise ValueError(f"peer option {key!r} is not mpbgp_nexthop, mpbgp_ipv4 or mpbgp_ipv6")
        found[key] = value
    mode, ipv4, ipv6 = (found.get(k, "") for k in ("mpbgp_nexthop", "mpbgp_ipv4", "mpbgp_ipv6"))
    return Mpbgp(parse_mpbgp_mode(mode) if mode else "", parse_ipv4(ipv4) if ipv4 else None,
                 parse_ipv6(ipv6) if ipv6 else None)


def _parse_bfd_field(text: str) -> BfdTimers | None:
    """The 7th peer field: 'enable;receive;transmit;multiplier' (empty numbers keep the defaults)."""
    parts = text.split(";")
    if len(parts) < 4:
        raise ValueError(f"BFD field {text!r} needs enable;receive_interval;transmit_interval;multiplier")
    if not parse_bool(parts[0]):
        return None
    default = BfdTimers()
    return BfdTimers(_interval_us(parts[1]) if parts[1] else default.receive_us,
                     _interval_us(parts[2]) if parts[2] else default.transmit_us,
                     _multiplier(parts[3]) if parts[3] else default.multiplier)


def parse_peer(text: str) -> BgpPeer:
    """One kube-vip peer: 'addr:as[:password[:multihop[:port[:mpbgp[:bfd]]]]]', IPv6 as '[addr]:as:...'."""
    rest = text.strip()
    if rest.startswith("unnumbered:"):
        # BIRD 2.0.12 cannot find the neighbour itself on an interface (GoBGP reads the neighbour table).
        raise ValueError(f"{':'.join(rest.split(':')[:2])!r}: unnumbered peers are not "
                         "supported by kvip; give the peer's link-local address instead, e.g. [fe80::1%eth0]:65000")
    if rest.startswith("["):
        end = rest.find("]")
        if end < 0:
            raise ValueError(f"{text!r}: no closing ] for the IPv6 address")
        host, rest = rest[1:end], rest[end + 1:].lstrip(":")
        parts = [host, *rest.split(":")]
    else:
        parts = rest.split(":")
    if len(parts) < 2 or not parts[1]:
        raise ValueError(f"{text!r}: needs at least <address>:<AS>")
    if len(parts) > 7:
        raise ValueError(f"{':'.join(parts[:2])!r}: more than the 7 fields of a kube-vip peer")
    try:
        address = ip_address(parts[0])
        asn = parse_asn(parts[1])
        password = check_password(parts[2] if len(parts) > 2 else "")
        multihop = parse_bool(parts[3]) if len(parts) > 3 and parts[3] else False
        port = _port(parts[4]) if len(parts) > 4 and parts[4] else 179
        mpbgp = _parse_mpbgp_field(parts[5]) if len(parts) > 5 and parts[5] else Mpbgp("")
        bfd = _parse_bfd_field(parts[6]) if len(parts) > 6 and parts[6] else None
    except ValueError as exc:  # named without its password: messages end up in logs
        raise ValueError(f"{':'.join(parts[:2])!r}: {exc}") from None
    return BgpPeer(address, asn, password, multihop, port, mpbgp.mode, mpbgp.ipv4, mpbgp.ipv6, bfd)


def parse_peers(text: str) -> tuple[BgpPeer, ...]:
    """kube-vip's comma-separated `bgp_peers`; every bad entry is named in the one message."""
    peers: list[BgpPeer] = []
    problems: list[str] = []
    for entry in (e for e in text.split(",") if e.strip()):
        try:
            peers.append(parse_peer(entry))
        except ValueError as exc:
            problems.append(str(exc))
    if problems:
        raise ValueError("; ".join(problems))
    return tuple(peers)
