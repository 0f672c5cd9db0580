"""Checks this node's own kube-apiserver over HTTPS, on its own task, and reports rise/fall verdicts.

Owns one HTTP client (its own connection pool: a probe never waits behind API traffic) and the
verdict; the rule itself is `kvip.core.health`. The agent reads `healthy` (a plain attribute, so
reading it never blocks the reconcile loop) and is told through `on_change` when it flips. TLS is
verified against the cluster CA: control_plane_health_check_ca_path, else the kubeconfig's CA, else
the in-cluster service-account CA; only without any of them does it fall back to the system roots.
"""

from __future__ import annotations

import asyncio
import base64
import logging
import ssl
from collections.abc import Callable

import httpx2 as httpx  # lightkube 1.x ships its own httpx fork

from kvip.core.health import HealthCheckSettings, HealthState
from kvip.kube.client import KubeClientError, load_kubeconfig

__all__ = ["ApiServerHealth", "cluster_ca_context"]

log = logging.getLogger("kvip.apiserver_health")


def cluster_ca_context(ca_path: str | None, kubeconfig: str | None) -> ssl.SSLContext:
    """A verifying TLS context trusting the cluster CA (see the module docstring for the order)."""
    if ca_path:
        try:
            return ssl.create_default_context(cafile=ca_path)
        except (OSError, ssl.SSLError) as exc:
            raise KubeClientError(f"control_plane_health_check_ca_path {ca_path}: {exc}") from exc
    try:
        single = load_kubeconfig(kubeconfig).get()
    except KubeClientError:
        single = None
    cluster = single.cluster if single is not None else None
    if single is not None and cluster is not None and cluster.certificate_auth:
        return ssl.create_default_context(cafile=str(single.abs_file(cluster.certificate_auth)))
    if cluster is not None and cluster.certificate_auth_data:
        return ssl.create_default_context(cadata=base64.b64decode(cluster.certificate_auth_data).decode())
    log.warning("API server health check: no cluster CA found (kubeconfig or in-cluster); verifying against the "
                "system roots, set control_plane_health_check_ca_path")
    return ssl.create_default_context()


class ApiServerHealth:
    """GETs `settings.url` every `settings.period`, each try bounded by `settings.timeout`; a 200 is a
    success, anything else (other status, TLS failure, refused, timeout) a failure."""

    def __init__(self, settings: HealthCheckSettings, *, tls: ssl.SSLContext,
                 on_change: Callable[[], None]) -> None:
        self.settings = settings
        self._on_change = on_change
        self._state = HealthState()
        self.last_error = ""
        self._tls = tls
        self._client: httpx.AsyncClient | None = None
        # The certificate is checked for this name instead of the URL's host (e.g. `kubernetes`).
        self._extensions = {"sni_hostname": settings.server_name} if settings.server_name else {}

    @property
    def healthy(self) -> bool:
        return self._state.healthy

    @property
    def checks(self) -> int:
        return self._state.checks

    async def run(self) -> None:
        """Probe at a fixed rate until cancelled; a slow probe delays the next, never overlaps it."""
        loop = asyncio.get_running_loop()
        try:
            while True:
                started = loop.time()
                await self.check_once()
                await asyncio.sleep(max(0.0, started + self.settings.period - loop.time()))
        finally:
            await self.close()  # a restarted task opens a fresh client

    async def check_once(self) -> bool:
        """One probe; returns its result after feeding it to the rise/fall rule."""
        ok, error = await self._probe()
        before = self._state
        self._state = before.observe(ok, self.settings.rule)
        if error != self.last_error and error:
            log.warning("API server health check %s failed: %s", self.settings.url, error)
        self.last_error = error
        if self._state.healthy != before.healthy:
            log.info("local API server %s is now %s", self.settings.url,
                     "healthy" if self._state.healthy else "unhealthy")
            self._on_change()
        return ok

    async def _probe(self) -> tuple[bool, str]:
        if self._client is None:
            self._client = httpx.AsyncClient(verify=self._tls, trust_env=False,
                                             timeout=httpx.Timeout(self.settings.timeout),
                                             limits=httpx.Limits(max_connections=1, max_keepalive_connections=1))
        try:
            # A whole-request bound as well: httpx's timeouts are per phase, a trickling reply could outlive them.
            async with asyncio.timeout(self.settings.timeout):
                response = await self._client.get(self.settings.url, extensions=self._extensions)
        except (TimeoutError, httpx.TimeoutException):
            return False, f"no answer within {self.settings.timeout:g}s"
        except httpx.HTTPError as exc:
            return False, f"{type(exc).__name__}: {exc}"
        if response.status_code != 200:
            return False, f"HTTP {response.status_code}"
        return True, ""

    async def close(self) -> None:
        client, self._client = self._client, None
        if client is not None:
            await client.aclose()
