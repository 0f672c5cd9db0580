"""`kvip.io/advertised-by`: which nodes carry a Service, and which ONE node writes that onto the Service.

Pure. Three questions, each a small function:
1. What could node M advertise at all (`candidate_vips`)? decide() run *as M*, with every Lease
   granted and no Node object (M's cordon/labels are not in this agent's cache), so the answer is an
   upper bound that M's heartbeat digest then pins down exactly (or to nothing).
2. Who carries Service S (`advertisers`)? The nodes whose resolved VIP set holds all of S's VIPs.
3. Who writes (`writer`)? The first advertiser by name; with none, the first *live* node by name, so
   the annotation is also cleared when nobody carries S any more.

Why the heartbeat Leases are the source (and not decide() per node over watched Nodes, as `kvip audit`
does): they are the only record of what a node *really* holds (its digest is taken from the dataplane
read back after each pass), they are small and constant-size (issue #21), and they cost one extra
watch of one namespace; Node objects are large, change with every kubelet status, and would only say
what a node *should* hold. decide() is still needed to turn a digest back into VIPs, and
`candidate_vips` makes that O(services + endpoints), not O(nodes x services): a node's answer differs
from a node hosting no endpoint only for the Services with an endpoint on it.

Why one writer is enough and at most one writes: every node computes `writer` from the same inputs
(the Service, EndpointSlices and heartbeat Leases every agent watches), so they agree on one name;
while views disagree (an event not yet delivered everywhere) two nodes may both write, and both write
what they see, so the next pass converges. Per-service election is the exception to (2): a node's
digest there covers only the Leases it holds, which no other node knows, so the Lease holder (the one
node that advertises S) writes its own name, and a live node clears S only when no live node is even
eligible for it (`elected_writer`).
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace

from kvip.core.decide import DecideConfig, decide
from kvip.core.leases import per_service_elected
from kvip.core.model import ClusterSnapshot, DesiredState, Leadership, ServiceKey

ANNOTATION = "kvip.io/advertised-by"
MAX_NODES = 32  # then "+N more": a Service on 1,000 nodes must not carry a 16 KB annotation
MAX_PEERS_SHOWN = 2  # per node, then "+N": with MAX_NODES, the annotation stays a few KB at most

# A BGP node's Established peers, each with the IP versions of the VIPs its speaker exports to it (the
# heartbeat's `kvip.io/bgp-peers`); None: the node is not in BGP mode.
PeerRoutes = tuple[tuple[str, tuple[int, ...]], ...]


def node_label(node: str, peers: PeerRoutes | None, versions: frozenset[int]) -> str:
    """`node`, and in BGP mode the peers it exports the Service's VIPs (of `versions`) to:
    `node-a(peer 10.0.0.1)`, `node-a(peers 10.0.0.1 fd00::1)`, `node-a(peers 10.0.0.1 10.0.0.2 +3)`,
    or `node-a(no peer)` when no session that carries them is Established."""
    if peers is None:
        return node
    names = [peer for peer, carried in peers if versions & set(carried)]
    if not names:
        return f"{node}(no peer)"
    more = [f"+{len(names) - MAX_PEERS_SHOWN}"] if len(names) > MAX_PEERS_SHOWN else []
    return f"{node}({'peer' if len(names) == 1 else 'peers'} {' '.join(names[:MAX_PEERS_SHOWN] + more)})"


def annotation_value(nodes: Iterable[str], *, limit: int = MAX_NODES,
                     peers: Mapping[str, PeerRoutes | None] | None = None, vips: Iterable[str] = ()) -> str:
    """The nodes, sorted and comma-separated, cut after `limit` names with a `+N more` count; a BGP
    node (in `peers`) with the peers it exports the `vips` to (`node_label`)."""
    names = sorted(set(nodes))
    versions = frozenset(ipaddress.ip_address(v).version for v in vips)
    labels = [node_label(n, (peers or {}).get(n), versions) for n in names[:limit]]
    if len(names) <= limit:
        return ",".join(labels)
    return ",".join(labels + [f"+{len(names) - limit} more"])


def advertisers(vips: Iterable[str], claims: Mapping[str, frozenset[str] | None],
                carriers: Mapping[str, frozenset[str]] | None = None) -> frozenset[str]:
    """Nodes whose known VIP set holds every VIP of the Service (a node whose set is unknown: none).
    `carriers`: `carriers_by_vip(claims)`, computed once for many Services."""
    wanted = frozenset(vips)
    if not wanted:
        return frozenset()
    index = carriers if carriers is not None else carriers_by_vip(claims)
    return frozenset.intersection(*(index.get(v, frozenset()) for v in wanted))


def carriers_by_vip(claims: Mapping[str, frozenset[str] | None]) -> dict[str, frozenset[str]]:
    """VIP → the nodes known to hold it: one pass over the claims instead of one per Service."""
    index: dict[str, set[str]] = {}
    for node, held in claims.items():
        for vip in held or ():
            index.setdefault(vip, set()).add(node)
    return {vip: frozenset(nodes) for vip, nodes in index.items()}


def writer(carrying: frozenset[str], live: Iterable[str]) -> str | None:
    """The one node that writes a Service's annotation: the first carrier by name, else the first live node."""
    if carrying:
        return min(carrying)
    return min(live, default=None)


