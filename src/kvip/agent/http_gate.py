"""A bounded HTTP listener: connection cap, deadlines and its own accept loop (kvip issue #17, row 7).

The review held 1,100 half-sent requests open on :2112 (aiohttp keeps an idle connection for an hour):
/healthz stopped answering and the agent ran out of file descriptors (BIRD's include write failed with
EMFILE). Here each connection is timed by what it is doing: an idle one (new, or after an answer) is
closed after `idle_timeout`, a request whose head has not arrived `header_timeout` after its first
byte is closed. Above `max_connections` the oldest stalled, else oldest idle, connection is closed,
never one being answered: in a flood the kubelet's probe is the newest and has its answer before it
could become the oldest. Accepting pauses at twice the cap (room for newcomers whose request is not
read yet) and at most ACCEPT_BATCH are taken per wake-up, so what was accepted is read first; the rest
waits in the kernel's queue, which costs the agent no file descriptor.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import logging
import socket
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from aiohttp import web

log = logging.getLogger("kvip.agent.http")
ACCEPT_BATCH = 16  # accepts per wake-up: reading what was accepted goes first


@dataclass(frozen=True)
class HttpLimits:
    max_connections: int = 64  # per listener
    header_timeout: float = 5.0  # from a request's first byte to its complete head
    body_timeout: float = 5.0  # reading what is left of a body after the answer
    idle_timeout: float = 15.0  # a connection with no request in progress


class _Phase(enum.Enum):
    IDLE = "idle"  # no byte of a request yet (new, or after an answer)
    RECEIVING = "receiving"  # a request has begun and is not complete
    HANDLING = "handling"  # a handler runs for it


class ConnectionGate:
    """Bounds the connections of one listener and their time without a request in progress."""

    def __init__(self, limits: HttpLimits) -> None:
        self.limits = limits
        self.open: dict[asyncio.BaseTransport, _GatedConnection] = {}  # oldest first
        self.accepting = 0  # accepted, transport not made yet
        self.on_release: list[Callable[[], None]] = []  # the listeners' resume
        self.evicted = 0
        self.timed_out = 0

    def factory(self, inner: Callable[[], asyncio.Protocol]) -> Callable[[], asyncio.Protocol]:
        return lambda: _GatedConnection(self, inner())

    def admit(self, conn: _GatedConnection, transport: asyncio.BaseTransport) -> None:
        self.open[transport] = conn
        self.trim()

    @property
    def full(self) -> bool:
        """No more accepts: the cap, plus as many newcomers whose requests are not read yet (which one
        is the kubelet's probe is only known once read)."""
        return len(self.open) + self.accepting >= 2 * self.limits.max_connections

    def released(self) -> None:
        for resume in self.on_release:
            resume()

    def trim(self) -> None:
        while len(self.open) > self.limits.max_connections:
            victim = self._victim()
            if victim is None:
                return
            self.evicted += 1
            victim.drop()

    def _victim(self) -> _GatedConnection | None:
        """The connection to close for a newcomer: a stalled request first, else the longest idle; never
        one being answered."""
        for phase in (_Phase.RECEIVING, _Phase.IDLE):
            for conn in self.open.values():
                if conn.phase is phase:
                    return conn
        return None

    @web.middleware
    async def middleware(self, request: web.Request,
                         handler: Callable[[web.Request], Awaitable[web.StreamResponse]]) -> web.StreamResponse:
        conn = self.open.get(request.transport) if request.transport is not None else None
        if conn is not None:
            conn.begin()
        try:
            return await handler(request)
        finally:
            if conn is not None:
                conn.end()


class _GatedConnection(asyncio.Protocol):
    """aiohttp's protocol for one connection, behind the gate's count and deadlines."""

    def __init__(self, gate: ConnectionGate, inner: asyncio.Protocol) -> None:
        self.gate = gate
        self.inner = inner
        self.phase = _Phase.IDLE
        self.transport: asyncio.BaseTransport | None = None
        self._timer: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport
        self.gate.admit(self, transport)
        self.inner.connection_made(transport)
        self._deadline(self.gate.limits.idle_timeout)

    def data_received(self, data: bytes) -> None:
        if self.phase is _Phase.IDLE:
            self.phase = _Phase.RECEIVING
            self._deadline(self.gate.limits.header_timeout)
        self.inner.data_received(data)
        self.gate.trim()  # read now: if this was a stalled request, it may be the one to go

    def eof_received(self) -> bool | None:
        return self.inner.eof_received()

    def pause_writing(self) -> None:
        self.inner.pause_writing()

    def resume_writing(self) -> None:
        self.inner.resume_writing()

    def connection_lost(self, exc: Exception | None) -> None:
        self._cancel()
        if self.transport is not None and self.gate.open.get(self.transport) is self:
            del self.gate.open[self.transport]
        self.inner.connection_lost(exc)
        self.gate.released()

    def begin(self) -> None:
        self.phase = _Phase.HANDLING
        self._cancel()

    def end(self) -> None:
        self.phase = _Phase.IDLE
        self._deadline(self.gate.limits.idle_timeout)
        self.gate.trim()

    def drop(self) -> None:
        """Close at once (evicted or out of time); the slot is free from now on."""
        self._cancel()
        if self.transport is not None:
            self.gate.open.pop(self.transport, None)
            self.transport.abort()
            self.gate.released()

    def _deadline(self, seconds: float) -> None:
        self._cancel()
        self._timer = asyncio.get_running_loop().call_later(seconds, self._expired)

    def _expired(self) -> None:
        self._timer = None
        self.gate.timed_out += 1
        self.drop()

    def _cancel(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None


class GatedListener:
    """Accepts from a listening socket while the gate has room; pauses (leaving connections in the
    kernel's queue) when it has not, and resumes as connections go."""

    def __init__(self, sock: socket.socket, gate: ConnectionGate, factory: Callable[[], asyncio.Protocol]) -> None:
        self.sock = sock
        self.gate = gate
        self.factory = gate.factory(factory)
        self.loop = asyncio.get_running_loop()
        self.reading = False
        self.closed = False
        self.tasks: set[asyncio.Task[None]] = set()
        gate.on_release.append(self.resume)
        sock.setblocking(False)
        self.resume()

    def resume(self) -> None:
        if not self.reading and not self.closed and not self.gate.full:
            self.loop.add_reader(self.sock.fileno(), self._accept)
            self.reading = True

    def _pause(self) -> None:
        if self.reading:
            self.loop.remove_reader(self.sock.fileno())
            self.reading = False

    def _accept(self) -> None:
        for _ in range(ACCEPT_BATCH):
            if self.gate.full:
                self._pause()
                return
            try:
                conn, _ = self.sock.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:  # EMFILE and the like: stop a moment rather than spin
                log.warning("cannot accept on %s: %s; pausing 1s", self.sock.getsockname(), exc)
                self._pause()
                self.loop.call_later(1.0, self.resume)
                return
            conn.setblocking(False)
            self.gate.accepting += 1
            task = self.loop.create_task(self._connect(conn))
            self.tasks.add(task)
            task.add_done_callback(self.tasks.discard)

    async def _connect(self, conn: socket.socket) -> None:
        try:
            await self.loop.connect_accepted_socket(self.factory, conn)
        except OSError:
            conn.close()
        finally:
            self.gate.accepting -= 1

    def close(self) -> None:
        self.closed = True
        self._pause()
        for task in self.tasks:
            task.cancel()
        with contextlib.suppress(OSError):
            self.sock.close()
