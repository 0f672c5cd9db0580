"""The agent's control-plane VIP inputs: its address (DNS names resolved off the loop) and this node's
API-server health, read together as one `ControlPlaneState` for `decide()`.

Owns the resolver task and the health checker; both only *fire the trigger* on a change, the
reconcile pass reads `state()`. A DNS name is resolved by the system resolver in a worker thread
(getaddrinfo blocks) every `dns_refresh` seconds, kube-vip re-resolving likewise; a failed lookup keeps
the last answer (a resolver hiccup must not withdraw the API), and until a first answer there is no
address to advertise. The rules themselves are `kvip.core.control_plane`.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import socket
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from kvip.config.agent import AgentConfig
from kvip.core.control_plane import (
    control_plane_addresses,
    select_addresses,
    split_address,
)
from kvip.core.model import ControlPlaneState, IPAddress
from kvip.kube.apiserver_health import ApiServerHealth, cluster_ca_context
from kvip.kube.election import LeaseElector

log = logging.getLogger("kvip.agent.control_plane")

Resolve = Callable[[str], Awaitable[Sequence[IPAddress]]]


async def system_resolve(name: str) -> Sequence[IPAddress]:
    """The system resolver's answer for `name`, in its order (getaddrinfo in the loop's worker threads)."""
    infos = await asyncio.get_running_loop().getaddrinfo(name, None, type=socket.SOCK_STREAM)
    return tuple(dict.fromkeys(ipaddress.ip_address(info[4][0].split("%", 1)[0]) for info in infos))


class ControlPlane:
    """`health` is anything with `.healthy` and `run()` (tests give a stub)."""

    def __init__(self, config: AgentConfig, *, on_change: Callable[[str], None],
                 health: ApiServerHealth | None = None, resolve: Resolve = system_resolve) -> None:
        self.config = config
        self._literal, self._names = split_address(config.cp_address)
        self._dns_mode = config.dns_mode
        self._refresh = config.dns_refresh
        self._resolve = resolve
        self._on_change = on_change
        self._resolved: dict[str, tuple[IPAddress, ...]] = {}
        self._failing: set[str] = set()
        self.leaving = False
        self.health = health if health is not None else ApiServerHealth(
            config.cp_health, tls=cluster_ca_context(config.cp_health_ca_path or None, config.kubeconfig),
            on_change=lambda: on_change("apiserver-health"))

    @property
    def names(self) -> tuple[str, ...]:
        return self._names

    def state(self) -> ControlPlaneState:
        resolved = [a for name in self._names for a in self._resolved.get(name, ())]
        return ControlPlaneState(control_plane_addresses(self._literal, resolved), self.health.healthy, self.leaving)

    def status(self, elector: LeaseElector | None) -> dict[str, Any]:
        """/status's controlPlane section: address, VIPs, this node's API-server health, Lease and holder."""
        config, lease = self.config, self.config.cp_lease
        record = elector.status().get(lease) if elector is not None and lease is not None else None
        return {"address": config.cp_address, "port": config.cp_port,
                "vips": [str(v) for v in self.state().addresses], "apiserverHealthy": self.health.healthy,
                "healthCheck": config.cp_health.url, "election": config.cp_election,
                "lease": str(lease) if lease else None, "holder": record.holder if record is not None else None,
                "leader": bool(elector is not None and lease in elector.held())}

    def tasks(self) -> list[tuple[str, Callable[[], Awaitable[None]]]]:
        tasks: list[tuple[str, Callable[[], Awaitable[None]]]] = [("apiserver-health", self.health.run)]
        if self._names:
            tasks.append(("dns", self.run_resolver))
        return tasks

    async def run_resolver(self) -> None:
        while True:
            for name in self._names:
                await self.resolve_once(name)
            await asyncio.sleep(self._refresh)

    async def resolve_once(self, name: str) -> None:
        try:
            answer = select_addresses(tuple(await self._resolve(name)), self._dns_mode)
            if not answer:
                raise ValueError(f"no {self._dns_mode} address in the answer")
        except (OSError, ValueError) as exc:
            if name not in self._failing:
                log.warning("control-plane address %s: cannot resolve (%s); keeping %s", name, exc,
                            ", ".join(map(str, self._resolved.get(name, ()))) or "no address")
                self._failing.add(name)
            return
        self._failing.discard(name)
        if answer != self._resolved.get(name):
            log.info("control-plane address %s resolves to %s (dns_mode %s)", name, ", ".join(map(str, answer)),
                     self._dns_mode)
            self._resolved[name] = answer
            self._on_change("dns")
