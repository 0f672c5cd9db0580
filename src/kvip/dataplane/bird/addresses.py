"""The host addresses BGP mode needs — the router id, the session source, MP-BGP next hops — chosen
by pure functions from one read of the host's addresses.

The read (`read_host_addresses`) uses pyroute2's synchronous API, which runs an event loop of its
own: called on the agent's running loop it fails ("This event loop is already running"), so the
speaker calls it in a worker thread (`asyncio.to_thread`). The choices follow kube-vip:
`bgp_routerid`, else the address of `bgp_routerinterface`; where kube-vip then has no router id
(GoBGP refuses to start), kvip takes the session source address or the host's first IPv4 and says so.
MP-BGP next hops are kube-vip's three modes: fixed, auto_sourceip (the other family on the interface
holding bgp_sourceip) and auto_sourceif (both families of bgp_sourceif), never link-local.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass

from kvip.config.bgp_values import BgpPeer, BgpSettings
from kvip.core.model import IPAddress
from kvip.dataplane.base import DataplaneError

RT_SCOPE_UNIVERSE = 0


@dataclass(frozen=True)
class HostAddress:
    interface: str
    address: IPAddress
    scope: int = RT_SCOPE_UNIVERSE

    @property
    def usable(self) -> bool:
        """Reaches a peer: not loopback, not link-local (kube-vip's GetNonLinkLocalIP)."""
        return not self.address.is_loopback and not self.address.is_link_local


@dataclass(frozen=True)
class RouterId:
    address: str
    source: str  # where it came from, for the log line

    @property
    def kube_vip_would_refuse(self) -> bool:
        return self.source not in ("bgp_routerid", "bgp_routerinterface")


def _on(host: tuple[HostAddress, ...], interface: str) -> list[HostAddress]:
    return [a for a in host if a.interface == interface]


def source_addresses(settings: BgpSettings, host: tuple[HostAddress, ...]) -> dict[int, str]:
    """Session source per IP version: bgp_sourceip, else the first global address of bgp_sourceif."""
    found: dict[int, str] = {}
    if settings.source_ip is not None:
        found[settings.source_ip.version] = str(settings.source_ip)
    if settings.source_interface:
        on = _on(host, settings.source_interface)
        if not on:
            raise DataplaneError(f"bgp_sourceif: no interface {settings.source_interface!r} with an address")
        for entry in on:
            if entry.scope == RT_SCOPE_UNIVERSE:
                found.setdefault(entry.address.version, str(entry.address))
    return found


def choose_router_id(settings: BgpSettings, host: tuple[HostAddress, ...]) -> RouterId:
    if settings.router_id:
        return RouterId(settings.router_id, "bgp_routerid")
    if settings.router_interface:
        # kube-vip takes the interface's first non-loopback address; a router id can only be IPv4.
        for entry in _on(host, settings.router_interface):
            if entry.address.version == 4 and not entry.address.is_loopback:
                return RouterId(str(entry.address), "bgp_routerinterface")
        raise DataplaneError(f"bgp_routerinterface: no IPv4 address on {settings.router_interface!r}")
    v4 = source_addresses(settings, host).get(4)
    if v4:
        return RouterId(v4, "the session source address")
    for entry in host:
        if entry.address.version == 4 and entry.scope == RT_SCOPE_UNIVERSE and not entry.address.is_loopback:
            return RouterId(str(entry.address), f"the first IPv4 address of the host ({entry.interface})")
    raise DataplaneError("no bgp_routerid, no bgp_routerinterface and no IPv4 address on this host to take one from")


def _first(entries: list[HostAddress], version: int) -> str | None:
    return next((str(e.address) for e in entries if e.address.version == version and e.usable), None)


def mpbgp_next_hop(peer: BgpPeer, settings: BgpSettings, host: tuple[HostAddress, ...]) -> tuple[int, str] | None:
    """(family, next hop) of the family this peer carries besides its own, or None without MP-BGP.
    Raises DataplaneError when the mode's address cannot be found (kube-vip then peers without MP-BGP)."""
    mp = settings.peer_mpbgp(peer)
    if mp is None:
        return None
    other = 6 if peer.address.version == 4 else 4
    hop: str | None = None
    if mp.mode == "fixed":
        fixed = mp.ipv6 if other == 6 else mp.ipv4
        hop = str(fixed) if fixed is not None else None
    elif mp.mode == "auto_sourceip" and settings.source_ip is not None:
        holder = [e.interface for e in host if e.address == settings.source_ip]
        hop = _first(_on(host, holder[0]), other) if holder else None
    elif mp.mode == "auto_sourceif" and settings.source_interface:
        hop = _first(_on(host, settings.source_interface), other)
    if hop is None:
        raise DataplaneError(f"MP-BGP ({mp.mode}) for peer {peer}: no IPv{other} next hop found")
    return other, hop


def read_host_addresses() -> tuple[HostAddress, ...]:
    """Every address of the host with its interface, in the kernel's order. Blocking: run it in a thread."""
    from pyroute2 import IPRoute

    with IPRoute() as ipr:
        names = {link["index"]: link.get_attr("IFLA_IFNAME") for link in ipr.get_links()}
        return tuple(
            HostAddress(names.get(message["index"], ""), ipaddress.ip_address(message.get_attr("IFA_ADDRESS")),
                        message["scope"])
            for message in ipr.get_addr()
        )
