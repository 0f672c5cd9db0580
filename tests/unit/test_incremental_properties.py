"""The incremental decider is decide(), re-run only where inputs changed: after every step of a random
history of cluster changes, its answer equals a from-scratch decide() over the same inputs.

The history mimics the cache: an unchanged Service or endpoint list is handed out as the same object, a
changed one as a new object, and a relist hands out equal copies of everything."""

from __future__ import annotations

import copy
import ipaddress
from collections import Counter
from types import MappingProxyType
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from kvip.core.bgp_attributes import COMMUNITIES_ANNOTATION, LOCAL_PREF_ANNOTATION
from kvip.core.decide import (
    EXCLUDE_LB_LABEL,
    IGNORE_ANNOTATION,
    SERVICE_INTERFACE_ANNOTATION,
    DecideConfig,
    decide,
)
from kvip.core.dhcp import DhcpLease
from kvip.core.egress import EGRESS, EgressSettings
from kvip.core.incremental import IncrementalDecider
from kvip.core.leases import FORCE_ELECTION_ANNOTATION, LEASE_NAME_ANNOTATION
from kvip.core.model import (
    ClusterSnapshot,
    ControlPlaneState,
    DesiredState,
    ElectionMode,
    EndpointView,
    Leadership,
    NodeView,
    PortView,
    ProbeVerdicts,
    ServiceKey,
    ServiceView,
)
from kvip.core.node_selector import NODE_SELECTOR_ANNOTATION, parse_selector
from kvip.core.vip_allow import VipAllowList
from kvip.core.vips import LOADBALANCER_IPS_ANNOTATION

KEYS = [ServiceKey(ns, name) for ns in ("a", "b") for name in ("web", "dns", "db")]
VIPS = ["10.0.0.1", "10.0.0.2", "10.0.0.3", "fd00::1", "0.0.0.0", "not-an-ip"]
ADDRESSES = ["10.244.0.1", "10.244.0.2", "10.244.1.1"]
PORTS = [PortView("http", 80), PortView("https", 443), PortView("dns", 53, "UDP")]
NODE = "n1"

# Mostly the same three IPv4 VIPs, so Services share them (and clash on ports) often.
ip_lists = st.lists(st.sampled_from(VIPS[:3] * 4 + VIPS[3:]), min_size=1, max_size=2, unique=True).map(",".join)
odd_annotations = st.fixed_dictionaries({}, optional={
    IGNORE_ANNOTATION: st.sampled_from(["true", "false", "maybe"]),
    SERVICE_INTERFACE_ANNOTATION: st.sampled_from(["eth1", "eth2", "auto", "bad/name"]),
    COMMUNITIES_ANNOTATION: st.sampled_from(["65000:1", "65000:2", "nonsense"]),
    LOCAL_PREF_ANNOTATION: st.sampled_from(["100", "200"]),
    NODE_SELECTOR_ANNOTATION: st.sampled_from(["zone=a", "zone!=a", "=bad"]),
    EGRESS: st.sampled_from(["true", "false"]),
    FORCE_ELECTION_ANNOTATION: st.just("true"),
    LEASE_NAME_ANNOTATION: st.sampled_from(["shared", "other"]),
    "kube-vip.io/allow-reconcile-without-endpoints": st.just("true"),
})
annotations = st.tuples(ip_lists, st.sampled_from([{}, {}, {EGRESS: "true"}]),
                        st.one_of(st.just({}), st.just({}), odd_annotations)).map(
    lambda parts: MappingProxyType({LOADBALANCER_IPS_ANNOTATION: parts[0], **parts[1], **parts[2]}))


def service_view(key: ServiceKey) -> st.SearchStrategy[ServiceView]:
    return st.builds(
        ServiceView, key=st.just(key), type=st.sampled_from(["LoadBalancer"] * 5 + ["ClusterIP"]),
        load_balancer_class=st.sampled_from([None] * 5 + ["other"]),
        external_traffic_policy=st.sampled_from(["Cluster", "Local"]),
        ports=st.lists(st.sampled_from(PORTS), max_size=2, unique=True).map(tuple),
        annotations=annotations)


endpoint = st.builds(EndpointView, addresses=st.lists(st.sampled_from(ADDRESSES), min_size=1, max_size=2).map(tuple),
                     node_name=st.sampled_from([NODE, NODE, "n2", None]), ready=st.sampled_from([True] * 3 + [False]),
                     serving=st.booleans(), terminating=st.booleans())
endpoint_lists = st.lists(endpoint, min_size=1, max_size=3).map(tuple)
node = st.builds(NodeView, name=st.just(NODE), unschedulable=st.booleans(),
                 labels=st.sampled_from([{}, {"zone": "a"}, {EXCLUDE_LB_LABEL: ""}]).map(MappingProxyType),
                 network_unavailable=st.booleans())
vip_address = st.sampled_from(VIPS[:4]).map(ipaddress.ip_address)
leadership = st.builds(Leadership, is_global_leader=st.booleans(), led_services=st.frozensets(st.sampled_from(KEYS)),
                       is_control_plane_leader=st.booleans())
control_plane = st.none() | st.builds(ControlPlaneState, addresses=st.lists(vip_address, max_size=1).map(tuple),
                                      healthy=st.booleans(), leaving=st.booleans())
