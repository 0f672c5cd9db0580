"""decide(): cluster snapshot + node + config + leadership → the VIPs this node must advertise.

This is where kvip's product logic lives, and it is pure: no I/O, no clock, no asyncio. It reads the
whole cache, so there is no history to go stale — a missed event can only delay the answer until the
cache is corrected, never leave a wrong route behind. The agent runs it incrementally
(`kvip.core.incremental`), proved equal to this function over random histories.

Per service, in order, each question answered by one small helper:
1. Is it ours? (type LoadBalancer, loadBalancerClass, `kube-vip.io/ignore`)
2. Which VIPs does it ask for? (`kvip.core.vips`)
3. Is this node eligible? (node state, then externalTrafficPolicy against usable endpoints)
4. Does leadership let us advertise it? (election mode: none, global, per service)
A VIP is advertised while any service that owns it is advertised here (shared VIPs).
The control-plane VIP (`control_plane=`) is one more decision, under `CONTROL_PLANE_KEY`, by the rules
of `kvip.core.control_plane`; a Service asking for it is refused that VIP (the control plane wins).

Steps 1-4 read one Service alone (`kvip.core.decide_service`); what Services sharing a VIP do to each
other is decided per VIP here, which is what lets the incremental path re-run only what changed.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Collection, Mapping

from kvip.core.bgp_attributes import drained, merged_attributes
from kvip.core.control_plane import control_plane_decision
from kvip.core.decide_service import (
    ALLOW_WITHOUT_ENDPOINTS_ANNOTATION,
    DEFAULT_LB_CLASS,
    EXCLUDE_LB_LABEL,
    IGNORE_ANNOTATION,
    SERVICE_INTERFACE_ANNOTATION,
    DecideConfig,
    decide_service,
    internal_error,
    is_handled,
    node_blocker,
    service_outcome,
    valid_interface,
)
from kvip.core.dhcp import NO_LEASES, Leases, leased_on
from kvip.core.egress import egress_rules
from kvip.core.model import (
    CONTROL_PLANE_KEY,
    Advertisement,
    BadInput,
    ClusterSnapshot,
    ControlPlaneState,
    DesiredState,
    IPAddress,
    Leadership,
    ProbeVerdicts,
    RouteAttributes,
    ServiceDecision,
    ServiceKey,
    ServiceView,
    shown,
)

__all__ = [  # the per-Service names moved to kvip.core.decide_service stay importable from here
    "ALLOW_WITHOUT_ENDPOINTS_ANNOTATION",
    "DEFAULT_LB_CLASS",
    "EXCLUDE_LB_LABEL",
    "IGNORE_ANNOTATION",
    "SERVICE_INTERFACE_ANNOTATION",
    "DecideConfig",
    "conflicts_on",
    "control_plane_part",
    "decide",
    "decide_service",
    "is_handled",
    "node_blocker",
    "vip_advertisement",
    "vip_conflicts",
]
NO_LEADERSHIP, NO_PROBES = Leadership(), ProbeVerdicts()  # decide()'s defaults: nothing led, nothing failing
NO_ATTRIBUTES = RouteAttributes()  # one for every VIP without BGP attributes (immutable: shared, not one each)


def decide(
    config: DecideConfig,
    snapshot: ClusterSnapshot,
    leadership: Leadership = NO_LEADERSHIP,
    probes: ProbeVerdicts = NO_PROBES,
    draining: bool = False,
    *,
    control_plane: ControlPlaneState | None = None,
    dhcp: Leases = NO_LEASES,
) -> DesiredState:
    """`draining`: the node is leaving gracefully (shutdown, or cordoned within its drain window):
    advertise as usual, cordon or not, but mark every advertisement so peers move traffic first.
    `control_plane`: the control-plane VIP's state (None: cp_enable off); never drained nor blocked by
    node state (`kvip.core.control_plane`)."""
    decisions: dict[ServiceKey, ServiceDecision] = {}
    problems: list[BadInput] = []
    owners: dict[IPAddress, set[ServiceKey]] = defaultdict(set)
    node_block = node_blocker(config, snapshot.node, draining)
    reserved = frozenset(control_plane.addresses) if control_plane is not None else frozenset()

    for key in sorted(snapshot.services):
        decision, found = service_outcome(config, snapshot.services[key], snapshot.endpoints.get(key, ()),
                                          node_block, leadership, probes, reserved, snapshot.node, dhcp)
        problems.extend(found)
        if decision is None:
            continue
        decisions[key] = decision
        if decision.advertised:
            for vip in decision.vips:
                owners[vip].add(key)

    problems.extend(vip_conflicts(snapshot, decisions))
    advertisements = {}
    for vip, keys in owners.items():
        advertisements[vip], clashes = vip_advertisement(config, snapshot.services, keys, vip, draining, dhcp)
        problems.extend(clashes)
    if control_plane is not None:
        cp, found, cp_vips = control_plane_part(config, control_plane, leadership)
        problems.extend(found)
        decisions[CONTROL_PLANE_KEY] = cp
        advertisements.update(cp_vips)
    egress = egress_rules(config.egress, snapshot.services, decisions, problems)
    return DesiredState(advertisements, decisions, tuple(problems), egress)


def vip_advertisement(config: DecideConfig, services: Mapping[ServiceKey, ServiceView], owners: Collection[ServiceKey],
                      vip: IPAddress, draining: bool, dhcp: Leases) -> tuple[Advertisement, tuple[BadInput, ...]]:
    """One VIP advertised for its owners (the Services advertised here that want it), and the clashes of
    their BGP attributes."""
    attributes, clashes = NO_ATTRIBUTES, ()
    if config.bgp_attributes:
        attributes, clashes = merged_attributes(services, owners, vip)
    # Make-before-break is decided here, not in the BGP backend: the backend renders what it is given.
    interface = leased_on(dhcp, vip) or service_interface(services, owners)  # a leased VIP: on its macvlan
    return Advertisement(vip, frozenset(owners), interface, drained(attributes) if draining else attributes,
                         draining=draining), clashes


def control_plane_part(config: DecideConfig, control_plane: ControlPlaneState, leadership: Leadership
                       ) -> tuple[ServiceDecision, tuple[BadInput, ...], dict[IPAddress, Advertisement]]:
    """The control-plane VIP's decision, problems and advertisements."""
    cp, found = control_plane_decision(control_plane, election=config.control_plane_election,
                                       leader=leadership.is_control_plane_leader,
                                       address_families=config.address_families)
    return cp, tuple(found), {vip: Advertisement(vip, frozenset(), control_plane=True)
                              for vip in (cp.vips if cp.advertised else ())}

