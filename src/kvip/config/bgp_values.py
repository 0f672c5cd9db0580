"""BGP settings values and the parsers of kube-vip's BGP variables (one value each).

`BgpSettings` is what the BGP speaker takes; the parsers here are the ones the option table uses for
`bgp_as`, `bgp_peers` ("addr:as[:password[:multihop[:port]]]", IPv6 in brackets, comma separated),
`bgp_peerpass`, `bgp_routerid` and `bgp_sourceif`. Combining the values (the single-peer variables
with the list, hold time against keepalive) is `kvip.config.bgp`'s job.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass

from kvip.config.values import int_range, ip_address, parse_bool
from kvip.core.model import IPAddress


@dataclass(frozen=True)
class BgpPeer:
    address: IPAddress
    asn: int
    password: str = ""
    multihop: bool = False
    port: int = 179

    def __str__(self) -> str:
        host = f"[{self.address}]" if self.address.version == 6 else str(self.address)
        return f"{host}:{self.asn}"


@dataclass(frozen=True)
class BgpSettings:
    asn: int
    peers: tuple[BgpPeer, ...]
    router_id: str | None = None  # None: the source address, else the first IPv4 of the host
    source_ip: IPAddress | None = None
    source_interface: str | None = None
    hold_time: int = 30  # kube-vip's defaults
    keepalive_time: int = 10
    bfd: bool = False
    graceful_restart: int = 0  # seconds; 0 = off
    drain_time: float = 5.0  # seconds announced with GRACEFUL_SHUTDOWN before the withdraw
    run_dir: str = "/run/kvip/bgp"
    bird_path: str = "/usr/sbin/bird"


_port = int_range(1, 65535)


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


def parse_peer(text: str) -> BgpPeer:
    """One kube-vip peer: 'addr:as[:password[:multihop[:port]]]', IPv6 as '[addr]:as:...'."""
    rest = text.strip()
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
    try:
        address = ip_address(parts[0])
        asn = parse_asn(parts[1])
        password = check_password(parts[2] if len(parts) > 2 else "")
        multihop = parse_bool(parts[3]) if len(parts) > 3 and parts[3] else False
        port = _port(parts[4]) if len(parts) > 4 and parts[4] else 179
    except ValueError as exc:  # named without its password: messages end up in logs
        raise ValueError(f"{':'.join(parts[:2])!r}: {exc}") from None
    return BgpPeer(address, asn, password, multihop, port)


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
