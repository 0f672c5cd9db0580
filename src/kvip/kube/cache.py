"""The agent's view of the cluster: three reflectors and the snapshot `decide()` reads.

Owns the Service, EndpointSlice and (this) Node reflectors and nothing else; with `services=False`
(svc_enable=false: the control-plane VIP alone) only the Node's, so no Service or EndpointSlice is
listed or watched at all. `snapshot()` turns
their stores into one immutable `ClusterSnapshot`; it is rebuilt only when a store changed since the
last call, so a burst of triggers costs one grouping pass, not one per event, and that pass regroups only
the Services whose EndpointSlices changed: the others keep their endpoints tuple (the same object), which
is how `kvip.core.incremental` knows not to decide them again (kvip issue #21).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping
from itertools import chain

from lightkube import AsyncClient

from kvip.core.model import (
    ClusterSnapshot,
    EndpointView,
    NodeView,
    ServiceKey,
    ServiceView,
)
from kvip.kube import convert
from kvip.kube.convert import SliceEntry, SliceKey
from kvip.kube.reflector import WATCH_QUIET_LIMIT, Reflector, SourceState, SourceStatus
from kvip.kube.resources import EndpointSlice, Node, Service
from kvip.kube.status_writer import settled_by_status

# Services and EndpointSlices are decoded into only the fields convert reads (lists and watch events).
DECODE_READ_FIELDS = (convert.decode_list, convert.decode_event)
RELIST_GRACE = 30.0  # the client's read timeout: a relist may legitimately take this long
# Objects per page of a consistency check. 1,000 took about 5 MiB off the agent's peak at 30,000 EndpointSlices
# but made a check 41 requests instead of 9 (x 1,000 nodes: ~78 requests/s instead of ~25 at the 600 s period):
# the API server's load is what the check period is chosen for, so the page stays large.
CHECK_PAGE = 5_000


class ClusterCache:
    def __init__(
        self,
        client: AsyncClient,
        *,
        node_name: str,
        on_change: Callable[[str], None],
        check_period: float = 30.0,
        namespace: str | None = None,
        services: bool = True,
    ) -> None:
        """`namespace`: watch Services and EndpointSlices of that namespace only (kube-vip's svc_namespace,
        one agent per tenant with a Role there); None: every namespace. `services`: False = this Node only.
        `check_period`: each source's consistency check (kvip_check_period); a lost watch event is
        corrected within it. There is no periodic relist (kvip issue #21)."""
        self.node_name = node_name
        self._generation = 0
        self._snapshot: ClusterSnapshot | None = None
        self._snapshot_generation = -1
        self._endpoints = EndpointIndex()
        self._on_change = on_change

        def changed(source: str) -> None:
            self._generation += 1
            on_change(source)

        self.services: Reflector[ServiceKey, ServiceView] = Reflector(
            client, Service, name="services", convert=convert.load_balancer_entry, key_of=convert.object_key,
            on_change=changed, resync_period=check_period, namespace=namespace,
            # Only LoadBalancer Services matter; a server older than Kubernetes 1.31 refuses this
            # selector and the reflector then watches every Service (the converter drops the rest).
            narrow_fields={"spec.type": "LoadBalancer"},
            quiet=settled_by_status,  # stored, but no pass: decide() would read the same thing
            decode=DECODE_READ_FIELDS, page=CHECK_PAGE,
        )
        self.slices: Reflector[SliceKey, SliceEntry] = Reflector(
            client, EndpointSlice, name="endpointslices", convert=convert.slice_entry, key_of=convert.slice_key,
            on_change=changed, resync_period=check_period, namespace=namespace,
            labels=(convert.SERVICE_NAME_LABEL,),  # slices of no Service are dropped by the converter anyway
            decode=DECODE_READ_FIELDS, page=CHECK_PAGE, journal=True,  # read by the EndpointIndex alone
        )
        # Only this node: a watch on every Node of a 5,000-node cluster would be pure waste.
        self.node: Reflector[str, NodeView] = Reflector(
            client, Node, name="nodes", convert=convert.node_entry, key_of=convert.node_name,
            on_change=changed, resync_period=check_period, fields={"metadata.name": node_name},
        )
        self.reflectors = (self.services, self.slices, self.node) if services else (self.node,)

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
        confirmed by every watch event and bookmark, and a watch silent for WATCH_QUIET_LIMIT is
        reopened (which confirms it again), so one silent for longer than that plus a grace for a slow
        list is stale too: this catches a watch hanging on a dead connection.
        """
        worst = 0.0
        for reflector in self.reflectors:
            status = reflector.status()
            if status.last_ok_monotonic is None:
                continue
            age = now_monotonic - status.last_ok_monotonic
            if status.state is SourceState.SYNCED:
                age -= WATCH_QUIET_LIMIT + RELIST_GRACE
            worst = max(worst, age)
        return worst

    def request_relist(self) -> None:
        for reflector in self.reflectors:
            reflector.request_relist()

    def snapshot(self) -> ClusterSnapshot:
        generation = self._generation + self.services.quiet_updates  # the snapshot shows quiet updates too
        if self._snapshot is not None and self._snapshot_generation == generation:
            return self._snapshot
        endpoints = self._endpoints.update(self.slices.store, self.slices.changes())
        self._snapshot = ClusterSnapshot(dict(self.services.store), endpoints, self.node.store.get(self.node_name))
        self._snapshot_generation = generation
        return self._snapshot


class EndpointIndex:
    """`convert.snapshot`'s grouping of EndpointSlices under their Service, kept between snapshots: a
    Service none of whose slices changed keeps its tuple, the very object (slices in name order).

    What changed comes from the slices reflector's journal (each changed slice with its entry before), so
    no copy of the 30,000-slice store is kept to compare with (1.25 MiB, kvip issue #21); without one
    (the first update, a relist) every Service is grouped again, an equal tuple kept as the same object."""

    def __init__(self) -> None:
        # Each Service's slice names as a sorted tuple (64 bytes for three, where a set took 216).
        self._slices: dict[ServiceKey, tuple[SliceKey, ...]] = {}
        self._grouped: dict[ServiceKey, tuple[EndpointView, ...]] = {}

    def update(self, store: Mapping[SliceKey, SliceEntry],
               changes: Mapping[SliceKey, SliceEntry | None] | None = None) -> dict[ServiceKey, tuple[EndpointView, ...]]:
        """`changes`: each slice changed since the last update with its entry then (None: absent), as
        `Reflector.changes()` answers; None: group the whole store."""
        if changes is None:
            return self._regroup(store)
        gone: dict[ServiceKey, set[SliceKey]] = {}
        came: dict[ServiceKey, set[SliceKey]] = {}
        for key, before in changes.items():
            now = store.get(key)
            if before is not None:
                gone.setdefault(before[0], set()).add(key)
            if now is not None:
                came.setdefault(now[0], set()).add(key)
        for service in gone.keys() | came.keys():
            kept = set(self._slices.get(service, ())) - gone.get(service, set())  # a moved slice: gone, came
            self._group(store, service, tuple(sorted(kept | came.get(service, set()))))
        return dict(self._grouped)

    def _regroup(self, store: Mapping[SliceKey, SliceEntry]) -> dict[ServiceKey, tuple[EndpointView, ...]]:
        names: dict[ServiceKey, list[SliceKey]] = {}
        for key, (service, _) in store.items():
            names.setdefault(service, []).append(key)
        for service in self._slices.keys() - names.keys():
            self._group(store, service, ())
        for service, keys in names.items():
            slices, kept = tuple(sorted(keys)), self._slices.get(service)
            self._group(store, service, kept if kept == slices else slices)
        return dict(self._grouped)

    def _group(self, store: Mapping[SliceKey, SliceEntry], service: ServiceKey, slices: tuple[SliceKey, ...]) -> None:
        if not slices:
            self._slices.pop(service, None)
            self._grouped.pop(service, None)
            return
        self._slices[service] = slices
        endpoints = tuple(chain.from_iterable(store[key][1] for key in slices))
        if self._grouped.get(service) != endpoints:
            self._grouped[service] = endpoints