def service_interface(services: Mapping[ServiceKey, ServiceView], owners: Collection[ServiceKey]) -> str | None:
    """kube-vip's per-service interface annotation; the first owner (by name) that sets it wins."""
    for key in sorted(owners):
        value = services[key].annotations.get(SERVICE_INTERFACE_ANNOTATION, "")
        name = valid_interface(value) if isinstance(value, str) and value.strip().lower() != "auto" else None
        if name:
            return name
    return None


def vip_conflicts(snapshot: ClusterSnapshot, decisions: dict[ServiceKey, ServiceDecision]) -> list[BadInput]:
    """Services sharing a VIP with an overlapping (port, protocol) cannot both receive the traffic.

    kvip still advertises the VIP (withdrawing would cost the other owner its route); it reports the
    clash on every service involved so an operator can fix the spec.
    """
    users: dict[IPAddress, list[ServiceKey]] = defaultdict(list)
    for key, decision in decisions.items():
        for vip in decision.vips:
            users[vip].append(key)
    problems: list[BadInput] = []
    for vip, keys in users.items():
        problems.extend(conflicts_on(snapshot.services, vip, keys))
    return problems


def conflicts_on(services: Mapping[ServiceKey, ServiceView], vip: IPAddress, keys: list[ServiceKey]
                 ) -> list[BadInput]:
    """The port clashes on one VIP between the Services that ask for it, `keys` in name order (the order
    decides which of two clashing Services is named first)."""
    if len(keys) < 2:
        return []
    try:
        return _port_clashes(services, vip, keys)
    except Exception as exc:  # noqa: BLE001 (defence in depth: a report must never cost a decision)
        return [internal_error(key, exc) for key in keys]


def _port_clashes(services: Mapping[ServiceKey, ServiceView], vip: IPAddress, keys: list[ServiceKey]
                  ) -> list[BadInput]:
    problems: list[BadInput] = []
    seen: dict[tuple[int | None, str], ServiceKey] = {}
    for key in keys:
        for port in services[key].ports:
            slot = (port.port, port.protocol)
            other = seen.setdefault(slot, key)
            if other != key:
                protocol = port.protocol if port.protocol in ("TCP", "UDP", "SCTP") else shown(port.protocol, 8)
                clash = f"VIP {vip} port {port.port}/{protocol}"
                problems.append(BadInput(key, "VIPConflict", f"{clash} is also used by service {other}"))
                problems.append(BadInput(other, "VIPConflict", f"{clash} is also used by service {key}"))
    return problems
