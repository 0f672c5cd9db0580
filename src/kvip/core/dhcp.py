"""DHCP-assigned Service addresses, the pure half: the wire format (RFC 2131/2132) and what a Service asks.

A Service asking for `0.0.0.0` (`spec.loadBalancerIP` or `kube-vip.io/loadbalancerIPs`), or `::` for
DHCPv6 (`kvip.core.dhcp6`), gets its address from the LAN's DHCP server, as in kube-vip: a macvlan per Service with a stable MAC (`kube-vip.io/hwaddr`,
else one derived from the Service UID), named by `kube-vip.io/macvlanName` or `vip-<uid[:8]>`, asking
again for `kube-vip.io/requestedIP` (which the agent writes back after each lease), sending the host
name of `kube-vip.io/loadbalancerHostname`. The lease state machine is `kvip.core.dhcp_lease`.
"""

from __future__ import annotations

import hashlib
import ipaddress
import re
import struct
from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType

from kvip.core.leases import per_service_elected
from kvip.core.model import (
    BadInput,
    ElectionMode,
    IPAddress,
    ServiceKey,
    ServiceView,
    shown,
)
from kvip.core.vips import UNSPECIFIED, dhcp_families

HWADDR_ANNOTATION = "kube-vip.io/hwaddr"
REQUESTED_IP_ANNOTATION = "kube-vip.io/requestedIP"
HOSTNAME_ANNOTATION = "kube-vip.io/loadbalancerHostname"
MACVLAN_ANNOTATION = "kube-vip.io/macvlanName"
DHCP_PENDING = "dhcp-pending"  # decide()'s reason: this node leads the Service and waits for its lease

CLIENT_PORT, SERVER_PORT = 68, 67
BOOTREQUEST, BOOTREPLY = 1, 2
MAGIC = b"\x63\x82\x53\x63"
BROADCAST_FLAG = 0x8000
HEADER = struct.Struct("!BBBBIHH4s4s4s4s16s64s128s")  # through `file`; the magic cookie follows

DISCOVER, OFFER, REQUEST, DECLINE, ACK, NAK, RELEASE = 1, 2, 3, 4, 5, 6, 7
OPT_HOSTNAME, OPT_REQUESTED_IP, OPT_LEASE_TIME, OPT_MESSAGE_TYPE = 12, 50, 51, 53
OPT_SERVER_ID, OPT_PARAMETERS, OPT_T1, OPT_T2, OPT_CLIENT_ID = 54, 55, 58, 59, 61
OPT_SUBNET_MASK, OPT_ROUTER, OPT_PAD, OPT_END = 1, 3, 0, 255
ASKED_PARAMETERS = bytes((OPT_SUBNET_MASK, OPT_ROUTER, OPT_LEASE_TIME, OPT_T1, OPT_T2))

_ZERO = ipaddress.IPv4Address(0)
_INTERFACE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,14}")
_MAC = re.compile(r"[0-9A-Fa-f]{2}([:-])[0-9A-Fa-f]{2}(\1[0-9A-Fa-f]{2}){4}")
_HOSTNAME = re.compile(r"[A-Za-z0-9]([A-Za-z0-9.-]{0,62})")


class MalformedDhcp(ValueError):
    """Bytes that are not a DHCP message we can read; the message says why."""


@dataclass(frozen=True)
class DhcpMessage:
    op: int
    xid: int
    chaddr: bytes  # the 6-byte Ethernet address
    message_type: int
    flags: int = 0
    ciaddr: ipaddress.IPv4Address = _ZERO
    yiaddr: ipaddress.IPv4Address = _ZERO
    requested_ip: ipaddress.IPv4Address | None = None
    server_id: ipaddress.IPv4Address | None = None
    lease_time: int | None = None
    t1: int | None = None
    t2: int | None = None
    hostname: str | None = None
    client_id: bytes | None = None
    parameters: bytes = b""


