"""Extra listeners of one stand-in: "one API server per control-plane node" over a single store.

Each listener serves the same application (same store, policy, request log) from its own socket —
typically 0.0.0.0:6443 inside one node's network namespace — and can die and come back alone:
stopping closes its listening socket (new connections are refused, as with a dead kube-apiserver)
and ends its open connections, watches included. Its health is what its /livez reports:
`ok`, `unhealthy` (/livez fails, requests are still served) or `no-quorum` (like an API server cut
off from etcd: /livez and every resource request fail).
"""

from __future__ import annotations

import socket
import ssl
from collections.abc import Callable
from dataclasses import dataclass

from aiohttp import web

HEALTH_STATES = ("ok", "unhealthy", "no-quorum")


class ListenerError(Exception):
    """Unknown listener, or a listener asked to do what its state does not allow."""


@dataclass
class _Listener:
    name: str
    open_socket: Callable[[], socket.socket]  # re-creates the socket where it lives (its namespace)
    ssl_context: ssl.SSLContext | None
    runner: web.AppRunner | None = None
    health: str = "ok"


class Listeners:
    def __init__(self, app: web.Application) -> None:
        self._app = app
        self._by_name: dict[str, _Listener] = {}

    async def add(self, name: str, open_socket: Callable[[], socket.socket],
                  ssl_context: ssl.SSLContext | None = None) -> None:
        if name in self._by_name:
            raise ListenerError(f"listener {name!r} exists")
        self._by_name[name] = _Listener(name, open_socket, ssl_context)
        await self.start(name)

    def _get(self, name: str) -> _Listener:
        try:
            return self._by_name[name]
        except KeyError:
            raise ListenerError(f"no listener {name!r}; have {sorted(self._by_name)}") from None

    async def start(self, name: str) -> None:
        listener = self._get(name)
        if listener.runner is not None:
            return
        # A runner of its own, so stopping it ends only its own connections.
        runner = web.AppRunner(self._app, access_log=None, handle_signals=False, shutdown_timeout=0.2)
        await runner.setup()
        await web.SockSite(runner, listener.open_socket(), ssl_context=listener.ssl_context).start()
        listener.runner = runner

    async def stop(self, name: str) -> None:
        listener = self._get(name)
        if listener.runner is not None:
            runner, listener.runner = listener.runner, None
            await runner.cleanup()

    async def close(self) -> None:
        for name in list(self._by_name):
            await self.stop(name)
        self._by_name.clear()

    def running(self, name: str) -> bool:
        return self._get(name).runner is not None

    def set_health(self, name: str, health: str) -> None:
        if health not in HEALTH_STATES:
            raise ListenerError(f"health {health!r} is not one of {HEALTH_STATES}")
        self._get(name).health = health

    def health_of(self, request: web.Request) -> str:
        """The health of the listener this request arrived on ("ok" for the stand-in's main socket)."""
        for listener in self._by_name.values():
            server = listener.runner.server if listener.runner is not None else None
            if server is not None and request.protocol in server.connections:
                return listener.health
        return "ok"

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(self._by_name)
