"""ARP/NDP backend (kube-vip's layer-2 mode): the VIP as an address on an interface, announced with
gratuitous ARP (IPv4) or unsolicited neighbour advertisements (IPv6).

Ownership: our addresses carry IFA_PROTO = our protocol (248 by default, like our routes), so we
read and remove only those — an operator's address on the same interface is never touched.
`maintain()` re-announces every held VIP each `arp_rate` seconds and watches the wire for another
MAC answering for one of our VIPs (split brain), reporting it through `on_conflict`.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import socket
import struct
import time
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass

from pyroute2 import AsyncIPRoute
from pyroute2.netlink.exceptions import NetlinkError

from kvip.core.model import DesiredState, IPAddress
from kvip.dataplane.base import ApplyError, DataplaneBase
from kvip.dataplane.netlink_monitor import (
    RTMGRP_IPV4_IFADDR,
    RTMGRP_IPV6_IFADDR,
    RTMGRP_LINK,
    LazyRtnl,
    netlink_hints,
)
from kvip.runtime.netns import in_netns, socket_in

log = logging.getLogger("kvip.arp")

ETH_P_ARP = 0x0806
IFA_F_NODAD = 0x02
PACKET_OUTGOING = 4
BURST = 3  # gratuitous packets sent at takeover


@dataclass(frozen=True, order=True)
class OwnedAddress:
    address: IPAddress
    ifname: str
    protocol: int

    def __str__(self) -> str:
        return f"{self.address}/{self.address.max_prefixlen} dev {self.ifname} proto {self.protocol}"


def garp_frame(mac: bytes, vip: ipaddress.IPv4Address, reply: bool = False) -> bytes:
    """A gratuitous ARP (request by default): sender and target are both the VIP."""
    ether = b"\xff" * 6 + mac + struct.pack("!H", ETH_P_ARP)
    arp = struct.pack("!HHBBH", 1, 0x0800, 6, 4, 2 if reply else 1)
    return ether + arp + mac + vip.packed + (b"\xff" * 6 if reply else b"\x00" * 6) + vip.packed


def probe_frame(mac: bytes, vip: ipaddress.IPv4Address) -> bytes:
    """An ARP probe (RFC 5227: sender 0.0.0.0): whoever else holds the VIP must answer it."""
    ether = b"\xff" * 6 + mac + struct.pack("!H", ETH_P_ARP)
    return ether + struct.pack("!HHBBH", 1, 0x0800, 6, 4, 1) + mac + b"\x00" * 4 + b"\x00" * 6 + vip.packed


def unsolicited_na(mac: bytes, vip: ipaddress.IPv6Address) -> bytes:
    """ICMPv6 neighbour advertisement with the Override flag and our link-layer address (checksum by kernel)."""
    return struct.pack("!BBHI", 136, 0, 0, 0x20000000) + vip.packed + struct.pack("!BB", 2, 1) + mac


def parse_arp(frame: bytes) -> tuple[int, bytes, ipaddress.IPv4Address] | None:
    """(op, sender MAC, sender IP) of an Ethernet ARP frame, or None."""
    if len(frame) < 42 or frame[12:14] != struct.pack("!H", ETH_P_ARP):
        return None
    op = struct.unpack("!H", frame[20:22])[0]
    return op, frame[22:28], ipaddress.IPv4Address(frame[28:32])


class ArpBackend(DataplaneBase):
    name = "arp"

    def __init__(self, *, interface: str, protocol: int = 248, arp_rate: float = 3.0, netns: str | None = None,
                 on_conflict: Callable[[IPAddress, str], None] | None = None) -> None:
        self.interface = interface
        self.protocol = protocol
        self.arp_rate = arp_rate
        self._netns = netns
        self._on_conflict = on_conflict or (lambda vip, mac: None)
        self._rtnl = LazyRtnl(netns)
        self._held: dict[IPAddress, str] = {}  # VIP -> interface it is on
        self.conflicts = 0
        self.announcements = 0

    # -- Dataplane ---------------------------------------------------------------------------

    def desired(self, state: DesiredState) -> frozenset[OwnedAddress]:
        return frozenset(OwnedAddress(vip, ad.interface or self.interface, self.protocol)
                         for vip, ad in state.advertisements.items())

    def vip_of(self, item: OwnedAddress) -> IPAddress:
        return item.address

    async def observe(self) -> frozenset[OwnedAddress]:
        ipr = await self._conn()
        names = {link["index"]: link.get("ifname") async for link in await ipr.link("dump")}
        found = set()
        async for msg in await ipr.addr("dump"):
            if msg.get("IFA_PROTO") != self.protocol:
                continue
            address = ipaddress.ip_address(msg.get("IFA_LOCAL") or msg.get("IFA_ADDRESS"))
            found.add(OwnedAddress(address, names.get(msg["index"], f"if{msg['index']}"), self.protocol))
        self._held = {a.address: a.ifname for a in found}
        return frozenset(found)

    async def apply(self, add: frozenset[OwnedAddress], remove: frozenset[OwnedAddress]) -> None:
        ipr = await self._conn()
        failed: dict[OwnedAddress, str] = {}
        for item in sorted(remove, key=str):
            index = await self._index(ipr, item.ifname)
            try:
                if index is not None:
                    await ipr.addr("del", index=index, address=str(item.address), prefixlen=item.address.max_prefixlen)
            except NetlinkError as exc:
                if exc.code not in (99, 19):  # EADDRNOTAVAIL, ENODEV: already gone
                    failed[item] = f"del: {exc}"
        for item in sorted(add, key=str):
            index = await self._index(ipr, item.ifname)
            if index is None:
                failed[item] = f"interface {item.ifname!r} does not exist"
                continue
            try:
                await ipr.addr("add", index=index, address=str(item.address), prefixlen=item.address.max_prefixlen,
                               IFA_PROTO=self.protocol, IFA_FLAGS=IFA_F_NODAD if item.address.version == 6 else 0)
            except NetlinkError as exc:
                if exc.code != 17:  # EEXIST: someone holds it without our protocol; not ours to take
                    failed[item] = f"add: {exc}"
                    continue
                failed[item] = "address already on the interface without our protocol"
                continue
            self._held[item.address] = item.ifname
            await self._announce(item.ifname, [item.address], burst=BURST)  # takeover: tell the segment at once
        if failed:
            raise ApplyError(failed)  # type: ignore[arg-type]

    def changes(self) -> AsyncIterator[None]:
        """A hint whenever an address or link changes (an address of ours deleted behind our back)."""
        events = ("RTM_NEWADDR", "RTM_DELADDR", "RTM_NEWLINK", "RTM_DELLINK")
        return netlink_hints(self._netns, RTMGRP_LINK | RTMGRP_IPV4_IFADDR | RTMGRP_IPV6_IFADDR,
                             lambda msg: msg.get("event", "") in events)

    async def maintain(self) -> None:
        """Periodic announcements plus split-brain detection, for as long as the agent runs."""
        listener = asyncio.create_task(self._listen())
        try:
            while True:
                await asyncio.sleep(self.arp_rate)
                by_interface: dict[str, list[IPAddress]] = {}
                for vip, ifname in sorted(self._held.items(), key=lambda kv: str(kv[0])):
                    by_interface.setdefault(ifname, []).append(vip)
                for ifname, vips in by_interface.items():
                    await self._announce(ifname, vips, burst=1)
                    if ifname == self.interface:  # split brain is watched on the main interface
                        await self._probe([v for v in vips if v.version == 4])
        finally:
            listener.cancel()

    def status(self) -> Mapping[str, object]:
        return {"interface": self.interface, "held": len(self._held), "announcements": self.announcements,
                "conflicts": self.conflicts}

    async def close(self) -> None:
        self._rtnl.close()

    # -- internals ---------------------------------------------------------------------------

    async def _conn(self) -> AsyncIPRoute:
        return await self._rtnl.get()

    async def _index(self, ipr: AsyncIPRoute, ifname: str) -> int | None:
        found = await ipr.link_lookup(ifname=ifname)
        return found[0] if found else None

    def _mac_via_socket(self, ifname: str | None = None) -> bytes:
        sock = self._packet_socket(ifname)
        try:
            return sock.getsockname()[4]
        finally:
            sock.close()

    def _packet_socket(self, ifname: str | None = None) -> socket.socket:
        sock = socket_in(self._netns, socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_ARP))
        sock.bind((ifname or self.interface, ETH_P_ARP))
        return sock

    async def _announce(self, ifname: str, vips: list[IPAddress], burst: int) -> None:
        try:
            await asyncio.to_thread(self._send_announcements, ifname, vips, burst)
            self.announcements += len(vips) * burst
        except OSError as exc:
            log.warning("cannot announce %s on %s: %s", ", ".join(map(str, vips)), ifname, exc)

    def _send_announcements(self, ifname: str, vips: list[IPAddress], burst: int) -> None:
        mac = self._mac_via_socket(ifname)
        v4 = [v for v in vips if isinstance(v, ipaddress.IPv4Address)]
        v6 = [v for v in vips if isinstance(v, ipaddress.IPv6Address)]
        if v4:
            sock = self._packet_socket(ifname)
            try:
                for _ in range(burst):
                    for vip in v4:
                        sock.send(garp_frame(mac, vip))
                        sock.send(garp_frame(mac, vip, reply=True))
            finally:
                sock.close()
        if v6:
            sock = socket_in(self._netns, socket.AF_INET6, socket.SOCK_RAW, socket.IPPROTO_ICMPV6)
            try:
                index = in_netns(self._netns, lambda: socket.if_nametoindex(ifname))
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_MULTICAST_HOPS, 255)
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_MULTICAST_IF, index)
                for _ in range(burst):
                    for vip in v6:
                        sock.sendto(unsolicited_na(mac, vip), ("ff02::1", 0, 0, index))
            finally:
                sock.close()

    async def _probe(self, vips: list[IPAddress]) -> None:
        if not vips:
            return
        try:
            await asyncio.to_thread(self._send_probes, vips)
        except OSError as exc:
            log.debug("probe failed: %s", exc)

    def _send_probes(self, vips: list[IPAddress]) -> None:
        mac = self._mac_via_socket()
        sock = self._packet_socket()
        try:
            for vip in vips:
                sock.send(probe_frame(mac, vip))  # type: ignore[arg-type]
        finally:
            sock.close()

    async def _listen(self) -> None:
        sock = self._packet_socket()
        sock.setblocking(False)
        mac = sock.getsockname()[4]
        loop = asyncio.get_running_loop()
        reported: dict[tuple[str, bytes], float] = {}
        try:
            while True:
                frame, address = await loop.sock_recvfrom(sock, 2048)
                if address[2] == PACKET_OUTGOING:
                    continue
                parsed = parse_arp(frame)
                if parsed is None:
                    continue
                _, sender_mac, sender_ip = parsed
                if sender_ip in self._held and sender_mac != mac:
                    key = (str(sender_ip), sender_mac)
                    if time.monotonic() - reported.get(key, -1e9) < 10.0:
                        continue  # one report per offender per 10 s
                    reported[key] = time.monotonic()
                    self.conflicts += 1
                    other = sender_mac.hex(":")
                    log.warning("VIP %s is also answered by %s on %s (split brain)", sender_ip, other, self.interface)
                    self._on_conflict(sender_ip, other)
        finally:
            sock.close()