def encode(message: DhcpMessage) -> bytes:
    header = HEADER.pack(message.op, 1, 6, 0, message.xid, 0, message.flags, message.ciaddr.packed,
                         message.yiaddr.packed, _ZERO.packed, _ZERO.packed, message.chaddr.ljust(16, b"\0"),
                         b"", b"")
    options = [(OPT_MESSAGE_TYPE, bytes((message.message_type,)))]
    for code, address in ((OPT_REQUESTED_IP, message.requested_ip), (OPT_SERVER_ID, message.server_id)):
        if address is not None:
            options.append((code, address.packed))
    for code, seconds in ((OPT_LEASE_TIME, message.lease_time), (OPT_T1, message.t1), (OPT_T2, message.t2)):
        if seconds is not None:
            options.append((code, struct.pack("!I", seconds)))
    if message.hostname:
        options.append((OPT_HOSTNAME, message.hostname.encode("ascii")))
    if message.client_id:
        options.append((OPT_CLIENT_ID, message.client_id))
    if message.parameters:
        options.append((OPT_PARAMETERS, message.parameters))
    body = b"".join(bytes((code, len(value))) + value for code, value in options)
    return header + MAGIC + body + bytes((OPT_END,))


def _options(data: bytes) -> dict[int, bytes]:
    """TLV options up to END; a repeated option is concatenated (RFC 3396)."""
    found: dict[int, bytes] = {}
    at = 0
    while at < len(data):
        code = data[at]
        if code == OPT_END:
            return found
        if code == OPT_PAD:
            at += 1
            continue
        if at + 1 >= len(data) or at + 2 + data[at + 1] > len(data):
            raise MalformedDhcp(f"option {code} runs past the end of the message")
        size = data[at + 1]
        found[code] = found.get(code, b"") + data[at + 2:at + 2 + size]
        at += 2 + size
    raise MalformedDhcp("no END option")


def _address(options: Mapping[int, bytes], code: int) -> ipaddress.IPv4Address | None:
    value = options.get(code)
    if value is None:
        return None
    if len(value) != 4:
        raise MalformedDhcp(f"option {code} is {len(value)} bytes, not an IPv4 address")
    return ipaddress.IPv4Address(value)


def _seconds(options: Mapping[int, bytes], code: int) -> int | None:
    value = options.get(code)
    if value is None:
        return None
    if len(value) != 4:
        raise MalformedDhcp(f"option {code} is {len(value)} bytes, not a 32-bit time")
    return int(struct.unpack("!I", value)[0])


def decode(data: bytes) -> DhcpMessage:
    """A DHCP message from UDP payload bytes, `MalformedDhcp` saying why when it is not one."""
    if len(data) < HEADER.size + len(MAGIC):
        raise MalformedDhcp(f"{len(data)} bytes is shorter than a DHCP header")
    op, htype, hlen, _hops, xid, _secs, flags, ciaddr, yiaddr, _si, _gi, chaddr, _sname, _file = \
        HEADER.unpack_from(data)
    if data[HEADER.size:HEADER.size + 4] != MAGIC:
        raise MalformedDhcp("no DHCP magic cookie")
    if htype != 1 or hlen != 6:
        raise MalformedDhcp(f"hardware type {htype}/length {hlen} is not Ethernet")
    options = _options(data[HEADER.size + 4:])
    kind = options.get(OPT_MESSAGE_TYPE, b"")
    if len(kind) != 1:
        raise MalformedDhcp("no DHCP message type")
    name = options.get(OPT_HOSTNAME)
    return DhcpMessage(op=op, xid=xid, chaddr=chaddr[:6], message_type=kind[0], flags=flags,
                       ciaddr=ipaddress.IPv4Address(ciaddr), yiaddr=ipaddress.IPv4Address(yiaddr),
                       requested_ip=_address(options, OPT_REQUESTED_IP), server_id=_address(options, OPT_SERVER_ID),
                       lease_time=_seconds(options, OPT_LEASE_TIME), t1=_seconds(options, OPT_T1),
                       t2=_seconds(options, OPT_T2), hostname=name.decode("ascii", "replace") if name else None,
                       client_id=options.get(OPT_CLIENT_ID), parameters=options.get(OPT_PARAMETERS, b""))