def elected_writer(me: str, *, i_advertise: bool, anyone_eligible: bool, live: Iterable[str]) -> str | None:
    """Per-service election: the holder (the one node that advertises) writes; nobody while another
    eligible node may hold it; the first live node when no live node is eligible (to clear it)."""
    if i_advertise:
        return me
    return None if anyone_eligible else min(live, default=None)


@dataclass(frozen=True)
class ServiceLine:
    """One Service as the writer sees it: its VIPs, whether it is per-service elected, its annotation now."""

    key: ServiceKey
    vips: frozenset[str]
    elected: bool = False
    current: str = ""  # absent = ""


@dataclass(frozen=True)
class Cluster:
    """What every node knows alike: fresh heartbeats resolved to VIP sets (None: the digest names no
    set this node can compute), and each live node's `candidate_vips` (per-service election only)."""

    claims: Mapping[str, frozenset[str] | None]
    candidates: Mapping[str, frozenset[str]] = field(default_factory=dict)
    peers: Mapping[str, PeerRoutes | None] = field(default_factory=dict)  # BGP nodes' Established peers


def writes(me: str, services: Iterable[ServiceLine], cluster: Cluster,
           advertised_here: frozenset[ServiceKey]) -> dict[ServiceKey, str]:
    """The annotations `me` must write now: those it is the writer of whose value differs ("" = remove)."""
    live = tuple(cluster.claims)
    index = carriers_by_vip(cluster.claims)
    out: dict[ServiceKey, str] = {}
    for line in services:
        if line.elected:
            mine = line.key in advertised_here
            carriers = frozenset({me}) if mine else frozenset()
            anyone = bool(line.vips) and any(line.vips <= cluster.candidates.get(node, frozenset()) for node in live)
            who = elected_writer(me, i_advertise=mine, anyone_eligible=anyone, live=live)
        else:
            carriers = advertisers(line.vips, cluster.claims, index)
            who = writer(carriers, live)
        value = annotation_value(carriers, peers=cluster.peers, vips=line.vips)
        if who == me and value != line.current:
            out[line.key] = value
    return out


def candidate_vips(config: DecideConfig, snapshot: ClusterSnapshot, nodes: Iterable[str],
                   memo: dict[str, tuple[object, frozenset[str]]] | None = None) -> dict[str, frozenset[str]]:
    """Per node, the VIPs decide() lets it advertise when it leads every Lease and its Node object is
    fine: one decide() for a node with no endpoint, plus one per node over only its own Services.
    `memo` (kept by the caller between calls): a node whose own Services and endpoints are unchanged
    reuses its last answer, so one endpoint move costs a decide() for the nodes it touches only."""
    memo = {} if memo is None else memo
    every = Leadership(is_global_leader=True, led_services=frozenset(snapshot.services))
    bare = replace(snapshot, node=None)
    generic = _vips(decide(replace(config, node_name=""), bare, every))
    hosted: dict[str, set[ServiceKey]] = {}
    for key, endpoints in snapshot.endpoints.items():
        for endpoint in endpoints:
            if endpoint.node_name:
                hosted.setdefault(endpoint.node_name, set()).add(key)
    out: dict[str, frozenset[str]] = {}
    for node in nodes:
        keys = hosted.get(node, set())
        if not keys:
            out[node] = generic
            continue
        inputs = tuple((k, snapshot.services.get(k), snapshot.endpoints[k]) for k in sorted(keys))
        seen = memo.get(node)
        if seen is None or seen[0] != inputs:
            own = replace(bare, services={k: snapshot.services[k] for k in keys if k in snapshot.services},
                          endpoints={k: snapshot.endpoints[k] for k in keys})
            seen = memo[node] = (inputs, _vips(decide(replace(config, node_name=node), own, every)))
        out[node] = generic | seen[1]
    return out


def _vips(state: DesiredState) -> frozenset[str]:
    return frozenset(str(v) for v in state.vips)


def service_lines(config: DecideConfig, snapshot: ClusterSnapshot, state: DesiredState) -> list[ServiceLine]:
    """The Services this node's decide() calls ours (the control-plane VIP is no Service), as writer input."""
    lines = []
    for key, decision in state.decisions.items():
        service = snapshot.services.get(key)
        if service is None:
            continue
        lines.append(ServiceLine(key, frozenset(str(v) for v in decision.vips),
                                 per_service_elected(service, config.election, config.per_service_election_on_demand),
                                 service.annotations.get(ANNOTATION, "")))
    return lines
