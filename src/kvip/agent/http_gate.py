"""A bounded HTTP listener: connection cap, deadlines and its own accept loop (kvip issue #17, row 7).

The review held 1,100 half-sent requests open on :2112 (the HTTP library then in use kept an idle
connection for an hour): /healthz stopped answering and the agent ran out of file descriptors (BIRD's
include write failed with EMFILE). Here each connection is timed by what it is doing: an idle one
(new, or after an answer) is closed after `idle_timeout`, a request whose head has not arrived
`header_timeout` after its first byte is closed, and so is one whose body has not arrived
`body_timeout` after its head. Above `max_connections` the oldest stalled, else oldest idle,
connection is closed, never one being answered: in a flood the kubelet's probe is the newest and has
its answer before it could become the oldest. An answer the client does not read is dropped after
`idle_timeout`. Accepting pauses at twice the cap (room for newcomers whose request is not read yet)
and at most ACCEPT_BATCH are taken per wake-up, so what was accepted is read first; the rest waits in
the kernel's queue, which costs the agent no file descriptor.

The HTTP itself (kvip.agent.http_wire) is a `GatedConnection`: it says what it is doing through
`receiving`, `handling`, `idle`, and the gate closes it (`drop`) when its time is up or room is needed.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import logging
import socket
from collections.abc import Callable
from dataclasses import dataclass

log = logging.getLogger("kvip.agent.http")
ACCEPT_BATCH = 16  # accepts per wake-up: reading what was accepted goes first


@dataclass(frozen=True, slots=True)
class HttpLimits:
    max_connections: int = 64  # per listener
    header_timeout: float = 5.0  # from a request's first byte to its complete head
    body_timeout: float = 5.0  # from a request's head to the end of its body
    idle_timeout: float = 15.0  # a connection with no request in progress (or an answer not read)


class _Phase(enum.Enum):
    IDLE = "idle"  # no byte of a request yet (new, or after an answer)
    RECEIVING = "receiving"  # a request has begun and is not complete
    HANDLING = "handling"  # it is being answered (the answer not yet handed to the kernel)


class ConnectionGate:
    """Bounds the connections of one listener and their time without a request in progress."""

    def __init__(self, limits: HttpLimits) -> None:
        self.limits = limits
        self.open: dict[asyncio.BaseTransport, GatedConnection] = {}  # oldest first
        self.accepting = 0  # accepted, transport not made yet
        self.on_release: list[Callable[[], None]] = []  # the listeners' resume
        self.evicted = 0
        self.timed_out = 0
        self._empty: asyncio.Event | None = None  # set when the last connection goes (shutdown)

    def admit(self, conn: GatedConnection, transport: asyncio.BaseTransport) -> None:
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
        if self._empty is not None and not self.open:
            self._empty.set()

    def trim(self) -> None:
        while len(self.open) > self.limits.max_connections:
            victim = self._victim()
            if victim is None:
                return
            self.evicted += 1
            victim.drop()

    def _victim(self) -> GatedConnection | None:
        """The connection to close for a newcomer: a stalled request first, else the longest idle; never
        one being answered."""
        for phase in (_Phase.RECEIVING, _Phase.IDLE):
            for conn in self.open.values():
                if conn.phase is phase:
                    return conn
        return None

    async def close(self, grace: float) -> None:
        """Shutdown: every connection closes once what it was answering is sent (at most `grace`
        seconds; then it is cut)."""
        for transport in list(self.open):
            transport.close()  # sends what is buffered, then closes
        if self.open:
            self._empty = asyncio.Event()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(grace):
                    await self._empty.wait()
        for conn in list(self.open.values()):
            conn.drop()


class GatedConnection(asyncio.Protocol):
    """One connection behind the gate's count and deadlines; subclasses speak the protocol and call
    `receiving`, `handling` and `idle` as their request goes."""

    def __init__(self, gate: ConnectionGate) -> None:
        self.gate = gate
        self.phase = _Phase.IDLE
        self.transport: asyncio.BaseTransport | None = None
        self._timer: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport
        self.gate.admit(self, transport)
        self._deadline(self.gate.limits.idle_timeout)

    def connection_lost(self, exc: Exception | None) -> None:
        self._cancel()
        if self.transport is not None and self.gate.open.get(self.transport) is self:
            del self.gate.open[self.transport]
            self.gate.released()

    def first_byte(self) -> None:
        """Bytes came in: if no request was in progress, one begins, its head due `header_timeout` from now."""
        if self.phase is _Phase.IDLE:
            self.receiving(self.gate.limits.header_timeout)

    def receiving(self, seconds: float) -> None:
        """A request (or what is left of it) is coming, within `seconds`."""
        self.phase = _Phase.RECEIVING
        self._deadline(seconds)

    def handling(self, seconds: float | None = None) -> None:
        """Being answered; with `seconds`, the client must take the answer within that time."""
        self.phase = _Phase.HANDLING
        if seconds is None:
            self._cancel()
        else:
            self._deadline(seconds)

    def idle(self) -> None:
        self.phase = _Phase.IDLE
        self._deadline(self.gate.limits.idle_timeout)
        self.gate.trim()

    def drop(self) -> None:
        """Close at once (evicted or out of time); the slot is free from now on."""
        self._cancel()
        if self.transport is not None and self.gate.open.pop(self.transport, None) is not None:
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

    def __init__(self, sock: socket.socket, gate: ConnectionGate, factory: Callable[[], GatedConnection]) -> None:
        self.sock = sock
        self.gate = gate
        self.factory = factory
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
