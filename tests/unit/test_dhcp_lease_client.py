"""The one socket client of both DHCP families, over loopback UDP (its socket and the servers' address
swapped for 127.0.0.1 ones; everything else the real V4 and V6 protocols): it leases, tells of the change,
and releases — once for DHCPv4 (no answer comes), until the Reply for DHCPv6."""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from collections.abc import AsyncIterator
from dataclasses import replace
from typing import Any

import pytest

from kvip.core import dhcp, dhcp6
from kvip.core.dhcp import (
    ACK,
    BOOTREPLY,
    DISCOVER,
    OFFER,
    RELEASE,
    REQUEST,
    DhcpAsk,
    DhcpMessage,
)
from kvip.core.dhcp6_lease import Client6State, Lease6
from kvip.core.dhcp_lease import ClientState, Lease
from kvip.core.dhcp_timers import Phase
from kvip.dataplane.dhcp.client import V4
from kvip.dataplane.dhcp.client6 import V6
from kvip.dataplane.dhcp.lease_client import LeaseClient, LeaseProtocol, send_release
from kvip.runtime.tasks import wait_event

ASK = DhcpAsk(bytes.fromhex("02aabbccddee"), "vip-web", families=frozenset({4, 6}))
ADDRESS, SERVER = ipaddress.IPv4Address("10.0.0.7"), ipaddress.IPv4Address("10.0.0.1")


def udp() -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 0))
    sock.setblocking(False)
    return sock


@pytest.fixture
async def server() -> AsyncIterator[socket.socket]:
    sock = udp()
    yield sock
    sock.close()


def on_loopback(protocol: LeaseProtocol[Any, Any], server: socket.socket) -> LeaseProtocol[Any, Any]:
    return replace(protocol, open_socket=lambda _: udp(), destination=lambda _: server.getsockname())


async def next_message(server: socket.socket, protocol: LeaseProtocol[Any, Any]) -> tuple[Any, Any]:
    async with asyncio.timeout(5):
        data, sender = await asyncio.get_running_loop().sock_recvfrom(server, 1500)
    return protocol.decode(data), sender


async def test_the_v4_client_leases_through_discover_offer_request_ack_and_tells_of_it(server: socket.socket) -> None:
    protocol, changed = on_loopback(V4, server), asyncio.Event()
    client = LeaseClient(protocol, ASK, changed.set)
    task = asyncio.create_task(client.run())
    try:
        loop = asyncio.get_running_loop()
        for asked, answer in ((DISCOVER, OFFER), (REQUEST, ACK)):
            message, sender = await next_message(server, protocol)
            assert message.message_type == asked and message.chaddr == ASK.mac
            reply = DhcpMessage(BOOTREPLY, message.xid, ASK.mac, answer, yiaddr=ADDRESS, server_id=SERVER,
                                lease_time=600)
            await loop.sock_sendto(server, dhcp.encode(reply), sender)
        assert await wait_event(changed, 5), "no change told"
        assert client.state.phase is Phase.BOUND and client.state.lease is not None
        assert client.state.lease.address == ADDRESS and client.state.lease.renew_at > loop.time()
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


async def test_a_v4_release_is_sent_once_and_not_waited_for(server: socket.socket) -> None:
    protocol = on_loopback(V4, server)
    held = ClientState(Phase.BOUND, 1, Lease(ADDRESS, SERVER, 0.0, 600, 300, 500))
    assert await send_release(protocol, ASK, held)
    message, _ = await next_message(server, protocol)
    assert (message.message_type, message.ciaddr, message.server_id) == (RELEASE, ADDRESS, SERVER)
    assert not await send_release(protocol, ASK, ClientState())  # nothing held: nothing sent


async def test_a_v6_release_is_sent_again_until_the_server_replies(server: socket.socket) -> None:
    protocol = replace(on_loopback(V6, server), release_wait=0.2)
    lease = Lease6(ipaddress.IPv6Address("2001:db8::7"), b"\x00\x01server", 0.0, 300, 480, 500, 600)
    releasing = asyncio.create_task(send_release(protocol, ASK, Client6State(Phase.BOUND, 1, lease)))
    first, _ = await next_message(server, protocol)
    second, sender = await next_message(server, protocol)  # unanswered: sent again
    assert first.kind == second.kind == dhcp6.RELEASE and first.xid == second.xid
    await asyncio.get_running_loop().sock_sendto(server, dhcp6.encode(
        dhcp6.Dhcp6Message(dhcp6.REPLY, first.xid, first.client_id, lease.server_id)), sender)
    assert await releasing
    with pytest.raises(TimeoutError):  # answered: not sent a third time
        async with asyncio.timeout(0.5):
            await asyncio.get_running_loop().sock_recv(server, 1500)