# -- what a Service asks for --------------------------------------------------------------------


@dataclass(frozen=True)
class DhcpAsk:
    """One Service's DHCP client parameters, all read from the Service itself."""

    mac: bytes
    interface: str
    requested: ipaddress.IPv4Address | None = None
    hostname: str | None = None
    families: frozenset[int] = frozenset({4})  # 4: a DHCPv4 client, 6: a DHCPv6 client, on one macvlan
    requested6: ipaddress.IPv6Address | None = None

    @property
    def client_id(self) -> bytes:
        return b"\x01" + self.mac  # RFC 2132 type 1 (Ethernet) + the MAC: stable across restarts


@dataclass(frozen=True)
class DhcpLease:
    """What the agent's DHCP client for one Service holds: decide()'s input (address None: no lease,
    `problem` saying why when one was lost)."""

    address: IPAddress | None
    interface: str
    problem: str | None = None
    address6: IPAddress | None = None  # the DHCPv6 lease of a `::` Service

    @property
    def addresses(self) -> tuple[IPAddress, ...]:
        return tuple(a for a in (self.address, self.address6) if a is not None)


def mac_text(mac: bytes) -> str:
    return ":".join(f"{b:02x}" for b in mac)


def derived_mac(seed: str) -> bytes:
    """A locally administered unicast MAC that only depends on `seed` (the Service UID)."""
    raw = bytearray(hashlib.sha256(seed.encode()).digest()[:6])
    raw[0] = (raw[0] & 0xFC) | 0x02
    return bytes(raw)


def _parse_mac(text: str) -> bytes | None:
    value = text.strip()
    if not _MAC.fullmatch(value):
        return None
    mac = bytes(int(part, 16) for part in re.split("[:-]", value))
    return None if mac[0] & 1 or mac == bytes(6) else mac  # multicast and all-zero are no host's MAC


def dhcp_ask(service: ServiceView) -> tuple[DhcpAsk | None, tuple[BadInput, ...]]:
    """The DHCP client a Service asks for (None: it asks for none, or cannot have one), and what is wrong.

    A malformed `kube-vip.io/hwaddr` refuses DHCP for that Service (another MAC would lease another
    address); a bad requested IP or host name is only dropped."""
    families = dhcp_families(service)
    if not families:
        return None, ()
    key, notes = service.key, service.annotations
    problems: list[BadInput] = []
    seed = service.uid or str(key)
    mac = derived_mac(seed)
    raw_mac = notes.get(HWADDR_ANNOTATION, "")
    if isinstance(raw_mac, str) and raw_mac.strip():
        parsed = _parse_mac(raw_mac)
        if parsed is None:
            problems.append(BadInput(key, "InvalidAnnotation", f"{HWADDR_ANNOTATION}={shown(raw_mac)} is not a "
                                     "unicast MAC address; no DHCP address for this Service"))
            return None, tuple(problems)
        mac = parsed
    interface = "vip-" + (service.uid[:8] if service.uid else hashlib.sha256(seed.encode()).hexdigest()[:8])
    raw_name = notes.get(MACVLAN_ANNOTATION, "")
    if isinstance(raw_name, str) and raw_name.strip():
        if _INTERFACE.fullmatch(raw_name.strip()):
            interface = raw_name.strip()
        else:
            problems.append(BadInput(key, "InvalidAnnotation", f"{MACVLAN_ANNOTATION}={shown(raw_name)} is not an "
                                     f"interface name; using {interface}"))
    v4, v6 = _requested(service, families, problems)
    return DhcpAsk(mac, interface, v4, _hostname(service, problems), families, v6), tuple(problems)


