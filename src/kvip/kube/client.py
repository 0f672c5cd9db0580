"""Builds the lightkube AsyncClients an agent uses: kubeconfig file or in-cluster service account.

Each `make_client` call gets its own connection pool, so a client given to one job (the elector)
never queues behind another's requests (list/watch, status writes) (kube-vip #1316).

Bootstrap (kube-vip #684): on the first kubeadm control-plane node (Kubernetes 1.29+) admin.conf is
refused with 403 until kubeadm has bound its group to cluster-admin, yet the control-plane VIP must
be up before that can happen. With a kubeconfig file, a 403 before that kubeconfig has ever been
authorized is retried with super-admin.conf from the same directory (when present); the kubeconfig
is tried again every `retry_primary` seconds and used alone from its first authorized answer on.
The rest of kvip sees one ordinary lightkube client: the switch lives in its HTTP transport.
Owns nothing else; callers decide what to do with API errors (see `kvip.kube.errors`).
"""

from __future__ import annotations

import dataclasses
import enum
import logging
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import httpx2 as httpx  # lightkube 1.x ships its own httpx fork
import msgspec
from lightkube import AsyncClient, KubeConfig
from lightkube.config.client_adapter import ConnectionParams

__all__ = ["ADMIN_CONF", "SUPER_ADMIN", "ApiEndpoint", "choose_endpoint", "local_endpoint", "BootstrapCredentials", "CredentialState", "KubeClientError", "Route", "after_primary",
           "load_kubeconfig", "make_client", "route"]

log = logging.getLogger("kvip.kube.client")

SUPER_ADMIN = "super-admin.conf"
RETRY_PRIMARY = 30.0


class KubeClientError(Exception):
    """No usable cluster credentials were found."""


ADMIN_CONF = "/etc/kubernetes/admin.conf"


@dataclass(frozen=True)
class ApiEndpoint:
    """Which kubeconfig an agent uses (None: in-cluster), and the API server address that replaces its
    `server` (None: the kubeconfig's own)."""

    kubeconfig: str | None
    server: str | None = None


def choose_endpoint(explicit: str | None, *, control_plane: bool, port: int, kubernetes_addr: str | None,
                    home: str, exists: Callable[[str], bool]) -> ApiEndpoint:
    """kube-vip's order (pkg/manager): an explicit kubeconfig other than the well-known paths; else kubeadm's
    admin.conf; else ~/.kube/config; else in-cluster. `kubernetes_addr` replaces the server of an explicit
    file or of admin.conf. With the control plane on and admin.conf, the server defaults to
    `kubernetes:<port>`, which the static Pod maps to 127.0.0.1: on the first node the kubeconfig's own
    server is the VIP that this very agent has yet to bring up."""
    override = _with_scheme(kubernetes_addr) if kubernetes_addr else None
    home_conf = os.path.join(home, ".kube", "config")
    if explicit and explicit not in (ADMIN_CONF, home_conf) and exists(explicit):
        return ApiEndpoint(explicit, override)
    if exists(ADMIN_CONF):
        if override is None and control_plane:
            override = f"https://kubernetes:{port}"
        return ApiEndpoint(ADMIN_CONF, override)
    if exists(home_conf):
        return ApiEndpoint(home_conf)
    return ApiEndpoint(explicit)  # None: in-cluster; a missing file: load_kubeconfig says so


def local_endpoint(explicit: str | None, *, control_plane: bool, port: int,
                   kubernetes_addr: str | None) -> ApiEndpoint:
    """`choose_endpoint` on this machine's files, saying once which server replaces the kubeconfig's."""
    endpoint = choose_endpoint(explicit, control_plane=control_plane, port=port, kubernetes_addr=kubernetes_addr,
                               home=os.path.expanduser("~"), exists=os.path.isfile)
    if endpoint.server is not None:
        log.info("API server %s (instead of the server in %s)", endpoint.server, endpoint.kubeconfig)
    return endpoint


def _with_scheme(address: str) -> str:
    return address if "://" in address else f"https://{address}"


def load_kubeconfig(path: str | None, server: str | None = None) -> KubeConfig:
    """`path`, else $KUBECONFIG, else the in-cluster service account; `server` replaces the address of
    the current context's cluster (TLS is still verified against the kubeconfig's CA)."""
    candidate = path or os.environ.get("KUBECONFIG")
    try:
        config = KubeConfig.from_file(candidate) if candidate else KubeConfig.from_service_account()
    except Exception as exc:  # lightkube raises several unrelated types here
        raise KubeClientError(f"cannot load Kubernetes credentials from {where_of(candidate)}: {exc}") from exc
    if server is not None:
        context = config.get()
        if context is None:
            raise KubeClientError(f"{where_of(candidate)} has no current context to set the server {server} on")
        cluster_name = context.context.cluster
        config.clusters[cluster_name] = msgspec.structs.replace(config.clusters[cluster_name], server=server)
    return config


def where_of(path: str | None) -> str:
    return path or "in-cluster service account"


def make_client(kubeconfig: str | None, *, request_timeout: float = 10.0, read_timeout: float | None = None,
                credentials: BootstrapCredentials | None = None, server: str | None = None) -> AsyncClient:
    """A client with a connection pool of its own. Clients of one agent share `credentials` (see
    `BootstrapCredentials.for_kubeconfig`), so the fall-back is decided and logged once for all."""
    config = load_kubeconfig(kubeconfig, server)
    # Requests time out so a hung API shows up as an error (by default a 30,000-object list still
    # fits in the read budget); lightkube lifts the read timeout for watches, which the reflector
    # bounds by its resync deadline instead.
    timeout = httpx.Timeout(request_timeout, read=read_timeout or max(30.0, request_timeout))
    transport = BootstrapTransport(credentials) if credentials is not None else None
    return AsyncClient(config=config, timeout=timeout, field_manager="kvip", trust_env=False, transport=transport)


