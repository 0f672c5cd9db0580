"""DHCPv6 for `lease_client`: a UDP socket on the Service's macvlan (SO_BINDTODEVICE, port 546) and
`kvip.core.dhcp6_lease`.

Messages go to ff02::1:2 port 547 from the macvlan's link-local address (the kernel picks it: the socket
is bound to the device), and the server answers that address. The macvlan is created with DAD off
(`macvlan.ensure`), so the link-local address is usable at once; a send that fails anyway (the address
still tentative on a link kvip did not create) is retried at the next tick. A Release is answered by a
Reply (RFC 8415 §18.2.7): sent up to RELEASE_TRIES times, RELEASE_WAIT apart, until one comes.
"""

from __future__ import annotations

import socket

from kvip.core import dhcp6, dhcp6_lease
from kvip.core.dhcp6 import ALL_SERVERS, CLIENT_PORT, REPLY, SERVER_PORT, Dhcp6Message
from kvip.core.dhcp6_lease import Client6State
from kvip.dataplane.dhcp.lease_client import LeaseProtocol, device_socket

RELEASE_TRIES, RELEASE_WAIT = 3, 1.0  # RFC 8415 REL_TIMEOUT 1 s; fewer tries than REL_MAX_RC: a delete waits


def open_socket(interface: str) -> socket.socket:
    return device_socket(socket.AF_INET6, interface, CLIENT_PORT, (socket.IPPROTO_IPV6, socket.IPV6_MULTICAST_HOPS, 1))


def _servers(interface: str) -> tuple[str, int, int, int]:
    return (str(ALL_SERVERS), SERVER_PORT, 0, socket.if_nametoindex(interface))


def _release_answered(message: Dhcp6Message, xid: int) -> bool:
    return message.kind == REPLY and message.xid == xid


V6: LeaseProtocol[Client6State, Dhcp6Message] = LeaseProtocol(
    name="DHCPv6", family=6, xid_bits=24, new_state=Client6State, open_socket=open_socket, destination=_servers,
    encode=dhcp6.encode, decode=dhcp6.decode, tick=dhcp6_lease.tick, receive=dhcp6_lease.receive,
    next_wakeup=dhcp6_lease.next_wakeup, release=dhcp6_lease.release, release_answered=_release_answered,
    release_tries=RELEASE_TRIES, release_wait=RELEASE_WAIT)
