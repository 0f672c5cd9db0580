"""One Service's DHCP client: a UDP socket on its macvlan (SO_BINDTODEVICE, port 68, broadcast) driving
`kvip.core.dhcp_lease` with the event loop's clock.

The socket is bound to the macvlan before port 68, so every Service's client has the port on its own
link. All messages go to 255.255.255.255:67 with the broadcast flag set: the macvlan has no address, so
replies must come broadcast (see the state machine's note on RENEWING).
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import socket
from collections.abc import Callable

from kvip.core.dhcp import (
    CLIENT_PORT,
    SERVER_PORT,
    DhcpAsk,
    MalformedDhcp,
    decode,
    encode,
)
from kvip.core.dhcp_lease import ClientState, Phase, next_wakeup, receive, release, tick

log = logging.getLogger("kvip.dhcp")

MAX_MESSAGE = 1500


def open_socket(interface: str) -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM, socket.IPPROTO_UDP)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_BINDTODEVICE, interface.encode())
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_BROADCAST, 1)
        sock.bind(("0.0.0.0", CLIENT_PORT))
        sock.setblocking(False)
    except OSError:
        sock.close()
        raise
    return sock


class DhcpClient:
    """Runs until cancelled; `state` is always the current lease state. `on_change` is called when the
    held address (or why it was lost) changes, and after each renewal."""

    def __init__(self, ask: DhcpAsk, on_change: Callable[[], None], state: ClientState | None = None) -> None:
        self.ask = ask
        self.state = state or ClientState()
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
                    log.debug("%s: ignoring a malformed DHCP message: %s", self.ask.interface, exc)
                    continue
                self._set(receive(self.ask, self.state, message, loop.time()))
        finally:
            self._sock.close()
            self._sock = None

    def _advance(self, now: float) -> None:
        state, message = tick(self.ask, self.state, now, secrets.randbits(32))
        self._set(state)
        if message is not None:
            self._send(encode(message))

    def _set(self, state: ClientState) -> None:
        before = self.state
        self.state = state
        if (before.lease, before.lost) != (state.lease, state.lost):
            lease = state.lease
            if lease is not None and (before.lease is None or before.lease.address != lease.address):
                log.info("%s: leased %s from %s for %ss", self.ask.interface, lease.address, lease.server,
                         lease.lease_time)
            elif lease is not None:
                log.debug("%s: lease of %s renewed (%s)", self.ask.interface, lease.address, before.phase.value)
            elif state.lost:
                log.warning("%s: %s", self.ask.interface, state.lost)
            self._on_change()

    def _send(self, payload: bytes) -> None:
        if self._sock is None:
            return
        try:
            self._sock.sendto(payload, ("255.255.255.255", SERVER_PORT))
        except OSError as exc:  # the macvlan went away or is down: the next tick retries
            log.warning("%s: cannot send DHCP message: %s", self.ask.interface, exc)


def send_release(ask: DhcpAsk, state: ClientState) -> bool:
    """DHCPRELEASE of the held lease (RFC 2131 §4.4.6: no reply comes); False when none is held or the
    message could not be sent."""
    if state.phase not in (Phase.BOUND, Phase.RENEWING, Phase.REBINDING):
        return False
    message = release(ask, secrets.randbits(32), state)
    if message is None:
        return False
    try:
        sock = open_socket(ask.interface)
    except OSError as exc:
        log.warning("%s: cannot release %s: %s", ask.interface, message.ciaddr, exc)
        return False
    try:
        sock.sendto(encode(message), ("255.255.255.255", SERVER_PORT))
    except OSError as exc:
        log.warning("%s: cannot release %s: %s", ask.interface, message.ciaddr, exc)
        return False
    finally:
        sock.close()
    log.info("%s: released %s", ask.interface, message.ciaddr)
    return True
