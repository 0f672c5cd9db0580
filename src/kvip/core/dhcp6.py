"""DHCPv6 (RFC 8415), the pure half: the wire format of the messages kvip's client sends and reads.

A Service asking for `::` gets its IPv6 address from the LAN's DHCPv6 server through the same macvlan as
its IPv4 lease (`kvip.core.dhcp.DhcpAsk`). The client identifier is a DUID-LL (type 3) made of that
macvlan's MAC, and the IAID is the MAC's last four bytes: whichever node leads the Service, and after any
restart, the server sees the same client and IA and hands out the same address. The lease state machine
is `kvip.core.dhcp6_lease`.

Only what the client needs is modelled: Client/Server ID, IA_NA with IAADDR, ORO, Preference, Elapsed
Time, Status Code and Client FQDN (RFC 4704); any other option is skipped.
"""

from __future__ import annotations

import ipaddress
import struct
from dataclasses import dataclass

from kvip.core.dhcp import MalformedDhcp

CLIENT_PORT, SERVER_PORT = 546, 547
ALL_SERVERS = ipaddress.IPv6Address("ff02::1:2")  # All_DHCP_Relay_Agents_and_Servers, link scope

SOLICIT, ADVERTISE, REQUEST, CONFIRM, RENEW, REBIND, REPLY, RELEASE = 1, 2, 3, 4, 5, 6, 7, 8
OPT_CLIENTID, OPT_SERVERID, OPT_IA_NA, OPT_IAADDR, OPT_ORO, OPT_PREFERENCE = 1, 2, 3, 5, 6, 7
OPT_ELAPSED_TIME, OPT_STATUS_CODE, OPT_CLIENT_FQDN, OPT_SOL_MAX_RT = 8, 13, 39, 82
SUCCESS, UNSPEC_FAIL, NO_ADDRS_AVAIL, NO_BINDING, NOT_ON_LINK, USE_MULTICAST = 0, 1, 2, 3, 4, 5
FQDN_NO_UPDATE = 0x04  # RFC 4704 N flag: the server updates no DNS record (kvip does no DNS)
ASKED_OPTIONS = (OPT_SOL_MAX_RT,)  # RFC 8415 §18.2.1: a Solicit asks for SOL_MAX_RT
INFINITY = 0xFFFFFFFF

_OPTION = struct.Struct("!HH")
_IA_NA = struct.Struct("!III")
_LIFETIMES = struct.Struct("!II")
DUID_LL = b"\x00\x03\x00\x01"  # DUID type 3 (link-layer address), hardware type 1 (Ethernet)


@dataclass(frozen=True)
class Status:
    code: int
    message: str = ""


@dataclass(frozen=True)
class IaAddress:
    address: ipaddress.IPv6Address
    preferred: int = 0
    valid: int = 0
    status: Status | None = None


@dataclass(frozen=True)
class IaNa:
    iaid: int
    t1: int = 0
    t2: int = 0
    addresses: tuple[IaAddress, ...] = ()
    status: Status | None = None


@dataclass(frozen=True)
class Dhcp6Message:
    kind: int
    xid: int  # 24 bits
    client_id: bytes | None = None
    server_id: bytes | None = None
    ia_na: tuple[IaNa, ...] = ()
    elapsed: int | None = None  # hundredths of a second since the exchange began
    requested_options: tuple[int, ...] = ()
    preference: int | None = None
    status: Status | None = None
    fqdn: str | None = None
    fqdn_flags: int = 0


def duid_ll(mac: bytes) -> bytes:
    return DUID_LL + mac


def iaid_of(mac: bytes) -> int:
    """The IAID: the MAC's last four bytes, stable as the MAC is."""
    return int.from_bytes(mac[-4:], "big")


# -- encoding -----------------------------------------------------------------------------------


def _option(code: int, value: bytes) -> bytes:
    return _OPTION.pack(code, len(value)) + value


def _status(status: Status) -> bytes:
    return _option(OPT_STATUS_CODE, struct.pack("!H", status.code) + status.message.encode("utf-8"))


def _ia_na(ia: IaNa) -> bytes:
    inner = b""
    for entry in ia.addresses:
        body = entry.address.packed + _LIFETIMES.pack(entry.preferred, entry.valid)
        inner += _option(OPT_IAADDR, body + (_status(entry.status) if entry.status else b""))
    if ia.status is not None:
        inner += _status(ia.status)
    return _option(OPT_IA_NA, _IA_NA.pack(ia.iaid, ia.t1, ia.t2) + inner)


def domain_name(name: str) -> bytes:
    """A host name in DNS wire format, as a partial name (no root label: RFC 4704 §4.2 lets the server
    complete it)."""
    return b"".join(bytes((len(label),)) + label.encode("ascii") for label in name.split(".") if label)


