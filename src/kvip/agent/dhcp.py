"""The agent's DHCP runner: keeps one DHCP client (and its macvlan) per Service this node leads that asks
for DHCP — no more, no fewer — and hands the leases to decide().

Level-triggered like the rest of the agent: after each reconcile pass `observe` takes decide()'s answer
(a Service advertised with its lease, or `dhcp-pending`: led here, waiting for one) as the desired set
of clients; `run` reconciles the running clients against it. What a client holds beyond the cache is
only its lease. A client stopped because this node no longer leads the Service keeps its lease at the
server (the next leader asks with the same MAC for the same address); a Service deleted, or no longer
asking for DHCP, has its lease released (DHCPRELEASE).

A Service asking for `0.0.0.0` has a DHCPv4 client, one asking for `::` a DHCPv6 client, one asking for
both has both, on its one macvlan (as kube-vip does).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from types import MappingProxyType
from typing import TYPE_CHECKING, Any

from lightkube import AsyncClient

from kvip.agent.backends import default_route_interface
from kvip.config.agent import AgentConfig
from kvip.core.dhcp import DHCP_PENDING, DhcpAsk, DhcpLease, dhcp_ask, lease_annotations
from kvip.core.dhcp_timers import LeaseState, held_address
from kvip.core.incremental import changed_keys
from kvip.core.model import ServiceKey, ServiceView
from kvip.dataplane.dhcp import macvlan
from kvip.kube.errors import describe
from kvip.kube.resources import Service
from kvip.reconcile import ReconcileResult

if TYPE_CHECKING:
    from kvip.dataplane.dhcp.lease_client import LeaseClient, LeaseProtocol

log = logging.getLogger("kvip.dhcp")


FAMILIES = (4, 6)  # DHCPv4 first: started, stopped, released first


def protocols() -> tuple[LeaseProtocol[Any, Any], ...]:
    """The DHCPv4 and DHCPv6 clients' protocols, in FAMILIES' order. Their modules are loaded by the first
    client started (most nodes never run one: kvip issue #21, memory)."""
    from kvip.dataplane.dhcp.client import V4
    from kvip.dataplane.dhcp.client6 import V6

    return (V4, V6)


@dataclass
class _Running:
    client: LeaseClient[Any, Any]
    task: asyncio.Task[None]


def _identity(ask: DhcpAsk) -> DhcpAsk:
    """What makes a client a different client: the requested IP is what we write back after a lease."""
    return replace(ask, requested=None, requested6=None)


class DhcpRunner:
    def __init__(self, config: AgentConfig, services: Callable[[], Mapping[ServiceKey, ServiceView]],
                 client: AsyncClient, on_change: Callable[[], None]) -> None:
        # The cache's Services, as a mapping never changed in place (a snapshot's): whether a Service
        # still exists (release or not), and what changed since the last pass.
        self._store = services
        self._kube = client
        self._on_change = on_change
        self._interface = config.interface
        self._write = not config.disable_service_updates
        self._keep = config.keep_routes_on_exit
        self._wanted: dict[ServiceKey, DhcpAsk] | None = None
        # What the previous pass saw, to look again only at Services whose decision or view changed
        # (kvip issue #21: asking every advertised Service whether it wants DHCP cost 27 ms at 10,000).
        self._decisions: Mapping[ServiceKey, object] = {}
        self._views: Mapping[ServiceKey, ServiceView] = {}
        self._running: dict[int, dict[ServiceKey, _Running]] = {family: {} for family in FAMILIES}
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
        found = {key: self._lease(key) for key in self._keys()}
        for key, why in self._failed.items():
            found.setdefault(key, DhcpLease(None, "", why))
        return MappingProxyType(found)

    def observe(self, result: ReconcileResult) -> None:
        """The desired clients from a pass's decisions: led here and asking for DHCP. Only Services whose
        decision or cached view changed since the last pass are looked at again."""
        decisions, services = result.desired.decisions, self._services()
        changed = result.changed_services  # the reconciler compared the decisions already (None: unknown)
        keys = (changed_keys(self._decisions, decisions) if changed is None else set(changed)) | changed_keys(
            self._views, services)
        self._decisions, self._views = decisions, services
        wanted = dict(self._wanted or {})
        for key in keys:
            wanted.pop(key, None)
            decision, service = decisions.get(key), services.get(key)
            if service is None or decision is None or not (decision.advertised or decision.reason == DHCP_PENDING):
                continue
            ask = dhcp_ask(service)[0]
            if ask is not None:
                wanted[key] = ask
        if self._wanted is None or wanted != self._wanted:
            self._wanted = wanted
            self._wake.set()
        if self._write and any(self._annotations_due(key) for key in self._keys()):
            self._wake.set()

    def _lease(self, key: ServiceKey) -> DhcpLease:
        """What a Service's clients hold: its IPv4 and IPv6 leases, and why one was lost."""
        v4, v6 = self._running[4].get(key), self._running[6].get(key)
        return DhcpLease(held_address(v4.client.state) if v4 else None, self._ask(key).interface,
                         (v4.client.state.lost if v4 else None) or (v6.client.state.lost if v6 else None),
                         held_address(v6.client.state) if v6 else None)

    def _keys(self) -> list[ServiceKey]:
        """The Services with a running client of either family."""
        return list(dict.fromkeys(key for running in self._running.values() for key in running))

    def _ask(self, key: ServiceKey) -> DhcpAsk:
        return next(running[key].client.ask for running in self._running.values() if key in running)

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
        for key in self._keys():
            ask, held = wanted.get(key), self._ask(key)
            if ask is None or _identity(ask) != _identity(held):
                await self._stop(key, moved=ask is not None and ask.interface != held.interface)
        for key, ask in wanted.items():
            if any(key not in self._running[family] for family in ask.families):
                await self._start(key, ask)
        if self._wanted is not None:  # a macvlan of ours no client needs: left by an earlier run
            keep = {self._ask(key).interface for key in self._keys()}
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
        from kvip.dataplane.dhcp.lease_client import LeaseClient

        for protocol in protocols():
            if protocol.family in ask.families and key not in self._running[protocol.family]:
                client = LeaseClient(protocol, ask, self._on_change)
                task = asyncio.create_task(self._supervised(client), name=f"{protocol.name.lower()}-{key}")
                self._running[protocol.family][key] = _Running(client, task)
                log.info("service %s: %s client on %s (MAC %s)", key, protocol.name, ask.interface, ask.mac.hex(":"))

    async def _supervised(self, client: LeaseClient[Any, Any]) -> None:
        while True:
            try:
                await client.run()
            except asyncio.CancelledError:
                raise
            except Exception:  # a socket error must not end the lease: retry with the state kept
                log.exception("DHCP client on %s failed; restarting it", client.ask.interface)
            await asyncio.sleep(2.0)

    async def _stop(self, key: ServiceKey, *, moved: bool = False) -> None:
        from kvip.dataplane.dhcp.lease_client import send_release

        ask = self._ask(key)
        stopped = [r for r in (running.pop(key, None) for running in self._running.values()) if r is not None]
        for r in stopped:
            r.task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await r.task
        service = self._services().get(key)
        now = dhcp_ask(service)[0] if service is not None else None
        for r in stopped:
            # deleted, no longer DHCP, another MAC, or this family no longer asked: this lease is over
            if now is None or now.mac != ask.mac or r.client.protocol.family not in now.families:
                await send_release(r.client.protocol, ask, r.client.state)
        gone = now is None
        self._written.pop(key, None)
        if gone or moved or key not in (self._wanted or {}):
            await macvlan.remove(ask.interface)
        self._on_change()

    async def _stop_all(self) -> None:
        for key in self._keys():
            interface = self._ask(key).interface
            for running in [r.pop(key, None) for r in self._running.values()]:
                if running is not None:
                    running.task.cancel()
                    with contextlib.suppress(asyncio.CancelledError):
                        await running.task
            if not self._keep:  # the VIP goes with the link; a restarted agent asks again for the same address
                with contextlib.suppress(Exception):
                    await macvlan.remove(interface)

    def _annotations_due(self, key: ServiceKey) -> dict[str, str] | None:
        service = self._services().get(key)
        if service is None or all(key not in running for running in self._running.values()):
            return None
        lease = self._lease(key)
        if not lease.addresses:
            return None
        notes = lease_annotations(self._ask(key), lease)
        if all(service.annotations.get(k) == v for k, v in notes.items()) or self._written.get(key) == notes:
            return None
        return notes

    async def _write_annotations(self) -> None:
        """kube-vip's hwaddr and requestedIP annotations, so a restart or the next leader asks again for the
        same address with the same MAC. Best effort: a failure is retried on a later pass."""
        for key in self._keys():
            notes = self._annotations_due(key) if self._write else None
            if notes is None:
                continue
            try:
                await self._kube.patch(Service, key.name, {"metadata": {"annotations": notes}}, namespace=key.namespace)
                self._written[key] = notes
            except Exception as exc:  # noqa: BLE001 (never costs the lease)
                log.warning("service %s: cannot write %s: %s", key, ", ".join(notes), describe(exc))

    def clients(self) -> dict[tuple[ServiceKey, int], tuple[DhcpAsk, LeaseState]]:
        """Read-only, for status and metrics: each running client's ask and current lease state, by
        Service and family (4, 6)."""
        return {(key, family): (r.client.ask, r.client.state) for family, running in self._running.items()
                for key, r in running.items()}
