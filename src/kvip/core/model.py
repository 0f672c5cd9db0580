"""Domain values shared by every layer: what the cluster says, and what a node should advertise.

Everything here is a frozen dataclass with no behaviour beyond small derived properties; the ones kept per
Service or per endpoint have slots (no per-instance dict; kvip issue #21, 10,000 / 30,000 objects). The
`kube` layer turns API objects into these views, bounding them (types, sizes, counts: anything it
refuses is recorded on the view as a `BadInput`) but not interpreting them; `decide` interprets them;
`dataplane` backends turn `DesiredState` into their own items. Views keep raw strings where the API
has raw strings, so that a malformed value reaches `decide` and is reported against its own service.
"""

from __future__ import annotations

import enum
import ipaddress
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

_EMPTY: Mapping[str, str] = MappingProxyType({})

SHOWN_CHARS = 64


def shown(text: object, limit: int = SHOWN_CHARS) -> str:
    """Text from the API as it may appear in a log line or Event: quoted and escaped (repr), so a
    newline or terminal escape cannot forge a line, and cut to `limit` characters so a 64 KiB value
    cannot flood one."""
    raw = text if isinstance(text, str) else repr(text)
    if len(raw) <= limit:
        return repr(raw)
    return f"{raw[:limit]!r}... ({len(raw)} characters)"


@dataclass(frozen=True, order=True, slots=True)
class ServiceKey:
    namespace: str
    name: str

    def __str__(self) -> str:
        return f"{self.namespace}/{self.name}"


class ElectionMode(enum.Enum):
    """Which leadership gates advertisement: none (anycast), one global Lease, one Lease per service."""

    NONE = "none"
    GLOBAL = "global"
    SERVICE = "service"


class Mode(enum.Enum):
    """How a node advertises: routes in a table, addresses on an interface (ARP/NA), or BGP."""

    TABLE = "table"
    ARP = "arp"
    BGP = "bgp"


@dataclass(frozen=True, slots=True)
class PortView:
    name: str | None
    port: int | None
    protocol: str = "TCP"


@dataclass(frozen=True, slots=True, weakref_slot=True)
class ServiceView:
    """A Service as the API has it, with the fields kvip reads, uninterpreted."""

    key: ServiceKey
    uid: str = ""
    type: str = "LoadBalancer"
    load_balancer_class: str | None = None
    external_traffic_policy: str = "Cluster"
    load_balancer_ip: str | None = None
    ingress_ips: tuple[str, ...] = ()
    ip_families: tuple[str, ...] = ()
    ip_family_policy: str = ""
    ports: tuple[PortView, ...] = ()
    annotations: Mapping[str, str] = field(default_factory=lambda: _EMPTY, hash=False)
    resource_version: str = ""
    # What the conversion from API JSON refused (wrong type, over a size or count limit): reported by
    # decide() against this service like any other bad input.
    refused: tuple[BadInput, ...] = ()


@dataclass(frozen=True, slots=True)
class EndpointView:
    """One endpoint of one EndpointSlice, with nil conditions already given their API meaning.

    The API says a nil `ready` or `serving` should be read as true and a nil `terminating` as false.
    The slice's name is not kept: nothing reads it, and the store's key has it (16 bytes an endpoint).
    """

    addresses: tuple[str, ...]
    node_name: str | None = None
    ready: bool = True
    serving: bool = True
    terminating: bool = False
    ports: tuple[PortView, ...] = ()


@dataclass(frozen=True, slots=True)
class NodeView:
    name: str
    unschedulable: bool = False
    labels: Mapping[str, str] = field(default_factory=lambda: _EMPTY, hash=False)
    network_unavailable: bool = False


@dataclass(frozen=True)
class ClusterSnapshot:
    """The cache at one instant: every LoadBalancer Service, its endpoints, and this node."""

    services: Mapping[ServiceKey, ServiceView]
    endpoints: Mapping[ServiceKey, tuple[EndpointView, ...]]
    node: NodeView | None = None


