"""Writes `kvip.io/advertised-by` on the Services this node is the one writer of (`kvip.core.advertised_by`).

Inputs: the agent's last pass (snapshot and decisions, via `report`) and every node's heartbeat Lease,
watched here in the agents' namespace (one Reflector; a renewal that changes nothing but renewTime wakes
nobody). Each node's digest is resolved against the VIPs that node could advertise; a node whose
heartbeat is older than its Lease's duration is not live (a stopped or killed agent drops out then).

Writes: one merge PATCH of metadata.annotations per Service whose value differs from what the Service
carries, never the same value twice for the same resourceVersion, at most MAX_WRITES_PER_SECOND, planned
again after each second's worth so a burst writes only the latest values. Best effort: a failure is
logged once and never touches routes.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from lightkube import AsyncClient
from lightkube.types import PatchType

from kvip.core.advertised_by import (
    ANNOTATION,
    Cluster,
    candidate_vips,
    service_lines,
    writes,
)
from kvip.core.decide import DecideConfig
from kvip.core.model import ClusterSnapshot, DesiredState, ServiceKey
from kvip.kube.errors import describe
from kvip.kube.heartbeat import (
    NODE_LEASE_PREFIX,
    AgentFacts,
    NodeView,
    heartbeat_lease,
    resolve_advertised,
)
from kvip.kube.reflector import Reflector
from kvip.kube.resources import Lease, Service
from kvip.runtime.tasks import wait_event

log = logging.getLogger("kvip.advertised_by")

MAX_WRITES_PER_SECOND = 20
MIN_INTERVAL = 1.0  # plan at most this often: a burst of heartbeats is one plan


@dataclass(frozen=True)
class Beat:
    """One node's heartbeat Lease: its view (None: unreadable), when it was renewed and for how long."""

    view: NodeView | None
    renewed: float  # epoch seconds; 0 = never
    duration: float
    facts: AgentFacts = field(default_factory=AgentFacts)  # its BGP peers (issue #20)

    def live(self, now: float) -> bool:
        return now - self.renewed <= self.duration


def lease_node(obj: Mapping[str, Any]) -> str:
    name = str((obj.get("metadata") or {}).get("name", ""))
    return name[len(NODE_LEASE_PREFIX):] if name.startswith(NODE_LEASE_PREFIX) else f"/{name}"


def beat_entry(obj: Mapping[str, Any]) -> tuple[str, Beat] | None:
    """A heartbeat Lease as (node, Beat); any other Lease of the namespace: None."""
    lease = heartbeat_lease(obj)
    if lease is None:
        return None
    return lease.node, Beat(lease.view, lease.renewed or 0.0, lease.duration or 90.0, lease.facts)


def _renewal_only(old: Beat | None, new: Beat) -> bool:
    return old is not None and old.view == new.view and old.duration == new.duration and old.facts == new.facts


