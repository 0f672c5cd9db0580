"""`kvip audit`: for every LoadBalancer VIP, which nodes should advertise it vs which nodes say they do.

The expected side is computed with the agents' own `decide()` once per node (plus Lease holders in
election modes), so the audit and the agents can never disagree about the rules; the reported side
comes from each agent's heartbeat Lease (`kvip.kube.heartbeat`): a digest of what the node advertises,
checked against the expected set (and the few VIPs the node says it misses or adds). A node whose
digest pins down no set is reported as unresolved, with the VIPs it should advertise. Pure `audit()`;
`collect()` does the reads. Exit code 1 when anything is off, so it works as a CronJob or CI check.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from kvip.cli.audit_dataplane import dataplane_drift, leases_from_status
from kvip.core.advertised_by import ANNOTATION as ADVERTISED_BY
from kvip.core.decide import DecideConfig, decide
from kvip.core.election_rules import LeaseKey
from kvip.core.leases import ElectionPlan, leadership_from_leases
from kvip.core.model import CONTROL_PLANE_KEY, ControlPlaneState, ElectionMode
from kvip.core.node_selector import InvalidSelector, NodeSelector, parse_selector
from kvip.kube import convert
from kvip.kube.heartbeat import AgentFacts, NodeView, heartbeat_lease, resolve_advertised


@dataclass(frozen=True)
class Heartbeat:
    node: str
    view: NodeView | None  # None: the Lease's annotations could not be read
    age_seconds: float
    facts: AgentFacts = field(default_factory=AgentFacts)  # the agent's kvip_node_selector, among others


def agents_selectors(heartbeats: Mapping[str, Heartbeat], nodes: Sequence[str]) -> dict[str, NodeSelector | None]:
    """The kvip_node_selector each node's agent applies, as its heartbeat says: a node outside it advertises
    nothing, so the audit must expect nothing of it. A node whose agent does not say (no heartbeat, or a kvip
    before issue #20) gets the one selector every other agent says, if they agree. Absent: no entry."""
    said = {h.facts.node_selector for h in heartbeats.values() if h.facts.node_selector is not None}
    common = next(iter(said)) if len(said) == 1 else None
    parsed: dict[str, NodeSelector | None] = {}
    out: dict[str, NodeSelector | None] = {}
    for node in nodes:
        beat = heartbeats.get(node)
        text = beat.facts.node_selector if beat is not None and beat.facts.node_selector is not None else common
        if text is None:
            continue
        if text not in parsed:
            try:
                parsed[text] = parse_selector(text) if text else None
            except InvalidSelector:
                continue  # the agent refuses to start with it: nothing to apply
        out[node] = parsed[text]
    return out


@dataclass(frozen=True)
class UnresolvedNode:
    """A node whose heartbeat digest matches neither the expected set nor the expected set corrected by
    the VIPs it lists as missing/extra: it drifts, and the audit cannot say on which VIPs."""

    node: str
    expected: tuple[str, ...]
    advertised_count: int | None  # None: unreadable heartbeat


CONTROL_PLANE_ROLE = "node-role.kubernetes.io/control-plane"


@dataclass(frozen=True)
class ControlPlaneAudit:
    """The control-plane VIP: `lease` (namespace, name) when elected (its holder must advertise it), None
    for anycast (a control-plane node advertises it while its API server is healthy, which only it knows)."""

    vips: tuple[str, ...]
    lease: tuple[str, str] | None = None


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
    unresolved_nodes: tuple[UnresolvedNode, ...] = ()
    notes: tuple[str, ...] = field(default=())
    # Each Service's kvip.io/advertised-by annotation ("namespace/name" → value), shown beside the audit.
    advertised_by: Mapping[str, str] = field(default_factory=dict)
    dataplane: tuple[str, ...] = ()  # DHCP/egress drift the nodes report (kvip.cli.audit_dataplane)

    @property
    def ok(self) -> bool:
        return (all(v.ok for v in self.vips) and not self.stale_nodes and not self.silent_nodes
                and not self.unresolved_nodes and not self.dataplane)

    def to_json(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "vips": [{"vip": v.vip, "services": list(v.services), "expected": sorted(v.expected),
                      "reported": sorted(v.reported), "ok": v.ok} for v in self.vips],
            "staleNodes": list(self.stale_nodes), "silentNodes": list(self.silent_nodes),
            "unresolvedNodes": [{"node": u.node, "expected": list(u.expected), "expectedCount": len(u.expected),
                                 "advertisedCount": u.advertised_count} for u in self.unresolved_nodes],
            "advertisedBy": dict(self.advertised_by), "dataplaneDrift": list(self.dataplane),
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
    control_plane: ControlPlaneAudit | None = None,
) -> AuditReport:
    holders = dict(lease_holders or {})
    cp = (ControlPlaneState(tuple(ipaddress.ip_address(v) for v in control_plane.vips), True)
          if control_plane is not None else None)
    cp_lease = LeaseKey(*control_plane.lease) if control_plane is not None and control_plane.lease else None
    optional: dict[str, set[str]] = defaultdict(set)  # anycast control-plane VIPs: up to each node's health
    views = dict(entry for obj in services if (entry := convert.load_balancer_entry(obj)))
    leases = leases_from_status(views)  # DHCP Services' addresses, from their status
    cluster = convert.snapshot(views, (entry[1] for obj in slices if (entry := convert.slice_entry(obj))), None)
    expected: dict[str, set[str]] = defaultdict(set)
    per_node: dict[str, set[str]] = defaultdict(set)
    owners: dict[str, set[str]] = defaultdict(set)
    template = base_config or DecideConfig(node_name="")
    selectors = agents_selectors(heartbeats, [convert.node_view(n).name for n in nodes])
    plan = ElectionPlan(election, template.per_service_election_on_demand, LeaseKey(*global_lease))
    for node_obj in nodes:
        node = convert.node_view(node_obj)
        config = DecideConfig(**{**template.__dict__, "node_name": node.name, "election": election,
                                 "control_plane_election": cp_lease is not None,
                                 "node_selector": selectors.get(node.name, template.node_selector)})
        snapshot = replace(cluster, node=node)
        held = {LeaseKey(*lease) for lease, holder in holders.items() if holder == node.name}
        leadership = replace(leadership_from_leases(plan, held, views.values()),
                             is_control_plane_leader=cp_lease in held)
        state = decide(config, snapshot, leadership, control_plane=cp, dhcp=leases)
        for vip, ad in state.advertisements.items():
            owners[str(vip)].update([str(CONTROL_PLANE_KEY.name)] if ad.control_plane else [])
            if ad.control_plane and cp_lease is None:
                if CONTROL_PLANE_ROLE in node.labels:
                    optional[node.name].add(str(vip))
                continue
            expected[str(vip)].add(node.name)
            per_node[node.name].add(str(vip))
            owners[str(vip)].update(str(s) for s in ad.services)
    fresh = {n: h for n, h in heartbeats.items() if h.age_seconds <= stale_after}
    stale = tuple(sorted(n for n, h in heartbeats.items() if h.age_seconds > stale_after))
    reported: dict[str, set[str]] = defaultdict(set)
    unresolved: list[UnresolvedNode] = []
    for node, beat in sorted(fresh.items()):
        says = resolve_advertised(beat.view, per_node.get(node, ())) if beat.view is not None else None
        if says is None and beat.view is not None and optional.get(node):
            says = resolve_advertised(beat.view, per_node.get(node, set()) | optional[node])
            for vip in (says or set()) & optional[node]:
                expected[vip].add(node)  # its API server is healthy: it must advertise it
        if says is None:
            unresolved.append(UnresolvedNode(node, tuple(sorted(per_node.get(node, ()))),
                                             beat.view.advertised.count if beat.view is not None else None))
            continue
        for vip in says:
            reported[vip].add(node)
    known = set(fresh) - {u.node for u in unresolved}
    all_vips = set(expected) | set(reported)
    silent = tuple(sorted({n for nodes_ in expected.values() for n in nodes_} - set(heartbeats)))
    rows = []
    for vip in sorted(all_vips):
        # A stale or unresolved node's claims are unknown, not wrong: judge the VIP on the other nodes
        # (the report lists those nodes apart and is not ok).
        want = frozenset(n for n in expected.get(vip, ()) if n in known)
        rows.append(VipAudit(vip, tuple(sorted(owners.get(vip, ()))), want, frozenset(reported.get(vip, ()))))
    shown = {str(k): v.annotations[ADVERTISED_BY] for k, v in views.items() if ADVERTISED_BY in v.annotations}
    return AuditReport(tuple(rows), stale, silent, tuple(unresolved), advertised_by=shown,
                       dataplane=dataplane_drift({n: h.view for n, h in fresh.items()}))


def heartbeats_from_leases(leases: Sequence[Mapping[str, Any]], now: dt.datetime) -> dict[str, Heartbeat]:
    beats = {}
    for obj in leases:
        lease = heartbeat_lease(obj)
        if lease is None:
            continue
        age = now.timestamp() - lease.renewed if lease.renewed is not None else float("inf")
        beats[lease.node] = Heartbeat(lease.node, lease.view, age, lease.facts)
    return beats


async def collect(client: Any, *, namespace: str, election: ElectionMode, stale_after: float,
                  global_lease: tuple[str, str], control_plane: ControlPlaneAudit | None = None) -> AuditReport:
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
                 stale_after=stale_after, control_plane=control_plane)
