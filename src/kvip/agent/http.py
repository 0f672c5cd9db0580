"""The agent's HTTP endpoints, on two listeners (kvip issue #17, rows 5-7).

The public listener (`prometheus_server`, default :2112 on every node: the pod is hostNetwork) serves
only /healthz, /readyz and /metrics. /status (what the node sees of every Service) and `POST /resync`
(a relist of every resource: work for the API server) are served only on the local listener: a unix
socket (mode 0600: root only) and, if configured, a loopback address; on the public one they are 404.

Resync requests are coalesced: at most one relist per `min_interval` however many requests
(`resync_request`); a request inside the window is answered 202 with when the relist that will serve
it runs, and never causes a relist of its own. Every listener sits behind a `ConnectionGate`: a
bounded number of connections (above it the oldest stalled or idle one is closed, never one being
answered or whose request waits unread, so a flood of half-open connections cannot lock out the
kubelet's probe), request heads within `header_timeout`,
idle keep-alive connections closed after `idle_timeout`.

The server sees the agent only through `AgentView`, never the Agent itself (no import of the wiring).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import stat
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from typing import Any

from kvip.agent.http_gate import ConnectionGate, GatedListener, HttpLimits
from kvip.agent.http_wire import Answer, App, HttpConnection, Route, json_answer, text

log = logging.getLogger("kvip.agent.http")


class HttpError(Exception):
    """A listener cannot be set up (address or socket path unusable)."""


@dataclass(frozen=True)
class AgentView:
    """What the HTTP endpoint may see of a running agent."""

    status: Callable[[], Mapping[str, Any]]  # the /status document (bounded: kvip.agent.status_doc)
    alive: Callable[[], bool]  # the reconcile loop turns
    ready: Callable[[], bool]  # first sync and first pass done
    metrics: Callable[[], bytes]  # Prometheus text exposition
    resync: Callable[[], None]  # relist and reconcile now


PUBLIC_LIMITS = HttpLimits()
LOCAL_LIMITS = HttpLimits(max_connections=16)  # root's tools only


# -- coalesced resync (pure) -----------------------------------------------------------------


@dataclass(frozen=True)
class ResyncGate:
    last_run: float | None = None  # when the last relist started (monotonic)
    pending_at: float | None = None  # when the one coalesced relist will run, if one is scheduled


@dataclass(frozen=True)
class ResyncAnswer:
    run_now: bool  # this request starts a relist
    schedule_at: float | None  # this request schedules the coalesced relist for then
    next_at: float  # when the relist serving this request runs


def resync_request(gate: ResyncGate, now: float, min_interval: float) -> tuple[ResyncAnswer, ResyncGate]:
    """One POST /resync: run now if the window since the last relist is over; otherwise join (or
    schedule) the single relist at the window's end, so any number of requests make one relist."""
    if gate.pending_at is not None:
        return ResyncAnswer(False, None, gate.pending_at), gate
    if gate.last_run is None or now - gate.last_run >= min_interval:
        return ResyncAnswer(True, None, now), ResyncGate(last_run=now)
    at = gate.last_run + min_interval
    return ResyncAnswer(False, at, at), replace(gate, pending_at=at)


def resync_ran(gate: ResyncGate, now: float) -> ResyncGate:
    """The scheduled relist ran at `now`: a new window starts."""
    return ResyncGate(last_run=now)


class Resyncer:
    """`resync_request` with a clock and a timer: what `POST /resync` calls."""

    def __init__(self, resync: Callable[[], None], min_interval: float) -> None:
        self._resync = resync
        self._min_interval = min_interval
        self._gate = ResyncGate()
        self._timer: asyncio.TimerHandle | None = None

    def request(self) -> tuple[ResyncAnswer, float]:
        """The answer and the time it was decided at (loop clock)."""
        loop = asyncio.get_running_loop()
        now = loop.time()
        answer, self._gate = resync_request(self._gate, now, self._min_interval)
        if answer.run_now:
            self._resync()
        if answer.schedule_at is not None:
            self._timer = loop.call_at(answer.schedule_at, self._scheduled)
        return answer, now

    def _scheduled(self) -> None:
        self._timer = None
        self._gate = resync_ran(self._gate, asyncio.get_running_loop().time())
        self._resync()

    def close(self) -> None:
        if self._timer is not None:
            self._timer.cancel()


# -- the applications --------------------------------------------------------------------------


