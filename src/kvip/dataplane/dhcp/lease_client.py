"""One Service's DHCP client of either family: a UDP socket on its macvlan (SO_BINDTODEVICE) driving a pure
lease state machine (`kvip.core.dhcp_lease` or `kvip.core.dhcp6_lease`) with the event loop's clock.

What differs between DHCPv4 and DHCPv6 is declared once per family in a `LeaseProtocol` (`client.V4`,
`client6.V6`): the socket, where messages go, the wire format, the state machine's functions, how a
release is answered. The loop, the logging and the release below are the same for both.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import socket
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from kvip.core.dhcp import DhcpAsk, MalformedDhcp
from kvip.core.dhcp_timers import HOLDING, LeaseState

log = logging.getLogger("kvip.dhcp")

MAX_MESSAGE = 1500

S = TypeVar("S", bound=LeaseState)
M = TypeVar("M")


@dataclass(frozen=True)
class LeaseProtocol(Generic[S, M]):
    """One DHCP family, as the socket client needs it."""

    name: str  # "DHCP" or "DHCPv6", in log lines
    family: int  # 4 or 6
    xid_bits: int  # a transaction ID's width: 32 (RFC 2131) or 24 (RFC 8415)
    new_state: Callable[[], S]
    open_socket: Callable[[str], socket.socket]  # bound to the interface, non-blocking
    destination: Callable[[str], tuple[Any, ...]]  # the servers' socket address, seen from an interface
    encode: Callable[[M], bytes]
    decode: Callable[[bytes], M]  # raises MalformedDhcp
    tick: Callable[[DhcpAsk, S, float, int], tuple[S, M | None]]
    receive: Callable[[DhcpAsk, S, M, float], S]
    next_wakeup: Callable[[S], float]
    release: Callable[[DhcpAsk, int, S], M | None]
    # Whether a message answers our release with this xid; None: no answer comes (DHCPv4, RFC 2131 §4.4.6)
    release_answered: Callable[[M, int], bool] | None = None
    release_tries: int = 1
    release_wait: float = 0.0  # seconds to wait for an answer, each try


def device_socket(family: socket.AddressFamily, interface: str, port: int, option: tuple[int, int, int]
                  ) -> socket.socket:
    """A non-blocking UDP socket bound to `interface` (SO_BINDTODEVICE, before the port: every Service's
    client has the port on its own link), then to `port` on any address, with one more socket option."""
    sock = socket.socket(family, socket.SOCK_DGRAM, socket.IPPROTO_UDP)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_BINDTODEVICE, interface.encode())
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.setsockopt(*option)
        sock.bind(("::" if family == socket.AF_INET6 else "0.0.0.0", port))
        sock.setblocking(False)
    except OSError:
        sock.close()
        raise
    return sock


class LeaseClient(Generic[S, M]):
    """Runs until cancelled; `state` is always the current lease state. `on_change` is called when the
    held address (or why it was lost) changes, and after each renewal."""

    def __init__(self, protocol: LeaseProtocol[S, M], ask: DhcpAsk, on_change: Callable[[], None],
                 state: S | None = None) -> None:
        self.protocol = protocol
        self.ask = ask
        self.state: S = state if state is not None else protocol.new_state()
        self._on_change = on_change
        self._sock: socket.socket | None = None

    async def run(self) -> None:
        loop, p = asyncio.get_running_loop(), self.protocol
        self._sock = p.open_socket(self.ask.interface)
        try:
            while True:
                self._advance(loop.time())
                delay = max(0.0, p.next_wakeup(self.state) - loop.time())
                try:
                    async with asyncio.timeout(delay):
                        data = await loop.sock_recv(self._sock, MAX_MESSAGE)
                except TimeoutError:
                    continue
                try:
                    message = p.decode(data)
                except MalformedDhcp as exc:
                    log.debug("%s: ignoring a malformed %s message: %s", self.ask.interface, p.name, exc)
                    continue
                self._set(p.receive(self.ask, self.state, message, loop.time()))
        finally:
            self._sock.close()
            self._sock = None

    def _advance(self, now: float) -> None:
        p = self.protocol
        state, message = p.tick(self.ask, self.state, now, secrets.randbits(p.xid_bits))
        self._set(state)
        if message is not None and self._sock is not None:
            try:
                self._sock.sendto(p.encode(message), p.destination(self.ask.interface))
            except OSError as exc:  # the macvlan went away, is down, or (v6) its link-local is tentative
                log.warning("%s: cannot send %s message: %s", self.ask.interface, p.name, exc)

    def _set(self, state: S) -> None:
        before = self.state
        self.state = state
        if (before.lease, before.lost) == (state.lease, state.lost):
            return
        lease = state.lease
        if lease is not None and (before.lease is None or before.lease.address != lease.address):
            log.info("%s: leased %s from %s for %ss (%s)", self.ask.interface, lease.address, lease.server_name,
                     lease.lifetime, self.protocol.name)
        elif lease is not None:
            log.debug("%s: lease of %s renewed (%s)", self.ask.interface, lease.address, before.phase.value)
        elif state.lost:
            log.warning("%s: %s", self.ask.interface, state.lost)
        self._on_change()


async def send_release(protocol: LeaseProtocol[S, M], ask: DhcpAsk, state: S) -> bool:
    """Release the held lease, waiting briefly for the server's answer where the protocol has one; False
    when none is held or it could not be sent. Unanswered, the lease simply runs out at the server."""
    if state.phase not in HOLDING or state.lease is None:
        return False
    xid = secrets.randbits(protocol.xid_bits)
    message = protocol.release(ask, xid, state)
    if message is None:
        return False
    address, answered = state.lease.address, protocol.release_answered
    try:
        sock = protocol.open_socket(ask.interface)
    except OSError as exc:
        log.warning("%s: cannot release %s: %s", ask.interface, address, exc)
        return False
    try:
        for _ in range(protocol.release_tries):
            sock.sendto(protocol.encode(message), protocol.destination(ask.interface))
            if answered is None or await _answer(protocol, sock, lambda m: answered(m, xid)):
                log.info("%s: released %s (%s)", ask.interface, address, protocol.name)
                return True
    except OSError as exc:
        log.warning("%s: cannot release %s: %s", ask.interface, address, exc)
        return False
    finally:
        sock.close()
    log.info("%s: released %s (%s, no answer)", ask.interface, address, protocol.name)
    return True


async def _answer(protocol: LeaseProtocol[S, M], sock: socket.socket, wanted: Callable[[M], bool]) -> bool:
    """Whether a wanted message arrives within the protocol's release wait."""
    loop = asyncio.get_running_loop()
    try:
        async with asyncio.timeout(protocol.release_wait):
            while True:
                try:
                    if wanted(protocol.decode(await loop.sock_recv(sock, MAX_MESSAGE))):
                        return True
                except MalformedDhcp:
                    continue
    except TimeoutError:
        return False
