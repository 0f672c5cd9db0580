"""The agent's DHCP runner: keeps one DHCP client (and its macvlan) per Service this node leads that asks
for DHCP — no more, no fewer — and hands the leases to decide().

Level-triggered like the rest of the agent: after each reconcile pass `observe` takes decide()'s answer
(a Service advertised with its lease, or `dhcp-pending`: led here, waiting for one) as the desired set
of clients; `run` reconciles the running clients against it. What a client holds beyond the cache is
only its lease. A client stopped because this node no longer leads the Service keeps its lease at the
server (the next leader asks with the same MAC for the same address); a Service deleted, or no longer
asking for DHCP, has its lease released (DHCPRELEASE).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from types import MappingProxyType

from lightkube import AsyncClient

from kvip.agent.backends import default_route_interface
from kvip.config.agent import AgentConfig
from kvip.core.dhcp import DHCP_PENDING, DhcpAsk, DhcpLease, dhcp_ask, lease_annotations
from kvip.core.dhcp_lease import held_address
from kvip.core.model import ServiceKey, ServiceView
from kvip.dataplane.dhcp import macvlan
from kvip.dataplane.dhcp.client import DhcpClient, send_release
from kvip.kube.errors import describe
from kvip.kube.resources import Service
from kvip.reconcile import ReconcileResult

log = logging.getLogger("kvip.dhcp")


@dataclass
class _Running:
    client: DhcpClient
    task: asyncio.Task[None]


def _identity(ask: DhcpAsk) -> DhcpAsk:
    """What makes a client a different client: the requested IP is what we write back after a lease."""
    return replace(ask, requested=None)


class DhcpRunner:
    def __init__(self, config: AgentConfig, services: Callable[[], Mapping[ServiceKey, ServiceView]],
                 client: AsyncClient, on_change: Callable[[], None]) -> None:
        self._store = services  # the cache's store: whether a Service still exists (release or not)
        self._kube = client
        self._on_change = on_change
        self._interface = config.interface
        self._write = not config.disable_service_updates
        self._keep = config.keep_routes_on_exit
        self._wanted: dict[ServiceKey, DhcpAsk] | None = None
        self._running: dict[ServiceKey, _Running] = {}
        self._written: dict[ServiceKey, dict[str, str]] = {}
        self._failed: dict[ServiceKey, str] = {}
        self._wake = asyncio.Event()

    def _parent(self) -> str:
        """The Services interface: vip_interface, or (table mode's `lo`) the default route's interface."""
        return self._interface if self._interface != "lo" else default_route_interface()

    def _services(self) -> Mapping[ServiceKey, ServiceView]:
        return self._store()

    def leases(self) -> Mapping[ServiceKey, DhcpLease]:
        """decide()'s input: per running client, its address (None while it has none, with why it lost one)."""
        found = {}
        for key, running in self._running.items():
            state = running.client.state
            found[key] = DhcpLease(held_address(state), running.client.ask.interface, state.lost)
        for key, why in self._failed.items():
            found.setdefault(key, DhcpLease(None, "", why))
        return MappingProxyType(found)

    def observe(self, result: ReconcileResult) -> None:
        """The desired clients from a pass's decisions: led here and asking for DHCP."""
        wanted = {}
        for key, decision in result.desired.decisions.items():
            service = self._services().get(key)
            if service is None or not (decision.advertised or decision.reason == DHCP_PENDING):
                continue
            ask = dhcp_ask(service)[0]
            if ask is not None:
                wanted[key] = ask
        if wanted != self._wanted:
            self._wanted = wanted
            self._wake.set()
        if self._write and any(self._annotations_due(key) for key in self._running):
            self._wake.set()

    async def run(self) -> None:
        try:
            while True:
                await self._wake.wait()
                self._wake.clear()
                await self._reconcile()
                await self._write_annotations()
        finally:
            await self._stop_all()

    async def _reconcile(self) -> None:
        wanted = self._wanted or {}
        for key in list(self._running):
            ask = wanted.get(key)
            if ask is None or _identity(ask) != _identity(self._running[key].client.ask):
                await self._stop(key, moved=ask is not None and ask.interface != self._running[key].client.ask.interface)
        for key, ask in wanted.items():
            if key not in self._running:
                await self._start(key, ask)
        if self._wanted is not None:  # a macvlan of ours no client needs: left by an earlier run
            keep = {r.client.ask.interface for r in self._running.values()}
            for name in set(await macvlan.ours()) - keep:
                await macvlan.remove(name)

    async def _start(self, key: ServiceKey, ask: DhcpAsk) -> None:
        try:
            await macvlan.ensure(ask.interface, self._parent(), ask.mac)
        except (macvlan.MacvlanError, OSError) as exc:
            why = f"no DHCP client: {exc}"
            if self._failed.get(key) != why:
                log.warning("service %s: %s", key, why)
                self._failed[key] = why
                self._on_change()
            return
        self._failed.pop(key, None)
        client = DhcpClient(ask, self._on_change)
        self._running[key] = _Running(client, asyncio.create_task(self._supervised(client), name=f"dhcp-{key}"))
        log.info("service %s: DHCP client on %s (MAC %s)", key, ask.interface, ask.mac.hex(":"))

    async def _supervised(self, client: DhcpClient) -> None:
        while True:
            try:
                await client.run()
            except asyncio.CancelledError:
                raise
            except Exception:  # a socket error must not end the lease: retry with the state kept
                log.exception("DHCP client on %s failed; restarting it", client.ask.interface)
            await asyncio.sleep(2.0)

    async def _stop(self, key: ServiceKey, *, moved: bool = False) -> None:
        running = self._running.pop(key)
        running.task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await running.task
        ask, state = running.client.ask, running.client.state
        service = self._services().get(key)
        gone = service is None or dhcp_ask(service)[0] is None
        if gone or (self._wanted or {}).get(key, ask).mac != ask.mac:
            send_release(ask, state)  # deleted, no longer DHCP, or another MAC: this lease is over
        self._written.pop(key, None)
        if gone or moved or key not in (self._wanted or {}):
            await macvlan.remove(ask.interface)
        self._on_change()

    async def _stop_all(self) -> None:
        for key in list(self._running):
            running = self._running.pop(key)
            running.task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await running.task
            if not self._keep:  # the VIP goes with the link; a restarted agent asks again for the same address
                with contextlib.suppress(Exception):
                    await macvlan.remove(running.client.ask.interface)

    def _annotations_due(self, key: ServiceKey) -> dict[str, str] | None:
        running, service = self._running.get(key), self._services().get(key)
        if running is None or service is None or held_address(running.client.state) is None:
            return None
        lease = DhcpLease(held_address(running.client.state), running.client.ask.interface)
        notes = lease_annotations(running.client.ask, lease)
        if all(service.annotations.get(k) == v for k, v in notes.items()) or self._written.get(key) == notes:
            return None
        return notes

    async def _write_annotations(self) -> None:
        """kube-vip's hwaddr and requestedIP annotations, so a restart or the next leader asks again for the
        same address with the same MAC. Best effort: a failure is retried on a later pass."""
        for key in list(self._running):
            notes = self._annotations_due(key) if self._write else None
            if notes is None:
                continue
            try:
                await self._kube.patch(Service, key.name, {"metadata": {"annotations": notes}}, namespace=key.namespace)
                self._written[key] = notes
            except Exception as exc:  # noqa: BLE001 (never costs the lease)
                log.warning("service %s: cannot write %s: %s", key, ", ".join(notes), describe(exc))
