"""The agent's view of the cluster: three reflectors and the snapshot `decide()` reads.

Owns the Service, EndpointSlice and (this) Node reflectors and nothing else. `snapshot()` turns
their stores into one immutable `ClusterSnapshot`; it is rebuilt only when a store changed since the
last call, so a burst of triggers costs one grouping pass, not one per event.
"""

from __future__ import annotations

import asyncio
from collections import defaultdict
from collections.abc import Callable, Mapping
from typing import Any

from lightkube import AsyncClient

from kvip.core.model import (
    ClusterSnapshot,
    EndpointView,
    NodeView,
    ServiceKey,
    ServiceView,
)
from kvip.kube import convert
from kvip.kube.reflector import Reflector, SourceState, SourceStatus
from kvip.kube.resources import EndpointSlice, Node, Service

SliceKey = tuple[str, str]
RELIST_GRACE = 30.0  # the client's read timeout: a relist may legitimately take this long
SliceEntry = tuple[ServiceKey, tuple[EndpointView, ...]]


def _object_key(obj: Mapping[str, Any]) -> tuple[str, str]:
    meta = obj.get("metadata") or {}
    return (meta.get("namespace") or "", meta.get("name") or "")


def _service_entry(obj: Mapping[str, Any]) -> tuple[ServiceKey, ServiceView] | None:
    if (obj.get("spec") or {}).get("type") != "LoadBalancer":
        return None  # only LoadBalancer Services can ever be advertised; keep the cache small
    view = convert.service_view(obj)
    return view.key, view


def _service_key(obj: Mapping[str, Any]) -> ServiceKey:
    return ServiceKey(*_object_key(obj))


def _slice_entry(obj: Mapping[str, Any]) -> tuple[SliceKey, SliceEntry] | None:
    service = convert.slice_service_key(obj)
    if service is None:
        return None  # a slice not managed for a Service (no service-name label)
    return _object_key(obj), (service, convert.endpoint_views(obj))


def _node_entry(obj: Mapping[str, Any]) -> tuple[str, NodeView] | None:
    view = convert.node_view(obj)
    return view.name, view


def _node_key(obj: Mapping[str, Any]) -> str:
    return (obj.get("metadata") or {}).get("name") or ""


class ClusterCache:
    def __init__(
        self,
        client: AsyncClient,
        *,
        node_name: str,
        on_change: Callable[[str], None],
        resync_period: float = 30.0,
    ) -> None:
        self.node_name = node_name
        self._generation = 0
        self._snapshot: ClusterSnapshot | None = None
        self._snapshot_generation = -1
        self._on_change = on_change
        self._resync_period = resync_period

        def changed(source: str) -> None:
            self._generation += 1
            on_change(source)

        self.services: Reflector[ServiceKey, ServiceView] = Reflector(
            client, Service, name="services", convert=_service_entry, key_of=_service_key,
            on_change=changed, resync_period=resync_period,
        )
        self.slices: Reflector[SliceKey, SliceEntry] = Reflector(
            client, EndpointSlice, name="endpointslices", convert=_slice_entry, key_of=_object_key,
            on_change=changed, resync_period=resync_period,
        )
        # Only this node: a watch on every Node of a 5,000-node cluster would be pure waste.
        self.node: Reflector[str, NodeView] = Reflector(
            client, Node, name="nodes", convert=_node_entry, key_of=_node_key,
            on_change=changed, resync_period=resync_period, fields={"metadata.name": node_name},
        )
        self.reflectors = (self.services, self.slices, self.node)

    async def run(self) -> None:
        async with asyncio.TaskGroup() as group:
            for reflector in self.reflectors:
                group.create_task(reflector.run(), name=f"reflector-{reflector.name}")

    async def wait_synced(self) -> None:
        """Until every source has listed once: deciding on a half-empty cache would withdraw routes."""
        await asyncio.gather(*(r.synced.wait() for r in self.reflectors))

    @property
    def synced(self) -> bool:
        return all(r.synced.is_set() for r in self.reflectors)

    def statuses(self) -> tuple[SourceStatus, ...]:
        return tuple(r.status() for r in self.reflectors)

    def stale_for(self, now_monotonic: float) -> float:
        """How long the least recently confirmed source has gone unconfirmed beyond normal (0 = healthy).

        An erroring source is stale from its last successful answer. A source that looks fine is
        confirmed at least once per resync period (the relist), so one silent for longer than that
        plus a grace for a slow list is stale too: this catches a watch hanging on a dead connection.
        """
        worst = 0.0
        for reflector in self.reflectors:
            status = reflector.status()
            if status.last_ok_monotonic is None:
                continue
            age = now_monotonic - status.last_ok_monotonic
            if status.state is SourceState.SYNCED:
                age -= self._resync_period + RELIST_GRACE
            worst = max(worst, age)
        return worst

    def request_relist(self) -> None:
        for reflector in self.reflectors:
            reflector.request_relist()

    def snapshot(self) -> ClusterSnapshot:
        if self._snapshot is not None and self._snapshot_generation == self._generation:
            return self._snapshot
        generation = self._generation
        grouped: dict[ServiceKey, list[EndpointView]] = defaultdict(list)
        for service, endpoints in self.slices.store.values():
            grouped[service].extend(endpoints)
        self._snapshot = ClusterSnapshot(
            services=dict(self.services.store),
            endpoints={key: tuple(views) for key, views in grouped.items()},
            node=self.node.store.get(self.node_name),
        )
        self._snapshot_generation = generation
        return self._snapshot