@dataclass(frozen=True)
class Leadership:
    """What the electors currently hold for this node; one more input of `decide()`."""

    is_global_leader: bool = False
    led_services: frozenset[ServiceKey] = frozenset()
    is_control_plane_leader: bool = False  # holds the control-plane Lease (cp_namespace/vip_leasename)


# The control-plane VIP's entry among the decisions: a key no Service can have (a Service always has a
# namespace), so status, metrics and audit list it beside the Services and nothing writes to it.
CONTROL_PLANE_KEY = ServiceKey("", "control-plane")


@dataclass(frozen=True)
class ControlPlaneState:
    """The control-plane VIP as this node sees it now; one more input of `decide()` (None: cp_enable off).

    `addresses`: the VIP(s) (`address` resolved per dns_mode; empty while a DNS name does not resolve).
    `healthy`: this node's own kube-apiserver answers its health check (rise/fall applied).
    `leaving`: the agent is stopping: withdraw at once (no make-before-break drain for the API)."""

    addresses: tuple[IPAddress, ...]
    healthy: bool
    leaving: bool = False


@dataclass(frozen=True)
class ProbeVerdicts:
    """Local endpoint addresses whose probes say they are down (empty when probes are off)."""

    failing: frozenset[str] = frozenset()


@dataclass(frozen=True, slots=True)
class RouteAttributes:
    """BGP path attributes a VIP is announced with (BGP mode; other backends ignore them).

    Communities are normalized strings: "65000:100" (well-known names already numeric) and
    large communities "65000:1:2"; `local_pref` None leaves the speaker's default.
    """

    communities: frozenset[str] = frozenset()
    large_communities: frozenset[str] = frozenset()
    local_pref: int | None = None


@dataclass(frozen=True, slots=True)
class Advertisement:
    """One VIP this node should advertise, and every service that wants it (shared VIPs)."""

    vip: IPAddress
    services: frozenset[ServiceKey]
    interface: str | None = None  # per-service override (kube-vip.io/serviceInterface), layer-2 mode
    attributes: RouteAttributes = RouteAttributes()
    # Make-before-break: still advertised, but marked so peers move traffic away (RFC 8326) before
    # the withdraw. Only the BGP backend can carry the mark; the others advertise as usual.
    draining: bool = False
    control_plane: bool = False  # the control-plane VIP (its `services` is empty)

    @property
    def prefix_len(self) -> int:
        return self.vip.max_prefixlen


@dataclass(frozen=True, slots=True)
class BadInput:
    """A service skipped (or a value ignored) because its spec cannot be interpreted."""

    service: ServiceKey
    reason: str
    message: str


@dataclass(frozen=True, slots=True)
class ServiceDecision:
    """Why one service is (not) advertised here: feeds status, metrics and the elector."""

    service: ServiceKey
    vips: tuple[IPAddress, ...]
    eligible: bool
    advertised: bool
    reason: str
    local_endpoints: tuple[str, ...] = ()


@dataclass(frozen=True)
class EgressRule:
    """Traffic from `pod` leaving this node takes `vip` as its source address (kube-vip's Service egress,
    `kvip.core.egress`): to every destination outside `excluded`, inside `allowed` when that is not empty,
    and to these (protocol, destination port) pairs when `ports` is not empty."""

    service: ServiceKey
    vip: IPAddress
    pod: IPAddress
    excluded: tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...] = ()
    allowed: tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...] = ()
    ports: tuple[tuple[str, int], ...] = ()


@dataclass(frozen=True)
class DesiredState:
    advertisements: Mapping[IPAddress, Advertisement]
    decisions: Mapping[ServiceKey, ServiceDecision] = field(default_factory=dict)
    problems: tuple[BadInput, ...] = ()
    egress: frozenset[EgressRule] = frozenset()  # SNAT rules this node holds (only for VIPs it advertises)

    @property
    def vips(self) -> frozenset[IPAddress]:
        return frozenset(self.advertisements)

    @property
    def eligible(self) -> frozenset[ServiceKey]:
        """Services this node may lead: candidates for per-service election."""
        return frozenset(k for k, d in self.decisions.items() if d.eligible)
