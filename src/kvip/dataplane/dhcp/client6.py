"""One Service's DHCPv6 client: a UDP socket on its macvlan (SO_BINDTODEVICE, port 546) driving
`kvip.core.dhcp6_lease` with the event loop's clock.

Messages go to ff02::1:2 port 547 from the macvlan's link-local address (the kernel picks it: the socket
is bound to the device), and the server answers that address. The macvlan is created with DAD off
(`macvlan.ensure`), so the link-local address is usable at once; a send that fails anyway (the address
still tentative on a link kvip did not create) is retried at the next tick.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import socket
from collections.abc import Callable

from kvip.core.dhcp import DhcpAsk, MalformedDhcp
from kvip.core.dhcp6 import ALL_SERVERS, CLIENT_PORT, REPLY, SERVER_PORT, decode, encode
from kvip.core.dhcp6_lease import Client6State, next_wakeup, receive, release, tick
from kvip.core.dhcp_lease import Phase

log = logging.getLogger("kvip.dhcp")

MAX_MESSAGE = 1500
RELEASE_TRIES, RELEASE_WAIT = 3, 1.0  # RFC 8415 REL_TIMEOUT 1 s; fewer tries than REL_MAX_RC: a delete waits


def open_socket(interface: str) -> socket.socket:
    sock = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM, socket.IPPROTO_UDP)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_BINDTODEVICE, interface.encode())
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_MULTICAST_HOPS, 1)
        sock.bind(("::", CLIENT_PORT))
        sock.setblocking(False)
    except OSError:
        sock.close()
        raise
    return sock


def _servers(interface: str) -> tuple[str, int, int, int]:
    return (str(ALL_SERVERS), SERVER_PORT, 0, socket.if_nametoindex(interface))


class Dhcp6Client:
    """Runs until cancelled; `state` is always the current lease state. `on_change` is called when the
    held address (or why it was lost) changes, and after each renewal."""

    def __init__(self, ask: DhcpAsk, on_change: Callable[[], None], state: Client6State | None = None) -> None:
        self.ask = ask
        self.state = state or Client6State()
        self._on_change = on_change
        self._sock: socket.socket | None = None

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        self._sock = open_socket(self.ask.interface)
        try:
            while True:
                self._advance(loop.time())
                delay = max(0.0, next_wakeup(self.state) - loop.time())
                try:
                    async with asyncio.timeout(delay):
                        data = await loop.sock_recv(self._sock, MAX_MESSAGE)
                except TimeoutError:
                    continue
                try:
                    message = decode(data)
                except MalformedDhcp as exc:
                    log.debug("%s: ignoring a malformed DHCPv6 message: %s", self.ask.interface, exc)
                    continue
                self._set(receive(self.ask, self.state, message, loop.time()))
        finally:
            self._sock.close()
            self._sock = None

    def _advance(self, now: float) -> None:
        state, message = tick(self.ask, self.state, now, secrets.randbits(24))
        self._set(state)
        if message is not None and self._sock is not None:
            try:
                self._sock.sendto(encode(message), _servers(self.ask.interface))
            except OSError as exc:  # the macvlan went away, is down, or its link-local is tentative
                log.warning("%s: cannot send DHCPv6 message: %s", self.ask.interface, exc)

    def _set(self, state: Client6State) -> None:
        before = self.state
        self.state = state
        if (before.lease, before.lost) != (state.lease, state.lost):
            lease = state.lease
            if lease is not None and (before.lease is None or before.lease.address != lease.address):
                log.info("%s: leased %s (DHCPv6) for %ss", self.ask.interface, lease.address, lease.valid)
            elif lease is not None:
                log.debug("%s: lease of %s renewed (%s)", self.ask.interface, lease.address, before.phase.value)
            elif state.lost:
                log.warning("%s: %s", self.ask.interface, state.lost)
            self._on_change()


async def send_release6(ask: DhcpAsk, state: Client6State) -> bool:
    """Release the held lease and wait (briefly) for the server's Reply; False when none is held or it
    could not be sent. Unanswered, the lease simply runs out at the server."""
    if state.phase not in (Phase.BOUND, Phase.RENEWING, Phase.REBINDING):
        return False
    xid = secrets.randbits(24)
    message = release(ask, xid, state)
    if message is None or state.lease is None:
        return False
    loop = asyncio.get_running_loop()
    try:
        sock = open_socket(ask.interface)
    except OSError as exc:
        log.warning("%s: cannot release %s: %s", ask.interface, state.lease.address, exc)
        return False
    try:
        for _ in range(RELEASE_TRIES):
            sock.sendto(encode(message), _servers(ask.interface))
            try:
                async with asyncio.timeout(RELEASE_WAIT):
                    while True:
                        try:
                            answer = decode(await loop.sock_recv(sock, MAX_MESSAGE))
                        except MalformedDhcp:
                            continue
                        if answer.kind == REPLY and answer.xid == xid:
                            log.info("%s: released %s (DHCPv6)", ask.interface, state.lease.address)
                            return True
            except TimeoutError:
                continue
    except OSError as exc:
        log.warning("%s: cannot release %s: %s", ask.interface, state.lease.address, exc)
        return False
    finally:
        sock.close()
    log.info("%s: released %s (DHCPv6, no Reply)", ask.interface, state.lease.address)
    return True