def encode(message: Dhcp6Message) -> bytes:
    parts = [struct.pack("!I", (message.kind << 24) | (message.xid & 0xFFFFFF))]
    if message.client_id is not None:
        parts.append(_option(OPT_CLIENTID, message.client_id))
    if message.server_id is not None:
        parts.append(_option(OPT_SERVERID, message.server_id))
    parts += [_ia_na(ia) for ia in message.ia_na]
    if message.requested_options:
        parts.append(_option(OPT_ORO, b"".join(struct.pack("!H", c) for c in message.requested_options)))
    if message.preference is not None:
        parts.append(_option(OPT_PREFERENCE, bytes((message.preference,))))
    if message.elapsed is not None:
        parts.append(_option(OPT_ELAPSED_TIME, struct.pack("!H", min(message.elapsed, 0xFFFF))))
    if message.status is not None:
        parts.append(_status(message.status))
    if message.fqdn:
        parts.append(_option(OPT_CLIENT_FQDN, bytes((message.fqdn_flags,)) + domain_name(message.fqdn)))
    return b"".join(parts)


# -- decoding -----------------------------------------------------------------------------------


def _options(data: bytes, where: str) -> list[tuple[int, bytes]]:
    found, at = [], 0
    while at < len(data):
        if at + _OPTION.size > len(data):
            raise MalformedDhcp(f"{where}: {len(data) - at} bytes left, too few for an option header")
        code, size = _OPTION.unpack_from(data, at)
        at += _OPTION.size
        if at + size > len(data):
            raise MalformedDhcp(f"{where}: option {code} runs past the end ({size} bytes, {len(data) - at} left)")
        found.append((code, data[at:at + size]))
        at += size
    return found


def _read_status(value: bytes) -> Status:
    if len(value) < 2:
        raise MalformedDhcp(f"a status code option of {len(value)} bytes")
    return Status(struct.unpack_from("!H", value)[0], value[2:].decode("utf-8", "replace"))


def _read_iaaddr(value: bytes) -> IaAddress:
    if len(value) < 24:
        raise MalformedDhcp(f"an IAADDR option of {len(value)} bytes (at least 24)")
    preferred, valid = _LIFETIMES.unpack_from(value, 16)
    status = None
    for code, inner in _options(value[24:], "IAADDR"):
        if code == OPT_STATUS_CODE:
            status = _read_status(inner)
    return IaAddress(ipaddress.IPv6Address(value[:16]), preferred, valid, status)


def _read_ia_na(value: bytes) -> IaNa:
    if len(value) < _IA_NA.size:
        raise MalformedDhcp(f"an IA_NA option of {len(value)} bytes (at least 12)")
    iaid, t1, t2 = _IA_NA.unpack_from(value)
    addresses, status = [], None
    for code, inner in _options(value[_IA_NA.size:], "IA_NA"):
        if code == OPT_IAADDR:
            addresses.append(_read_iaaddr(inner))
        elif code == OPT_STATUS_CODE:
            status = _read_status(inner)
    return IaNa(iaid, t1, t2, tuple(addresses), status)


def _read_name(value: bytes) -> str:
    labels, at = [], 0
    while at < len(value):
        size = value[at]
        if size == 0:
            break
        if size > 63 or at + 1 + size > len(value):
            raise MalformedDhcp("a client FQDN label runs past the option")
        labels.append(value[at + 1:at + 1 + size].decode("ascii", "replace"))
        at += 1 + size
    return ".".join(labels)


def _single(value: bytes, size: int, what: str) -> bytes:
    if len(value) != size:
        raise MalformedDhcp(f"{what} option is {len(value)} bytes, not {size}")
    return value


def decode(data: bytes) -> Dhcp6Message:
    """A DHCPv6 message from UDP payload bytes, `MalformedDhcp` saying why when it is not one."""
    if len(data) < 4:
        raise MalformedDhcp(f"{len(data)} bytes is shorter than a DHCPv6 header")
    head = struct.unpack_from("!I", data)[0]
    fields: dict[str, object] = {}
    ias: list[IaNa] = []
    for code, value in _options(data[4:], "message"):
        if code == OPT_CLIENTID:
            fields["client_id"] = value
        elif code == OPT_SERVERID:
            fields["server_id"] = value
        elif code == OPT_IA_NA:
            ias.append(_read_ia_na(value))
        elif code == OPT_ORO:
            if len(value) % 2:
                raise MalformedDhcp(f"an option request option of {len(value)} bytes (odd)")
            fields["requested_options"] = tuple(struct.unpack(f"!{len(value) // 2}H", value))
        elif code == OPT_PREFERENCE:
            fields["preference"] = _single(value, 1, "preference")[0]
        elif code == OPT_ELAPSED_TIME:
            fields["elapsed"] = struct.unpack("!H", _single(value, 2, "elapsed time"))[0]
        elif code == OPT_STATUS_CODE:
            fields["status"] = _read_status(value)
        elif code == OPT_CLIENT_FQDN:
            if not value:
                raise MalformedDhcp("an empty client FQDN option")
            fields["fqdn_flags"], fields["fqdn"] = value[0], _read_name(value[1:])
    return Dhcp6Message(head >> 24, head & 0xFFFFFF, ia_na=tuple(ias), **fields)  # type: ignore[arg-type]
