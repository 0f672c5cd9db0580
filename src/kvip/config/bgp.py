"""BGP mode settings from kube-vip's environment variable names — parsing and validation only.

kube-vip's names work as they are: `bgp_routerid`, `bgp_as`, `bgp_peeraddress`, `bgp_peeras`,
`bgp_peerpass`, `bgp_multihop`, `bgp_peers` ("addr:as[:password[:multihop[:port]]]", IPv6 in
brackets, comma separated), `bgp_sourceif`, `bgp_sourceip`, `bgp_holdtime`, `bgp_keepalivetime`.
kvip adds the daemon features kube-vip's embedded GoBGP does not expose: BFD, graceful restart,
and the make-before-break drain time. Every problem is collected, as in `kvip.config.agent`.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping
from dataclasses import dataclass

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


def _asn(text: str) -> int:
    if not text.strip().isdigit():
        raise ValueError(f"{text!r} is not an AS number")
    value = int(text)
    if not 1 <= value <= 2**32 - 1:
        raise ValueError(f"AS {value} is outside 1..4294967295")
    return value


def _bool(text: str) -> bool:
    from kvip.config.agent import parse_bool

    return parse_bool(text)


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
        address = ipaddress.ip_address(parts[0])
    except ValueError:
        raise ValueError(f"{text!r}: {parts[0]!r} is not an IP address") from None
    try:
        asn = _asn(parts[1])
    except ValueError as exc:
        raise ValueError(f"{text!r}: {exc}") from None
    password = parts[2] if len(parts) > 2 else ""
    check_password(password)
    multihop = _bool(parts[3]) if len(parts) > 3 and parts[3] else False
    port = int(parts[4]) if len(parts) > 4 and parts[4] else 179
    if not 1 <= port <= 65535:
        raise ValueError(f"{text!r}: port {port} is outside 1..65535")
    return BgpPeer(address, asn, password, multihop, port)


def check_password(password: str) -> None:
    """BIRD's config strings have no escapes: a quote or newline could not be written safely."""
    if any(c in password for c in '"\n\r\\'):
        raise ValueError("a BGP password must not contain a double quote, backslash or newline")


def load_bgp_settings(env: Mapping[str, str], errors: list[str]) -> BgpSettings | None:
    """Settings for `bgp_enable=true`; problems are appended to `errors` (then None is returned)."""
    before = len(errors)

    def get(name: str, parse: object, default: object = None) -> object:
        raw = env.get(name, "")
        if raw == "":
            return default
        try:
            return parse(raw)  # type: ignore[operator]
        except ValueError as exc:
            errors.append(f"{name}: {exc}")
            return default

    asn = get("bgp_as", _asn)
    if any(c in env.get("bgp_sourceif", "") for c in '"\n\\'):
        errors.append("bgp_sourceif: not an interface name")
    if asn is None and "bgp_as" not in env:
        errors.append("bgp_as: BGP mode needs this node's AS number")
    peers: list[BgpPeer] = []
    for entry in (e for e in env.get("bgp_peers", "").split(",") if e.strip()):
        try:
            peers.append(parse_peer(entry))
        except ValueError as exc:
            errors.append(f"bgp_peers: {exc}")
    if env.get("bgp_peeraddress"):
        single = get("bgp_peeraddress", ipaddress.ip_address)
        peer_asn = get("bgp_peeras", _asn, 65000)  # kube-vip's default peer AS
        try:
            check_password(env.get("bgp_peerpass", ""))
        except ValueError as exc:
            errors.append(f"bgp_peerpass: {exc}")
        if single is not None and peer_asn is not None:
            peers.insert(0, BgpPeer(single, peer_asn, env.get("bgp_peerpass", ""),  # type: ignore[arg-type]
                                    bool(get("bgp_multihop", _bool, False))))
    if not peers and not errors[before:]:
        errors.append("bgp_peers / bgp_peeraddress: BGP mode needs at least one peer")
    if len({p.address for p in peers}) != len(peers):
        errors.append("bgp_peers: a peer address is listed twice")
    router_id = env.get("bgp_routerid") or None
    if router_id is not None:
        try:
            ipaddress.IPv4Address(router_id)
        except ValueError:
            errors.append(f"bgp_routerid: {router_id!r} is not an IPv4 address (BGP router ids are 32-bit)")
    hold = get("bgp_holdtime", int, 30)
    keepalive = get("bgp_keepalivetime", int, 10)
    if isinstance(hold, int) and isinstance(keepalive, int) and hold != 0 and not (3 <= hold and keepalive < hold):
        errors.append(f"bgp_holdtime ({hold}) must be 0 or >= 3 and greater than bgp_keepalivetime ({keepalive})")
    restart = get("kvip_bgp_graceful_restart", int, 0)
    if isinstance(restart, int) and not 0 <= restart <= 4095:
        errors.append(f"kvip_bgp_graceful_restart: {restart} is outside 0..4095 seconds")
    drain = get("kvip_bgp_drain_time", float, 5.0)
    if isinstance(drain, float) and drain < 0:
        errors.append("kvip_bgp_drain_time: must not be negative")
    if len(errors) > before:
        return None
    return BgpSettings(
        asn=asn,  # type: ignore[arg-type]
        peers=tuple(peers),
        router_id=router_id,
        source_ip=get("bgp_sourceip", ipaddress.ip_address),  # type: ignore[arg-type]
        source_interface=env.get("bgp_sourceif") or None,
        hold_time=hold,  # type: ignore[arg-type]
        keepalive_time=keepalive,  # type: ignore[arg-type]
        bfd=bool(get("kvip_bgp_bfd", _bool, False)),
        graceful_restart=restart,  # type: ignore[arg-type]
        drain_time=drain,  # type: ignore[arg-type]
        run_dir=env.get("kvip_bgp_rundir") or "/run/kvip/bgp",
        bird_path=env.get("kvip_bird_path") or "/usr/sbin/bird",
    )
