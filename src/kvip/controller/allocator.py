"""`kvip controller`: the leader-elected LoadBalancer IP allocator (kube-vip-cloud-provider compatible).

The same level-triggered shape as the agent: reflectors for LoadBalancer Services and the `kubevip`
ConfigMap, one coalescing trigger, and on every pass a full `ipam.plan()` from the cluster as it is.
Only the Lease holder writes; what it writes is the `kube-vip.io/loadbalancerIPs` annotation, which the
agents (and kube-vip) read as the VIP, and which the next plan reads back as "allocated".
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from lightkube import AsyncClient

from kvip.core.decide import SERVICE_INTERFACE_ANNOTATION, DecideConfig, is_handled
from kvip.core.ipam import PoolConfig, parse_pools, plan
from kvip.core.model import ServiceKey, ServiceView
from kvip.core.vips import LOADBALANCER_IPS_ANNOTATION
from kvip.kube import convert
from kvip.kube.election import LeaseElector, LeaseKey, LeaseTiming
from kvip.kube.events import EventRecorder
from kvip.kube.reflector import Reflector
from kvip.kube.resources import ConfigMap, Service
from kvip.runtime.tasks import Trigger, cancel_and_wait

log = logging.getLogger("kvip.controller.allocator")


@dataclass(frozen=True)
class Tracked:
    """A LoadBalancer Service and whether it is being deleted (it keeps its address, gets none new)."""

    view: ServiceView
    deleting: bool


def tracked_entry(obj: Mapping[str, Any]) -> tuple[ServiceKey, Tracked] | None:
    entry = convert.load_balancer_entry(obj)
    if entry is None:
        return None
    metadata = obj.get("metadata")
    deleting = isinstance(metadata, Mapping) and bool(metadata.get("deletionTimestamp"))
    return entry[0], Tracked(entry[1], deleting)


class Controller:
    def __init__(self, client: AsyncClient, *, identity: str, namespace: str = "kube-system",
                 configmap: str = "kubevip", timing: LeaseTiming = LeaseTiming(), resync_period: float = 30.0,
                 decide_config: DecideConfig | None = None) -> None:
        self.client = client
        self.namespace = namespace
        self.configmap = configmap
        self.trigger = Trigger()
        self._class_rules = decide_config or DecideConfig(node_name=identity)
        fire = self.trigger.fire
        self.services: Reflector[ServiceKey, Tracked] = Reflector(
            client, Service, name="services", convert=tracked_entry, key_of=convert.object_key,
            on_change=fire, resync_period=resync_period)
        # Only our namespace (kvip issue #17, row 10): a tenant's own `kubevip` ConfigMap must neither
        # be read nor, by failing the filter, wipe the pools from the store; a Role there suffices.
        self.configmaps: Reflector[str, Mapping[str, str]] = Reflector(
            client, ConfigMap, name="configmaps", convert=self._pool_data, key_of=self._pool_key,
            on_change=fire, resync_period=resync_period, fields={"metadata.name": configmap}, namespace=namespace)
        self.elector = LeaseElector(client, identity=identity, timing=timing,
                                    on_change=lambda: fire("lease"))
        self.lease = LeaseKey(namespace, "kvip-controller")
        self.elector.want([self.lease])
        self.events = EventRecorder(client, node_name=identity, component="kvip-controller")
        self.allocations = 0
        self._config_problems: tuple[str, ...] = ()

    def _pool_data(self, obj: Mapping[str, Any]) -> tuple[str, Mapping[str, str]] | None:
        if convert.object_key(obj).namespace != self.namespace:
            return None
        return "pools", convert.string_data(obj)

    def _pool_key(self, obj: Mapping[str, Any]) -> str:
        key = convert.object_key(obj)
        return "pools" if (key.namespace, key.name) == (self.namespace, self.configmap) else f"foreign:{key}"

    @property
    def leading(self) -> bool:
        return self.lease in self.elector.held()

    async def run(self) -> None:
        tasks = [asyncio.create_task(self.services.run()), asyncio.create_task(self.configmaps.run()),
                 asyncio.create_task(self.elector.run()), asyncio.create_task(self.events.run())]
        try:
            await asyncio.gather(self.services.synced.wait(), self.configmaps.synced.wait())
            while True:
                await self.trigger.wait()
                if self.leading:
                    await self.reconcile_once()
        finally:
            await cancel_and_wait(tasks)
            with contextlib.suppress(Exception):
                await self.elector.release_all()

    async def reconcile_once(self) -> None:
        config = parse_pools(self.configmaps.store.get("pools", {}))
        self._report_config(config)
        handled = [t for t in self.services.store.values() if is_handled(self._class_rules, t.view, [])]
        # A Service being deleted keeps its address until it is gone, but gets none (as the provider).
        deleting = frozenset(t.view.key for t in handled if t.deleting)
        assignments, problems = plan(config, [t.view for t in handled], deleting)
        self.events.report(problems)
        for key, allocation in assignments.items():
            ips = ",".join(allocation.ips)
            annotations = {LOADBALANCER_IPS_ANNOTATION: ips}
            if allocation.interface:  # interface-<ns> / interface-global, written with the address
                annotations[SERVICE_INTERFACE_ANNOTATION] = allocation.interface
            patch = {"metadata": {"annotations": annotations}}
            try:
                await self.client.patch(Service, key.name, patch, namespace=key.namespace)
                self.allocations += 1
                log.info("allocated %s to %s", ips, key)
            except Exception as exc:  # the next pass retries from the cluster's state
                log.warning("cannot annotate %s: %s", key, exc)
                self.trigger.fire_later(1.0, "retry")

    def _report_config(self, config: PoolConfig) -> None:
        if config.problems != self._config_problems:
            for problem in config.problems:
                log.warning("ConfigMap %s/%s: %s", self.namespace, self.configmap, problem)
            self._config_problems = config.problems

