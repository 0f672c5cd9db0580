"""DHCPv4 for `lease_client`: a UDP socket on the Service's macvlan (SO_BINDTODEVICE, port 68, broadcast)
and `kvip.core.dhcp_lease`.

All messages go to 255.255.255.255:67 with the broadcast flag set: the macvlan has no address, so
replies must come broadcast (see the state machine's note on RENEWING). A DHCPRELEASE gets no reply
(RFC 2131 §4.4.6): it is sent once.
"""

from __future__ import annotations

import socket

from kvip.core import dhcp, dhcp_lease
from kvip.core.dhcp import CLIENT_PORT, SERVER_PORT, DhcpMessage
from kvip.core.dhcp_lease import ClientState
from kvip.dataplane.dhcp.lease_client import LeaseProtocol, device_socket


def open_socket(interface: str) -> socket.socket:
    return device_socket(socket.AF_INET, interface, CLIENT_PORT, (socket.SOL_SOCKET, socket.SO_BROADCAST, 1))


def _servers(interface: str) -> tuple[str, int]:
    return ("255.255.255.255", SERVER_PORT)


V4: LeaseProtocol[ClientState, DhcpMessage] = LeaseProtocol(
    name="DHCP", family=4, xid_bits=32, new_state=ClientState, open_socket=open_socket, destination=_servers,
    encode=dhcp.encode, decode=dhcp.decode, tick=dhcp_lease.tick, receive=dhcp_lease.receive,
    next_wakeup=dhcp_lease.next_wakeup, release=dhcp_lease.release)
