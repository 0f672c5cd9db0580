"""`kvip audit`: for every LoadBalancer VIP, which nodes should advertise it vs which nodes say they do.

The expected side is computed with the agents' own `decide()` once per node (plus Lease holders in
election modes), so the audit and the agents can never disagree about the rules; the reported side
comes from each agent's heartbeat Lease (`kvip.kube.heartbeat`). Pure `audit()`; `collect()` does the
reads. Exit code 1 when anything is off, so it works as a CronJob or CI check.
"""

from __future__ import annotations

import datetime as dt
import json
from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from kvip.core.decide import DecideConfig, decide
from kvip.core.election_rules import LeaseKey
from kvip.core.leases import ElectionPlan, leadership_from_leases
from kvip.core.model import ElectionMode
from kvip.kube import convert
from kvip.kube.heartbeat import ADVERTISED_ANNOTATION, LABEL, NODE_LEASE_PREFIX


@dataclass(frozen=True)
class Heartbeat:
    node: str
    advertised: frozenset[str]
    age_seconds: float


@dataclass(frozen=True)
class VipAudit:
    vip: str
    services: tuple[str, ...]
    expected: frozenset[str]
    reported: frozenset[str]

    @property
    def ok(self) -> bool:
        return self.expected == self.reported


@dataclass(frozen=True)
class AuditReport:
    vips: tuple[VipAudit, ...]
    stale_nodes: tuple[str, ...] = ()
    silent_nodes: tuple[str, ...] = ()  # nodes expected to advertise that never published a heartbeat
    notes: tuple[str, ...] = field(default=())

    @property
    def ok(self) -> bool:
        return all(v.ok for v in self.vips) and not self.stale_nodes and not self.silent_nodes

    def to_json(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "vips": [{"vip": v.vip, "services": list(v.services), "expected": sorted(v.expected),
                      "reported": sorted(v.reported), "ok": v.ok} for v in self.vips],
            "staleNodes": list(self.stale_nodes), "silentNodes": list(self.silent_nodes),
        }


def audit(
    services: Sequence[Mapping[str, Any]],
    slices: Sequence[Mapping[str, Any]],
    nodes: Sequence[Mapping[str, Any]],
    heartbeats: Mapping[str, Heartbeat],
    *,
    election: ElectionMode = ElectionMode.NONE,
    lease_holders: Mapping[tuple[str, str], str] | None = None,
    global_lease: tuple[str, str] = ("kube-system", "plndr-svcs-lock"),
    stale_after: float = 90.0,
    base_config: DecideConfig | None = None,
) -> AuditReport:
    holders = dict(lease_holders or {})
    views = dict(entry for obj in services if (entry := convert.load_balancer_entry(obj)))
    cluster = convert.snapshot(views, (entry[1] for obj in slices if (entry := convert.slice_entry(obj))), None)
    expected: dict[str, set[str]] = defaultdict(set)
    owners: dict[str, set[str]] = defaultdict(set)
    template = base_config or DecideConfig(node_name="")
    plan = ElectionPlan(election, template.per_service_election_on_demand, LeaseKey(*global_lease))
    for node_obj in nodes:
        node = convert.node_view(node_obj)
        config = DecideConfig(**{**template.__dict__, "node_name": node.name, "election": election})
        snapshot = replace(cluster, node=node)
        held = {LeaseKey(*lease) for lease, holder in holders.items() if holder == node.name}
        state = decide(config, snapshot, leadership_from_leases(plan, held, views.values()))
        for vip, ad in state.advertisements.items():
            expected[str(vip)].add(node.name)
            owners[str(vip)].update(str(s) for s in ad.services)
    fresh = {n: h for n, h in heartbeats.items() if h.age_seconds <= stale_after}
    stale = tuple(sorted(n for n, h in heartbeats.items() if h.age_seconds > stale_after))
    reported: dict[str, set[str]] = defaultdict(set)
    for node, beat in fresh.items():
        for vip in beat.advertised:
            reported[vip].add(node)
    all_vips = set(expected) | set(reported)
    silent = tuple(sorted({n for nodes_ in expected.values() for n in nodes_} - set(heartbeats)))
    rows = []
    for vip in sorted(all_vips):
        # A stale node's claims are unknown, not wrong: judge the VIP on the fresh nodes only.
        want = frozenset(n for n in expected.get(vip, ()) if n in fresh)
        rows.append(VipAudit(vip, tuple(sorted(owners.get(vip, ()))), want, frozenset(reported.get(vip, ()))))
    return AuditReport(tuple(rows), stale, silent)


def parse_time(text: str | None) -> dt.datetime | None:
    if not text:
        return None
    for fmt in ("%Y-%m-%dT%H:%M:%S.%fZ", "%Y-%m-%dT%H:%M:%SZ"):
        try:
            return dt.datetime.strptime(text, fmt).replace(tzinfo=dt.timezone.utc)
        except ValueError:
            continue
    return None


def heartbeats_from_leases(leases: Sequence[Mapping[str, Any]], now: dt.datetime) -> dict[str, Heartbeat]:
    beats = {}
    for lease in leases:
        meta = lease.get("metadata") or {}
        name = meta.get("name", "")
        if not name.startswith(NODE_LEASE_PREFIX) or (meta.get("labels") or {}).get(LABEL) != "true":
            continue
        node = name[len(NODE_LEASE_PREFIX):]
        try:
            advertised = frozenset(json.loads((meta.get("annotations") or {}).get(ADVERTISED_ANNOTATION, "[]")))
        except (TypeError, ValueError):
            advertised = frozenset()
        renewed = parse_time((lease.get("spec") or {}).get("renewTime"))
        age = (now - renewed).total_seconds() if renewed else float("inf")
        beats[node] = Heartbeat(node, advertised, age)
    return beats


async def collect(client: Any, *, namespace: str, election: ElectionMode, stale_after: float,
                  global_lease: tuple[str, str]) -> AuditReport:
    from kvip.kube.resources import EndpointSlice, Lease, Node, Service

    services = [dict(o) async for o in client.list(Service, namespace="*")]
    slices = [dict(o) async for o in client.list(EndpointSlice, namespace="*")]
    nodes = [dict(o) async for o in client.list(Node)]
    leases = [dict(o) async for o in client.list(Lease, namespace="*")]
    holders = {((l.get("metadata") or {}).get("namespace", ""), (l.get("metadata") or {}).get("name", "")):
               (l.get("spec") or {}).get("holderIdentity") for l in leases}
    now = dt.datetime.now(dt.timezone.utc)
    beats = heartbeats_from_leases([l for l in leases if (l.get("metadata") or {}).get("namespace") == namespace], now)
    return audit(services, slices, nodes, beats, election=election,
                 lease_holders={k: v for k, v in holders.items() if v}, global_lease=global_lease,
                 stale_after=stale_after)