class AdvertisedByWriter:
    def __init__(self, client: AsyncClient, *, node_name: str, namespace: str, config: DecideConfig,
                 period: float, rate: float = MAX_WRITES_PER_SECOND) -> None:
        self._client = client
        self._node = node_name
        self._config = config
        self._period = period
        self._rate = rate
        self._wake = asyncio.Event()
        self.heartbeats: Reflector[str, Beat] = Reflector(
            client, Lease, name="heartbeats", convert=beat_entry, key_of=lease_node,
            on_change=lambda _: self._wake.set(), resync_period=period, namespace=namespace, quiet=_renewal_only)
        self._input: tuple[ClusterSnapshot, DesiredState] | None = None
        self._candidates: tuple[ClusterSnapshot, frozenset[str], dict[str, frozenset[str]]] | None = None
        self._per_node: dict[str, tuple[object, frozenset[str]]] = {}  # candidate_vips' memo
        self._resolved: dict[str, tuple[NodeView, frozenset[str], frozenset[str] | None]] = {}
        self._sent: dict[ServiceKey, tuple[str, str]] = {}  # value, the Service's resourceVersion then
        self._warned = False
        self.writes = 0

    def report(self, snapshot: ClusterSnapshot, state: DesiredState) -> None:
        """The last pass's inputs and answer (level-triggered: only the latest counts)."""
        if self._input is None or self._input[0] is not snapshot or self._input[1] is not state:
            self._input = (snapshot, state)
            self._wake.set()

    def shown(self, names: Iterable[str]) -> dict[str, str]:
        """The annotation of each named Service ("namespace/name") as the cache last saw it, for /status."""
        if self._input is None:
            return {}
        by_name = {str(k): v for k, v in self._input[0].services.items()}
        return {n: by_name[n].annotations.get(ANNOTATION, "") for n in names if n in by_name}

    def cluster(self, snapshot: ClusterSnapshot, now: float) -> Cluster:
        """Live nodes' heartbeats resolved to VIP sets, against what each could advertise."""
        live = {n: b for n, b in self.heartbeats.store.items() if b.live(now)}
        names = frozenset(live)
        if self._candidates is None or self._candidates[0] is not snapshot or self._candidates[1] != names:
            self._candidates = (snapshot, names, candidate_vips(self._config, snapshot, names, self._per_node))
        candidates = self._candidates[2]
        claims: dict[str, frozenset[str] | None] = {}
        for node, beat in live.items():
            claims[node] = None if beat.view is None else self._resolve(node, beat.view, candidates[node])
        return Cluster(claims, candidates, {node: beat.facts.bgp_peers for node, beat in live.items()})

    def _resolve(self, node: str, view: NodeView, candidate: frozenset[str]) -> frozenset[str] | None:
        memo = self._resolved.get(node)
        if memo is not None and memo[0] == view and memo[1] is candidate:
            return memo[2]
        found = resolve_advertised(view, candidate)
        if found is None and view.advertised.count == 0:
            found = frozenset()  # blocked (cordoned, excluded), draining done, or no Lease held
        self._resolved[node] = (view, candidate, found)
        return found

    def plan(self, now: float) -> dict[ServiceKey, str]:
        """What this node must write now, minus what it already wrote for the same resourceVersion."""
        if self._input is None or not self.heartbeats.synced.is_set():
            return {}
        snapshot, state = self._input
        self._sent = {k: v for k, v in self._sent.items() if k in snapshot.services}  # deleted Services
        advertised = frozenset(k for k, d in state.decisions.items() if d.advertised)
        wanted = writes(self._node, service_lines(self._config, snapshot, state), self.cluster(snapshot, now),
                        advertised)
        return {k: v for k, v in wanted.items()
                if self._sent.get(k) != (v, snapshot.services[k].resource_version)}

    async def run(self) -> None:
        async with asyncio.TaskGroup() as group:
            group.create_task(self.heartbeats.run(), name="reflector-heartbeats")
            group.create_task(self._loop(), name="advertised-by")

    async def _loop(self) -> None:
        more = False
        while True:
            if not more:
                # the period: a heartbeat going stale changes nothing in the store
                await wait_event(self._wake, self._period)
            await asyncio.sleep(MIN_INTERVAL)
            self._wake.clear()
            pending = self.plan(time.time())
            budget = max(1, int(self._rate * MIN_INTERVAL))
            for key, value in list(pending.items())[:budget]:
                await self.write(key, value)
                await asyncio.sleep(1.0 / self._rate)
            more = len(pending) > budget

    async def write(self, key: ServiceKey, value: str) -> None:
        """One merge PATCH of the annotation ("" removes it)."""
        assert self._input is not None
        version = self._input[0].services[key].resource_version
        patch = {"metadata": {"annotations": {ANNOTATION: value or None}}}
        try:
            await self._client.patch(Service, key.name, patch, namespace=key.namespace, patch_type=PatchType.MERGE)
            self._sent[key] = (value, version)
            self.writes += 1
            self._warned = False
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # noqa: BLE001 (best effort: any failure is logged, routes untouched)
            if not self._warned:
                log.warning("cannot write %s of %s (%s); routes are unaffected", ANNOTATION, key, describe(exc))
                self._warned = True