def _requested(service: ServiceView, families: frozenset[int], problems: list[BadInput]
               ) -> tuple[ipaddress.IPv4Address | None, ipaddress.IPv6Address | None]:
    """kube-vip's `requestedIP`: the IPv4 lease, then (comma) the IPv6 one; each must be of a family asked."""
    raw = service.annotations.get(REQUESTED_IP_ANNOTATION, "")
    found: dict[int, IPAddress] = {}
    for part in (p.strip() for p in raw.split(",") if p.strip()) if isinstance(raw, str) else ():
        try:
            address: IPAddress | None = ipaddress.ip_address(part)
        except ValueError:
            address = None
        if address is None or address.version not in families or address.is_unspecified or address.is_multicast:
            asked = " or ".join(f"IPv{f}" for f in sorted(families))
            problems.append(BadInput(service.key, "InvalidAnnotation", f"{REQUESTED_IP_ANNOTATION}: {shown(part)} "
                                     f"is not an {asked} host address; not requested"))
            continue
        found.setdefault(address.version, address)
    v4, v6 = found.get(4), found.get(6)
    return (v4 if isinstance(v4, ipaddress.IPv4Address) else None,
            v6 if isinstance(v6, ipaddress.IPv6Address) else None)


def _hostname(service: ServiceView, problems: list[BadInput]) -> str | None:
    raw = service.annotations.get(HOSTNAME_ANNOTATION, "")
    if not isinstance(raw, str) or not raw.strip():
        return None
    if _HOSTNAME.fullmatch(raw.strip()):
        return raw.strip()
    problems.append(BadInput(service.key, "InvalidAnnotation", f"{HOSTNAME_ANNOTATION}={shown(raw)} is not a host "
                             "name; no host name sent to the DHCP server"))
    return None


def lease_annotations(ask: DhcpAsk, lease: DhcpLease) -> dict[str, str]:
    """What kube-vip writes on a Service after a lease, so that a restart or a new leader asks again for
    the same address with the same MAC."""
    notes = {HWADDR_ANNOTATION: mac_text(ask.mac)}
    if lease.addresses:  # kube-vip's form: the IPv4 lease, a comma, the IPv6 one
        notes[REQUESTED_IP_ANNOTATION] = ",".join(str(a) for a in lease.addresses)
    return notes



Leases = Mapping[ServiceKey, DhcpLease]
NO_LEASES: Leases = MappingProxyType({})


def leased_on(leases: Leases, vip: IPAddress) -> str | None:
    """The macvlan a leased VIP lives on (layer-2 mode puts it there: the lease is for that MAC)."""
    return next((lease.interface for lease in leases.values() if vip in lease.addresses), None)


def leased_vips(service: ServiceView, vips: tuple[IPAddress, ...], lease: DhcpLease | None,
                problems: list[BadInput], election: ElectionMode, on_demand: bool
                ) -> tuple[tuple[IPAddress, ...], tuple[IPAddress, ...]]:
    """decide()'s DHCP step: the Service's VIPs with its leased address, and (second) a placeholder VIP
    while it still waits for one, so that its eligibility and Lease are decided as for any VIP (the node
    that leads it then runs the client). Only an elected Service may lease: without a Lease every node
    would run a client with the same MAC."""
    if not dhcp_families(service):
        return vips, ()
    ask, found = dhcp_ask(service)
    problems.extend(found)
    if ask is None:
        return vips, ()
    if election is not ElectionMode.GLOBAL and not per_service_elected(service, election, on_demand):
        problems.append(BadInput(service.key, "DHCPNeedsElection", "a DHCP address needs svc_election or "
                                 "vip_leaderelection (one node holds the lease); no address"))
        return vips, ()
    if lease is not None and lease.problem:
        problems.append(BadInput(service.key, "DHCPLeaseLost", lease.problem))
    if lease is None or not lease.addresses:
        return vips, (UNSPECIFIED,)
    return vips + tuple(a for a in lease.addresses if a not in vips), ()