def build_app(view: AgentView, resyncer: Resyncer | None = None) -> App:
    """/healthz, /readyz, /metrics; with a `resyncer` (the local listener) also /status and POST /resync."""

    def healthz() -> Answer:
        if not view.alive():
            return text("reconcile loop stalled\n", 503)
        return text("ok\n")

    def readyz() -> Answer:
        if view.ready():
            return text("ready\n")
        return text("not ready: cache not synced or no reconcile yet\n", 503)

    def metrics() -> Answer:
        return Answer(200, view.metrics())  # text/plain; charset=utf-8, as Prometheus expects

    app = {"/healthz": Route("GET", healthz), "/readyz": Route("GET", readyz), "/metrics": Route("GET", metrics)}
    if resyncer is not None:
        local = resyncer

        def status() -> Answer:
            return json_answer(view.status())

        def resync() -> Answer:
            answer, now = local.request()
            body = {"relist": "started" if answer.run_now else "coalesced",
                    "nextRelistInSeconds": round(max(0.0, answer.next_at - now), 3)}
            return json_answer(body, 202)

        app |= {"/status": Route("GET", status), "/resync": Route("POST", resync)}
    return app


def parse_address(address: str) -> tuple[str, int]:
    host, _, port = address.rpartition(":")
    return (host.strip("[]") or "0.0.0.0"), int(port)


def unix_listener(path: str, backlog: int = 64) -> socket.socket:
    """A listening unix socket at `path`, mode 0600 from its creation (no window where another user
    could connect). A leftover socket of a previous run is replaced; any other file is refused."""
    os.makedirs(os.path.dirname(path) or ".", mode=0o755, exist_ok=True)
    with contextlib.suppress(FileNotFoundError):
        if not stat.S_ISSOCK(os.lstat(path).st_mode):
            raise HttpError(f"{path} exists and is not a socket; not replacing it")
        os.unlink(path)
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        os.fchmod(sock.fileno(), 0o600)  # Linux: the socket file takes this mode (minus umask) at bind
        sock.bind(path)
        os.chmod(path, 0o600)
        sock.listen(backlog)
    except OSError as exc:
        sock.close()
        raise HttpError(f"cannot listen on unix socket {path}: {exc}") from exc
    sock.setblocking(False)
    return sock


def tcp_listener(address: str, backlog: int = 1024) -> socket.socket:
    """The kernel's queue may be long: a connection waiting there costs the agent no descriptor."""
    host, port = parse_address(address)
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    try:
        return socket.create_server((host, port), family=family, backlog=backlog)
    except OSError as exc:
        raise HttpError(f"cannot listen on {address}: {exc}") from exc


async def _serve(app: App, gate: ConnectionGate, sockets: list[socket.socket]) -> None:
    listeners = [GatedListener(sock, gate, lambda: HttpConnection(gate, app)) for sock in sockets]
    try:
        await asyncio.Event().wait()
    finally:
        for listener in listeners:
            listener.close()
        await gate.close(grace=gate.limits.body_timeout)


async def serve_public(view: AgentView, address: str, limits: HttpLimits = PUBLIC_LIMITS) -> None:
    """/healthz, /readyz and /metrics on the metrics address; nothing else."""
    gate = ConnectionGate(limits)
    await _serve(build_app(view), gate, [tcp_listener(address)])


async def serve_local(view: AgentView, *, socket_path: str, address: str, min_interval: float,
                      limits: HttpLimits = LOCAL_LIMITS) -> None:
    """Everything, /status and POST /resync included, on the unix socket and the loopback address."""
    gate = ConnectionGate(limits)
    resyncer = Resyncer(view.resync, min_interval)
    unix = None
    if socket_path:
        try:
            unix = unix_listener(socket_path)
        except HttpError as exc:  # a read-only /run: the agent runs on, without `kvip status` (one line)
            log.warning("kvip_status_socket: %s; /status and POST /resync are not served there (mount a writable "
                        "directory there or set kvip_status_socket)", exc)
    made = os.stat(socket_path).st_ino if unix is not None else None
    sockets = ([unix] if unix is not None else []) + ([tcp_listener(address, backlog=64)] if address else [])
    try:
        await _serve(build_app(view, resyncer), gate, sockets)
    finally:
        resyncer.close()
        for sock in sockets:
            sock.close()
        if unix is not None:
            with contextlib.suppress(OSError):
                if os.stat(socket_path).st_ino == made:  # ours still: a successor's socket is left alone
                    os.unlink(socket_path)
