"""One Service's decision: the per-Service half of `kvip.core.decide`.

Everything here reads one Service, its endpoints and the node-wide inputs, never another Service: that
is what lets `kvip.core.incremental` re-decide only the Services whose inputs changed. What Services
sharing a VIP do to each other (port conflicts, merged BGP attributes, the interface) is decided per VIP
in `kvip.core.decide`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from kvip.core.bgp_attributes import service_attributes
from kvip.core.dhcp import DHCP_PENDING, NO_LEASES, Leases, leased_vips
from kvip.core.egress import EgressSettings
from kvip.core.leases import election_refusal, per_service_elected
from kvip.core.model import (
    BadInput,
    ElectionMode,
    EndpointView,
    IPAddress,
    Leadership,
    NodeView,
    ProbeVerdicts,
    ServiceDecision,
    ServiceKey,
    ServiceView,
    shown,
)
from kvip.core.node_selector import NodeSelector, selection_refusal
from kvip.core.preference import preference_refusal
from kvip.core.vip_allow import VipAllowList
from kvip.core.vips import service_vips

DEFAULT_LB_CLASS = "kube-vip.io/kube-vip-class"
IGNORE_ANNOTATION = "kube-vip.io/ignore"
SERVICE_INTERFACE_ANNOTATION = "kube-vip.io/serviceInterface"
ALLOW_WITHOUT_ENDPOINTS_ANNOTATION = "kube-vip.io/allow-reconcile-without-endpoints"
EXCLUDE_LB_LABEL = "node.kubernetes.io/exclude-from-external-load-balancers"
_INTERFACE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.@-]{0,14}")


@dataclass(frozen=True)
class DecideConfig:
    node_name: str
    election: ElectionMode = ElectionMode.NONE
    lb_class_name: str = DEFAULT_LB_CLASS
    lb_class_only: bool = False
    lb_class_legacy: bool = True
    # Ready-only (False) or Ready-or-Serving (True): whether a serving-but-terminating endpoint counts.
    serving_terminating: bool = False
    # Stop advertising on a node excluded from load balancers or with NetworkUnavailable (MetalLB does too).
    respect_node_state: bool = True
    # Also withdraw when the node is cordoned (a drain is coming); off by default, as in kube-vip.
    drain_on_cordon: bool = False
    # Read the per-service BGP attribute annotations (BGP mode only: elsewhere they mean nothing).
    bgp_attributes: bool = False
    # IP versions this node can advertise at all (BGP mode: those of its peers).
    address_families: frozenset[int] = frozenset({4, 6})
    # Services annotated kube-vip.io/forcePerServiceElection=true get a Lease of their own in modes none/global.
    per_service_election_on_demand: bool = False
    # Optional VIP allow-list per namespace (None: off, as in kube-vip): `kvip.core.vip_allow`.
    vip_allow: VipAllowList | None = None
    # The control-plane VIP is elected (one holder of cp_namespace/vip_leasename) rather than anycast.
    control_plane_election: bool = False
    egress: EgressSettings | None = None  # Service egress SNAT (egress_podcidr set): `kvip.core.egress`
    # Only nodes whose labels match advertise Services (kvip_node_selector; None: every node): `core.node_selector`.
    node_selector: NodeSelector | None = None



def service_outcome(config: DecideConfig, service: ServiceView, endpoints: tuple[EndpointView, ...],
                    node_block: str | None, leadership: Leadership, probes: ProbeVerdicts,
                    reserved: frozenset[IPAddress], node: NodeView | None,
                    leases: Leases) -> tuple[ServiceDecision | None, tuple[BadInput, ...]]:
    """`decide_service` with its problems, and a bug met by one Service costing that Service only."""
    found: list[BadInput] = []
    try:
        decision = decide_service(config, service, endpoints, node_block, leadership, probes, found, reserved,
                                  node, leases)
    except Exception as exc:  # noqa: BLE001 (defence in depth: a bug met by one Service costs it alone)
        found.append(internal_error(service.key, exc))
        decision = ServiceDecision(service.key, (), False, False, "internal-error")
    return decision, tuple(found)


def decide_service(config: DecideConfig, service: ServiceView, endpoints: tuple[EndpointView, ...],
                   node_block: str | None, leadership: Leadership, probes: ProbeVerdicts,
                   problems: list[BadInput], reserved: frozenset[IPAddress] = frozenset(),
                   node: NodeView | None = None, leases: Leases = NO_LEASES) -> ServiceDecision | None:
    """One service's decision (None: not ours), its problems appended to `problems`. `reserved`: the
    control-plane VIPs, refused to every Service."""
    if not is_handled(config, service, problems):
        return None
    problems.extend(service.refused)
    vips, bad = service_vips(service)
    problems.extend(bad)
    vips, pending = leased_vips(service, vips, leases.get(service.key), problems, config.election,  # 0.0.0.0
                                config.per_service_election_on_demand)
    vips = allowed_vips(config, service, vips, problems)
    if reserved and not reserved.isdisjoint(vips):
        vips = without_control_plane(service, vips, reserved, problems)
    if any(v.version not in config.address_families for v in vips):
        vips = unreachable_family(config, service, vips, problems)
    if config.bgp_attributes:
        problems.extend(service_attributes(service)[1])
    interface = service.annotations.get(SERVICE_INTERFACE_ANNOTATION, "")
    if isinstance(interface, str) and interface.strip().lower() == "auto":
        # kube-vip picks the interface whose subnet holds the VIP; kvip has no per-node subnets in decide().
        problems.append(BadInput(service.key, "UnsupportedAnnotation", f"{SERVICE_INTERFACE_ANNOTATION}=auto is not "
                                 "supported (no interface is chosen by subnet); the VIP goes on vip_interface"))
    elif isinstance(interface, str) and interface.strip() and valid_interface(interface) is None:
        problems.append(BadInput(service.key, "InvalidAnnotation",
                                 f"{SERVICE_INTERFACE_ANNOTATION}={shown(interface)} is not an interface name; "
                                 "ignored"))
    local = local_usable_addresses(config, endpoints, probes)
    eligible, reason = eligibility(config, service, vips or pending, endpoints, local, node_block, probes)
    if allows_without_endpoints(service) and service.external_traffic_policy != "Cluster":
        problems.append(BadInput(service.key, "InvalidAnnotation", f"{ALLOW_WITHOUT_ENDPOINTS_ANNOTATION} only "
                                 "applies to externalTrafficPolicy=Cluster; ignored"))
    if (outside := selection_refusal(service, config.node_selector, node)) is not None:
        problems.extend(outside[1])  # outside a node selector: not even a candidate (no Lease wanted)
        eligible, reason = False, outside[0]
    if (ignored := preference_refusal(service, config.election, config.per_service_election_on_demand)) is not None:
        problems.append(ignored)  # kvip.io/preferred-nodes unreadable or without a Lease: ignored, still advertised
    refusal = election_refusal(service, config.election, config.per_service_election_on_demand)
    if refusal is not None:
        problems.append(refusal[1])
        eligible, reason = False, refusal[0]
    advertised, reason = leadership_gate(config, service, eligible, reason, leadership)
    if advertised and not vips:  # led here: run the DHCP client, advertise once it holds a lease
        advertised, reason = False, DHCP_PENDING
    return ServiceDecision(service.key, vips, eligible, advertised, reason, local)


def allowed_vips(config: DecideConfig, service: ServiceView, vips: tuple[IPAddress, ...],
                 problems: list[BadInput]) -> tuple[IPAddress, ...]:
    """Drop the VIPs the allow-list refuses to this service's namespace, each reported with its rule
    (a tenant must not claim a gateway, a node address or another tenant's VIP)."""
    if config.vip_allow is None:
        return vips
    kept: list[IPAddress] = []
    for vip in vips:
        why = config.vip_allow.refusal(service.key.namespace, vip)
        if why is None:
            kept.append(vip)
        else:
            problems.append(BadInput(service.key, "VIPNotAllowed", f"VIP {vip} {why}; not advertised"))
    return tuple(kept)


def without_control_plane(service: ServiceView, vips: tuple[IPAddress, ...], reserved: frozenset[IPAddress],
                          problems: list[BadInput]) -> tuple[IPAddress, ...]:
    """A Service cannot take the control-plane VIP: whatever its endpoints, the VIP follows the API servers."""
    for vip in vips:
        if vip in reserved:
            problems.append(BadInput(service.key, "VIPConflict", f"VIP {vip} is the control-plane VIP (cp_enable, "
                                     "address); not advertised for this Service"))
    return tuple(v for v in vips if v not in reserved)


def internal_error(key: ServiceKey, exc: Exception) -> BadInput:
    return BadInput(key, "InternalError", f"cannot decide service {shown(str(key))}: {type(exc).__name__}: "
                                          f"{shown(str(exc))}; not advertised by this node")


def valid_interface(text: str) -> str | None:
    """A Linux interface name (at most 15 characters, none of '/', ':', whitespace), or None."""
    name = text.strip()
    return name if _INTERFACE.fullmatch(name) else None


def unreachable_family(config: DecideConfig, service: ServiceView, vips: tuple[IPAddress, ...],
                       problems: list[BadInput]) -> tuple[IPAddress, ...]:
    """Drop VIPs of a family no peer can carry, and say so (otherwise they would be 'advertised' nowhere)."""
    kept = tuple(v for v in vips if v.version in config.address_families)
    for vip in vips:
        if vip not in kept:
            problems.append(BadInput(service.key, "NoPeerForFamily",
                                     f"VIP {vip} is IPv{vip.version} but no IPv{vip.version} BGP peer is configured; "
                                     "not announced"))
    return kept

def is_handled(config: DecideConfig, service: ServiceView, problems: list[BadInput]) -> bool:
    """Type, class and ignore filters (kube-vip's semantics, legacy class handling by default)."""
    if service.type != "LoadBalancer":
        return False
    cls = service.load_balancer_class
    if config.lb_class_legacy:
        if cls is not None and cls != config.lb_class_name:
            return False
        if cls is None and config.lb_class_only:
            return False
    else:
        if cls is None and config.lb_class_name:
            return False
        if cls is not None and cls != config.lb_class_name:
            return False
    ignore = service.annotations.get(IGNORE_ANNOTATION)
    if not isinstance(ignore, str):
        return True
    value = ignore.strip().lower()
    if value in ("true", "1", "yes"):
        return False
    if value not in ("false", "0", "no", ""):
        problems.append(
            BadInput(service.key, "InvalidAnnotation", f"{IGNORE_ANNOTATION}={shown(ignore)} is not a boolean; not ignoring")
        )
    return True


def node_blocker(config: DecideConfig, node: NodeView | None, draining: bool = False) -> str | None:
    """Why this node must advertise nothing at all, or None (a cordon waits out the drain window)."""
    if node is None or not config.respect_node_state:
        return None
    if node.unschedulable and config.drain_on_cordon and not draining:
        return "node-cordoned"
    if EXCLUDE_LB_LABEL in node.labels:
        return "node-excluded"
    if node.network_unavailable:
        return "node-network-unavailable"
    return None


def usable(config: DecideConfig, endpoint: EndpointView) -> bool:
    """Ready, or (when the operator chose Ready-or-Serving) serving while terminating."""
    if endpoint.ready:
        return True
    return config.serving_terminating and endpoint.serving and endpoint.terminating


def local_usable_addresses(
    config: DecideConfig, endpoints: tuple[EndpointView, ...], probes: ProbeVerdicts
) -> tuple[str, ...]:
    """Addresses of this node's usable endpoints whose probes (if any) do not say they are down."""
    found: list[str] = []
    source: EndpointView | None = None  # the one endpoint every address found came from, if only one
    for endpoint in endpoints:
        if endpoint.node_name != config.node_name or not usable(config, endpoint):
            continue
        count = len(found)
        found.extend(a for a in endpoint.addresses if a not in probes.failing and a not in found)
        if len(found) > count:
            source = endpoint if count == 0 else None
    if source is not None and type(source.addresses) is tuple and len(source.addresses) == len(found):
        return source.addresses  # all of one endpoint's, in its order: its very tuple, not one more per Service
    return tuple(found)


def any_usable(config: DecideConfig, endpoints: tuple[EndpointView, ...], probes: ProbeVerdicts) -> bool:
    for endpoint in endpoints:
        if not usable(config, endpoint):
            continue
        if endpoint.node_name == config.node_name and all(a in probes.failing for a in endpoint.addresses):
            continue  # our own probes say it is down; remote endpoints we cannot probe
        return True
    return False


def eligibility(
    config: DecideConfig,
    service: ServiceView,
    vips: tuple[IPAddress, ...],
    endpoints: tuple[EndpointView, ...],
    local: tuple[str, ...],
    node_block: str | None,
    probes: ProbeVerdicts,
) -> tuple[bool, str]:
    if not vips:
        return False, "no-vip"
    if node_block is not None:
        return False, node_block
    if service.external_traffic_policy == "Local":
        return (True, "ready-local-endpoint") if local else (False, "no-ready-local-endpoint")
    if any_usable(config, endpoints, probes):
        return True, "ready-endpoint"
    # kube-vip's opt-in for controllers whose Services have no endpoints at all (Cluster policy only).
    return (True, "allowed-without-endpoints") if allows_without_endpoints(service) else (False, "no-ready-endpoint")


def allows_without_endpoints(service: ServiceView) -> bool:
    value = service.annotations.get(ALLOW_WITHOUT_ENDPOINTS_ANNOTATION, "")
    return isinstance(value, str) and value.strip().lower() == "true"


def leadership_gate(
    config: DecideConfig, service: ServiceView, eligible: bool, reason: str, leadership: Leadership
) -> tuple[bool, str]:
    """A per-service-elected Service (its own or a shared Lease) follows that Lease alone; any other
    follows the node's mode."""
    if not eligible:
        return False, reason
    if per_service_elected(service, config.election, config.per_service_election_on_demand):
        return (True, "advertised") if service.key in leadership.led_services else (False, "not-leader")
    if config.election is ElectionMode.GLOBAL and not leadership.is_global_leader:
        return False, "not-leader"
    return True, "advertised"