held = st.builds(DhcpLease, address=vip_address, interface=st.sampled_from(["vip1", "vip2"]))
lease = st.one_of(st.none(), held, held, st.builds(DhcpLease, address=st.none(), interface=st.just("vip1")))

key = st.sampled_from(KEYS)
# Per-Service changes are listed several times: they are what the incremental path is for.
per_service = st.one_of(
    key.flatmap(lambda k: st.tuples(st.just("service"), st.just(k), st.none() | service_view(k))),
    key.flatmap(lambda k: st.tuples(st.just("endpoints"), st.just(k), st.none() | endpoint_lists)),
    st.tuples(st.just("leadership"), leadership),
    st.tuples(st.just("probes"), st.frozensets(st.sampled_from(ADDRESSES))),
    st.tuples(st.just("dhcp"), key, lease),
    st.tuples(st.just("control_plane_health"), st.booleans()),
    st.just(("nothing",)),
)
step = st.one_of(per_service, per_service, per_service, st.tuples(st.just("node"), st.none() | node),
                 st.tuples(st.just("draining"), st.booleans()), st.tuples(st.just("control_plane"), control_plane),
                 st.just(("relist",)))
config = st.builds(
    DecideConfig, node_name=st.just(NODE), election=st.sampled_from([ElectionMode.NONE, *ElectionMode]),
    serving_terminating=st.booleans(), drain_on_cordon=st.booleans(), bgp_attributes=st.booleans(),
    address_families=st.sampled_from([frozenset({4, 6}), frozenset({4})]),
    per_service_election_on_demand=st.booleans(), control_plane_election=st.booleans(),
    vip_allow=st.sampled_from([None, None, VipAllowList((ipaddress.ip_network("10.0.0.0/31"),))]),
    egress=st.sampled_from([None, EgressSettings((ipaddress.ip_network("10.244.0.0/16"),))]),
    node_selector=st.sampled_from([None, None, parse_selector("zone=a")]))


start = st.tuples(*(st.tuples(service_view(k), endpoint_lists) for k in KEYS))


class World:
    """decide()'s inputs, changed one step at a time the way the agent's sources change them."""

    def __init__(self, services: tuple[tuple[ServiceView, tuple[EndpointView, ...]], ...]) -> None:
        self.services = {view.key: view for view, _ in services}
        self.endpoints = {view.key: endpoints for view, endpoints in services}
        self.node: NodeView | None = NodeView(NODE, labels=MappingProxyType({"zone": "a"}))
        self.leadership, self.probes, self.draining = Leadership(True, frozenset(KEYS)), ProbeVerdicts(), False
        self.control_plane: ControlPlaneState | None = None
        self.dhcp: dict[ServiceKey, DhcpLease] = {}
        self.snapshot = self.take()

    def take(self) -> ClusterSnapshot:
        return ClusterSnapshot(dict(self.services), dict(self.endpoints), self.node)

    def apply(self, change: tuple[Any, ...]) -> None:
        kind, *args = change
        if kind in ("service", "endpoints", "dhcp"):
            store = {"service": self.services, "endpoints": self.endpoints, "dhcp": self.dhcp}[kind]
            if args[1] is None:
                store.pop(args[0], None)
            else:
                store[args[0]] = args[1]
        elif kind == "relist":  # equal copies of every object, as a relist converts them afresh
            self.services = {k: copy.copy(v) for k, v in self.services.items()}
            self.endpoints = {k: tuple(copy.copy(e) for e in v) for k, v in self.endpoints.items()}
        elif kind == "control_plane_health" and self.control_plane is not None:
            self.control_plane = ControlPlaneState(self.control_plane.addresses, args[0])
        elif kind in ("node", "leadership", "draining", "control_plane"):
            setattr(self, kind, args[0])
        elif kind == "probes":
            self.probes = ProbeVerdicts(args[0])
        if kind != "nothing":
            self.snapshot = self.take()

    def decide_with(self, decider: Any) -> DesiredState:
        return decider(self.snapshot, self.leadership, self.probes, self.draining,
                       control_plane=self.control_plane, dhcp=MappingProxyType(dict(self.dhcp)))


def assert_same(incremental: DesiredState, reference: DesiredState) -> None:
    assert incremental.advertisements == reference.advertisements
    assert incremental.decisions == reference.decisions
    assert Counter(incremental.problems) == Counter(reference.problems)  # order aside, every one, as often
    assert incremental.egress == reference.egress


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(config, start, st.lists(step, min_size=5, max_size=40))
def test_after_every_change_the_incremental_answer_is_decides_answer(
        chosen: DecideConfig, services: Any, history: list[tuple[Any, ...]]) -> None:
    world, incremental = World(services), IncrementalDecider(chosen)
    answers: list[tuple[DesiredState, DesiredState]] = []
    for change in history:
        world.apply(change)
        reference = world.decide_with(lambda *a, **kw: decide(chosen, *a, **kw))
        answers.append((world.decide_with(incremental.decide), reference))
        assert_same(*answers[-1])
    for answer, reference in answers:  # a later pass changes no earlier answer (the decider lends its dicts)
        assert_same(answer, reference)
