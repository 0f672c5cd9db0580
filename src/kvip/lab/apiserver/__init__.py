"""The Kubernetes API stand-in: real REST over real HTTP, with faults on demand.

`StandIn` is the handle tests, benchmarks and `kvip lab` use: start/stop/restart (state survives),
direct object access that behaves exactly like an HTTP write (revision bump, watchers notified), and
the faults of the design (deny a verb → 403, drop events, cut watches, compact history → 410,
latency). `StandInThread` runs one on its own loop for synchronous callers.
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import os
import socket
import ssl
import threading
from base64 import b64encode
from collections.abc import AsyncIterator, Callable, Iterable, Mapping
from concurrent.futures import Future
from pathlib import Path
from typing import Any

import yaml
from aiohttp import web

from kvip.lab.apiserver.kinds import BY_PLURAL
from kvip.lab.apiserver.listeners import ListenerError, Listeners
from kvip.lab.apiserver.requestlog import WRITE_VERBS, RequestRecord
from kvip.lab.apiserver.server import ApiApp, Policy
from kvip.lab.apiserver.store import Store, StoreError
from kvip.lab.objects import namespace

__all__ = ["WRITE_VERBS", "ListenerError", "RequestRecord", "StandIn", "StandInThread", "StoreError", "run_standalone",
           "serving"]

READ_VERBS = ("get", "list", "watch")


class StandIn:
    def __init__(self, *, history_limit: int = 10_000, bookmark_interval: float = 5.0,
                 tokens: Mapping[str, str] | None = None, anonymous: str | None = None) -> None:
        self.store = Store(history_limit)
        self.policy = Policy(tokens=dict(tokens) if tokens is not None else None, anonymous=anonymous,
                             bookmark_interval=bookmark_interval)
        self.api = ApiApp(self.store, self.policy, self)
        self.url = ""
        self._runner: web.AppRunner | None = None
        self._bind: tuple[str, int] | None = None
        self._spare_sock: socket.socket | None = None
        self._refuser: asyncio.Server | None = None
        # One store, several API servers: a listener per control-plane node (see listeners.py).
        self.listeners = Listeners(self.api.app)
        self.api.listener_health = self.listeners.health_of

    # -- lifecycle ---------------------------------------------------------------------------

    async def start(self, host: str = "127.0.0.1", port: int = 0, *, sock: socket.socket | None = None) -> str:
        self._runner = web.AppRunner(self.api.app, access_log=None, handle_signals=False, shutdown_timeout=0.5)
        await self._runner.setup()
        if sock is not None:
            # Keep a duplicate so restart() can serve on the very same listening socket (it may live
            # in another network namespace and could not simply be re-created here).
            if self._spare_sock is None or sock is not self._spare_sock:
                self._spare_sock = sock.dup()
            site: web.BaseSite = web.SockSite(self._runner, sock.dup() if sock is self._spare_sock else sock)
            await site.start()
            bound = sock.getsockname()
        else:
            site = web.TCPSite(self._runner, host, port, reuse_address=True)
            await site.start()
            bound = site._server.sockets[0].getsockname()  # type: ignore[union-attr]
        self._bind = (bound[0], bound[1])
        self.url = f"http://{bound[0]}:{bound[1]}"
        return self.url

    async def stop(self) -> None:
        self.store.close_watchers()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
        if self._spare_sock is not None and self._refuser is None:
            # Our listening socket must stay open for restart(); while stopped, every connection is
            # reset at once, which is what clients of a dead API server see (not a silent hang).
            self._refuser = await asyncio.get_running_loop().create_server(
                _Refuse, sock=self._spare_sock.dup())

    async def close(self) -> None:
        """Stop for good: also release the listening socket (and every extra listener's)."""
        await self.listeners.close()
        await self.stop()
        if self._refuser is not None:
            self._refuser.close()
            self._refuser = None
        if self._spare_sock is not None:
            self._spare_sock.close()
            self._spare_sock = None

    async def restart(self) -> None:
        await self.stop()
        if self._spare_sock is not None:
            if self._refuser is not None:
                self._refuser.close()
                await self._refuser.wait_closed()
                self._refuser = None
            await self.start(sock=self._spare_sock)
        elif self._bind is not None:
            await self.start(self._bind[0], self._bind[1])

    # -- per-node listeners ("each control-plane node's own API server") ----------------------

    async def add_listener(self, name: str, open_socket: Callable[[], socket.socket],
                           ssl_context: ssl.SSLContext | None = None) -> None:
        """Serve the same store on another socket (made by `open_socket`, again at each restart)."""
        await self.listeners.add(name, open_socket, ssl_context)

    async def stop_listener(self, name: str) -> None:
        """That API server dies: its socket closes (connection refused), its connections end."""
        await self.listeners.stop(name)

    async def start_listener(self, name: str) -> None:
        await self.listeners.start(name)

    def set_listener_health(self, name: str, health: str) -> None:
        """"ok", "unhealthy" (its /livez answers 503) or "no-quorum" (every request on it fails)."""
        self.listeners.set_health(name, health)

    @property
    def resource_version(self) -> int:
        return self.store.rv

    @property
    def request_counts(self) -> dict[str, int]:
        return dict(self.api.requests)

    @property
    def requests_served(self) -> int:
        """The `seq` of the latest request: pass it as `after` to see only what comes next."""
        return self.api.log.total

    def request_log(self, *, resource: str | None = None, verbs: Iterable[str] | None = None,
                    method: str | None = None, path_prefix: str | None = None, after: int = 0) -> list[RequestRecord]:
        """Requests served so far (also GET /_standin/requests), e.g. every status write:
        `request_log(resource="services/status", verbs=WRITE_VERBS)`."""
        return self.api.log.query(resource=resource, verbs=frozenset(verbs) if verbs is not None else None,
                                  method=method, path_prefix=path_prefix, after=after)

    # -- kubeconfig --------------------------------------------------------------------------

    def kubeconfig(self, *, token: str | None = None, server: str | None = None, user: str = "kvip",
                   ca_pem: bytes | None = None) -> dict[str, Any]:
        credentials: dict[str, Any] = {"token": token} if token else {}
        cluster: dict[str, Any] = {"server": server or self.url}
        if ca_pem is not None:
            cluster["certificate-authority-data"] = b64encode(ca_pem).decode()
        return {
            "apiVersion": "v1", "kind": "Config", "current-context": "kvip-lab",
            "clusters": [{"name": "kvip-lab", "cluster": cluster}],
            "users": [{"name": user, "user": credentials}],
            "contexts": [{"name": "kvip-lab", "context": {"cluster": "kvip-lab", "user": user, "namespace": "default"}}],
        }

    def write_kubeconfig(self, path: str | os.PathLike[str], *, token: str | None = None,
                         server: str | None = None, ca_pem: bytes | None = None) -> Path:
        target = Path(path)
        target.write_text(yaml.safe_dump(self.kubeconfig(token=token, server=server, ca_pem=ca_pem)))
        target.chmod(0o600)
        return target

    # -- objects (same semantics as the HTTP verbs) -----------------------------------------

    def create(self, obj: dict[str, Any]) -> dict[str, Any]:
        return self.store.create(obj)

    def replace(self, obj: dict[str, Any]) -> dict[str, Any]:
        plural = self.store._kind(obj, None).plural
        meta = obj.get("metadata") or {}
        return self.store.update(obj, plural, meta.get("namespace"), meta.get("name", ""))

    def patch(self, resource: str, name: str, patch: dict[str, Any], namespace: str | None = None,
              subresource: str | None = None) -> dict[str, Any]:
        return self.store.patch(patch, resource, namespace, name, subresource)

    def delete(self, resource: str, name: str, namespace: str | None = None) -> None:
        self.store.delete(resource, namespace, name)

    # Copies, as a real server's responses are: a caller that edits what it read and writes it back
    # must make a change (new resourceVersion, a watch event), never an edit of the stored object itself.
    def get(self, resource: str, name: str, namespace: str | None = None) -> dict[str, Any]:
        return copy.deepcopy(self.store.get(resource, namespace, name))

    def list(self, resource: str, namespace: str | None = None) -> list[dict[str, Any]]:
        return copy.deepcopy(self.store.list(resource, namespace))

    # -- faults ------------------------------------------------------------------------------

    def deny(self, resource: str, verbs: Iterable[str] = READ_VERBS, user: str | None = None) -> None:
        for verb in verbs:
            self.policy.denied.add((user, resource, verb))
        plural = resource.split("/")[0]
        # An RBAC change ends open watches too: the re-watch is refused by the new rules.
        self.store.close_watchers(lambda w: w.plural == plural and (user is None or w.user == user))

    def allow(self, resource: str, verbs: Iterable[str] = READ_VERBS, user: str | None = None) -> None:
        for verb in verbs:
            self.policy.denied.discard((user, resource, verb))

    def set_allowed(self, user: str, pairs: Iterable[tuple[str, str, str, str | None]] | None) -> None:
        """Give `user` exactly these (apiGroup, resource, verb, namespace or None = cluster-wide) grants
        (None: unlimited again), as Roles and ClusterRoles bound to it would."""
        if pairs is None:
            self.policy.allowed.pop(user, None)
        else:
            self.policy.allowed[user] = set(pairs)
        self.store.close_watchers(lambda w: w.user == user)

    def drop_events(self, resource: str, count: int | None = None,
                    types: Iterable[str] = ("ADDED", "MODIFIED", "DELETED")) -> None:
        if resource not in BY_PLURAL:
            raise ValueError(f"unknown resource {resource!r}")
        self.store.drop_events(resource, count, types)

    def cut_watches(self, resource: str | None = None) -> None:
        self.store.close_watchers(lambda w: resource is None or w.plural == resource)

    def compact(self) -> None:
        self.store.compact()

    def set_latency(self, seconds: float) -> None:
        self.policy.latency = float(seconds)

    def set_resource_latency(self, resource: str, seconds: float) -> None:
        """Delay every request on one resource (plural) only: slow Service lists beside fast Leases."""
        if resource not in BY_PLURAL:
            raise ValueError(f"unknown resource {resource!r}")
        self.policy.resource_latency[resource] = float(seconds)

    def clear_faults(self) -> None:
        self.policy.denied.clear()
        self.policy.latency = 0.0
        self.policy.resource_latency.clear()
        self.store.drops.clear()


class _Refuse(asyncio.Protocol):
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        transport.abort()  # type: ignore[attr-defined]


@contextlib.asynccontextmanager
async def serving(*, namespaces: Iterable[str] = ("default", "kube-system"),
                  **standin_kwargs: Any) -> AsyncIterator[StandIn]:
    """A started stand-in holding `namespaces`, closed on exit (its sockets too): what most in-process tests
    start from."""
    standin = StandIn(**standin_kwargs)
    await standin.start()
    try:
        for name in namespaces:
            standin.create(namespace(name))
        yield standin
    finally:
        await standin.close()


class StandInThread:
    """A StandIn on its own event loop in a daemon thread; every method is a thread-safe call."""

    def __init__(self, **standin_kwargs: Any) -> None:
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="kvip-standin", daemon=True)
        self._thread.start()
        self.standin: StandIn = self._call_sync(lambda: StandIn(**standin_kwargs))

    def _call_sync(self, fn: Any) -> Any:
        future: Future[Any] = Future()

        def run() -> None:
            try:
                future.set_result(fn())
            except BaseException as exc:
                future.set_exception(exc)

        self._loop.call_soon_threadsafe(run)
        return future.result(30)

    def start(self, host: str = "127.0.0.1", port: int = 0, *, sock: socket.socket | None = None) -> str:
        return asyncio.run_coroutine_threadsafe(self.standin.start(host, port, sock=sock), self._loop).result(30)

    def stop(self) -> None:
        asyncio.run_coroutine_threadsafe(self.standin.stop(), self._loop).result(30)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)

    def __getattr__(self, name: str) -> Any:
        target = getattr(self.standin, name)
        if not callable(target):
            return target

        def call(*args: Any, **kwargs: Any) -> Any:
            return self._call_sync(lambda: target(*args, **kwargs))

        return call


async def run_standalone(host: str, port: int, kubeconfig_path: str | None) -> None:
    standin = StandIn()
    url = await standin.start(host, port)
    standin.create({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "default"}})
    standin.create({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "kube-system"}})
    if kubeconfig_path:
        standin.write_kubeconfig(kubeconfig_path)
    print(f"kvip API stand-in serving on {url}" + (f"; kubeconfig: {kubeconfig_path}" if kubeconfig_path else ""),
          flush=True)
    try:
        await asyncio.Event().wait()
    finally:
        await standin.stop()