# -- which kubeconfig to use: pure rules ----------------------------------------------------------


class Route(enum.Enum):
    PRIMARY = "kubeconfig"
    FALLBACK = SUPER_ADMIN


@dataclass(frozen=True)
class CredentialState:
    on_fallback: bool = False
    authorized: bool = False  # the kubeconfig has been authorized once: its 403s are real from then on
    retry_primary_at: float = 0.0


def route(state: CredentialState, now: float, retry_primary: float) -> tuple[Route, CredentialState]:
    """Where the next request goes. On the fall-back, one request per `retry_primary` tries the
    kubeconfig again (the others meanwhile stay on the fall-back)."""
    if not state.on_fallback:
        return Route.PRIMARY, state
    if now < state.retry_primary_at:
        return Route.FALLBACK, state
    return Route.PRIMARY, dataclasses.replace(state, retry_primary_at=now + retry_primary)


def after_primary(state: CredentialState, status: int, now: float, *, fallback_exists: bool,
                  retry_primary: float) -> tuple[bool, CredentialState]:
    """(retry this request on the fall-back?, the new state) after the kubeconfig answered `status`."""
    if status == 403:
        if state.authorized or not fallback_exists:
            return False, state  # RBAC refused a kubeconfig that worked before: a real answer
        return True, CredentialState(on_fallback=True, retry_primary_at=now + retry_primary)
    if status == 401 or status == 429 or status >= 500:
        return False, state  # not an authorization verdict either way
    return False, CredentialState(authorized=True)


# -- the shared switch and the transport that applies it ------------------------------------------


class BootstrapCredentials:
    """Which kubeconfig an agent's requests go out with; one instance shared by all its clients."""

    def __init__(self, kubeconfig: Path, fallback: Path, *, retry_primary: float = RETRY_PRIMARY,
                 clock: Callable[[], float] = time.monotonic, server: str | None = None) -> None:
        self.kubeconfig = kubeconfig
        self.fallback = fallback
        self.server = server  # replaces both kubeconfigs' server (ApiEndpoint.server)
        self.retry_primary = retry_primary
        self.state = CredentialState()
        self._clock = clock

    @classmethod
    def for_kubeconfig(cls, kubeconfig: str | None, server: str | None = None) -> BootstrapCredentials | None:
        """The switch for a kubeconfig file; None in-cluster or when it already is super-admin.conf."""
        if not kubeconfig:
            return None
        path = Path(kubeconfig)
        if path.name == SUPER_ADMIN:
            return None
        return cls(path, path.with_name(SUPER_ADMIN), server=server)

    @property
    def using_fallback(self) -> bool:
        return self.state.on_fallback

    def route(self) -> Route:
        chosen, self.state = route(self.state, self._clock(), self.retry_primary)
        return chosen

    def answered(self, status: int) -> bool:
        """Record the kubeconfig's answer; True: send this request again with the fall-back."""
        before = self.state
        retry, self.state = after_primary(before, status, self._clock(), fallback_exists=self.fallback.is_file(),
                                          retry_primary=self.retry_primary)
        if retry and not before.on_fallback:
            log.warning("%s is refused (403) while the cluster bootstraps: using %s until it is authorized "
                        "(retried every %.0fs)", self.kubeconfig, self.fallback, self.retry_primary)
        elif before.on_fallback and not self.state.on_fallback:
            log.info("%s is authorized now: no longer using %s", self.kubeconfig, self.fallback)
        return retry


class BootstrapTransport(httpx.AsyncBaseTransport):
    """Sends each request with the kubeconfig `credentials` routes it to, through one httpx client
    per kubeconfig (its TLS, client certificate and auth), owned by this transport alone."""

    def __init__(self, credentials: BootstrapCredentials) -> None:
        self._credentials = credentials
        self._clients: dict[Path, httpx.AsyncClient] = {}

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        await request.aread()  # a request may be sent twice: keep its body
        credentials = self._credentials
        if credentials.route() is Route.FALLBACK:
            return await self._send(credentials.fallback, request)
        response = await self._send(credentials.kubeconfig, request)
        if credentials.answered(response.status_code):
            await response.aclose()
            try:
                return await self._send(credentials.fallback, request)
            except KubeClientError as exc:
                log.warning("cannot use %s: %s", credentials.fallback, exc)
                return await self._send(credentials.kubeconfig, request)
        return response

    async def _send(self, kubeconfig: Path, request: httpx.Request) -> httpx.Response:
        client = self._client_for(kubeconfig)
        url = request.url.copy_with(scheme=client.base_url.scheme, host=client.base_url.host,
                                    port=client.base_url.port)
        # The outer client's credentials and Host are the kubeconfig's; the chosen client sets its own.
        headers = [(k, v) for k, v in request.headers.multi_items() if k.lower() not in ("authorization", "host")]
        inner = httpx.Request(request.method, url, headers=headers, content=request.content,
                              extensions=request.extensions)
        response = await client.send(inner, stream=True)
        return httpx.Response(response.status_code, headers=response.headers, stream=response.stream,
                              extensions=response.extensions)

    def _client_for(self, kubeconfig: Path) -> httpx.AsyncClient:
        client = self._clients.get(kubeconfig)
        if client is None:
            single = load_kubeconfig(str(kubeconfig), self._credentials.server).get()
            # Timeouts travel with each request (its extensions), set by the outer lightkube client.
            params = ConnectionParams(trust_env=False).httpx_params(single)
            client = self._clients[kubeconfig] = httpx.AsyncClient(**params)
        return client

    async def aclose(self) -> None:
        clients, self._clients = list(self._clients.values()), {}
        for client in clients:
            await client.aclose()
