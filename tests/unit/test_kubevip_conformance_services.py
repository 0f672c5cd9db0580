"""kube-vip conformance: the facts of kube-vip's Service handling, checked against decide() and the Lease rules.

Each case states what kube-vip does (its source: pkg/services/watch_services.go lbClassFilter*, processor.go
AddOrModify, pkg/instance FetchServiceAddresses, pkg/lease ServiceName and its lease_test.go, pkg/endpoints
shouldAllowReconcileWithoutEndpoints and endpoints_test.go, processor_lease_test.go, leader_test.go).
Where kvip deliberately differs, the case asserts kvip's behaviour and `DIFFERS` says why.
"""

from __future__ import annotations

from types import MappingProxyType

import pytest

from kvip.config.agent import load_config
from kvip.core.decide import DEFAULT_LB_CLASS, DecideConfig, decide
from kvip.core.election_rules import LeaseKey
from kvip.core.leases import (
    ElectionPlan,
    leadership_from_leases,
    lease_of,
    wanted_leases,
)
from kvip.core.model import (
    ClusterSnapshot,
    DesiredState,
    ElectionMode,
    EndpointView,
    Leadership,
    ServiceKey,
    ServiceView,
)

NODE = "node-1"
OTHER = "node-2"
FORCE = {"kube-vip.io/forcePerServiceElection": "true"}
NO_LEADERSHIP = Leadership()


def service(name: str = "example", *, cls: str | None = None, policy: str = "Cluster", type_: str = "LoadBalancer",
            annotations: dict[str, str] | None = None, spec_ip: str | None = None,
            ingress: tuple[str, ...] = ("192.168.1.10",), namespace: str = "my-namespace") -> ServiceView:
    return ServiceView(ServiceKey(namespace, name), type=type_, load_balancer_class=cls,
                       external_traffic_policy=policy, load_balancer_ip=spec_ip, ingress_ips=ingress,
                       annotations=MappingProxyType(annotations or {}))


def decided(svc: ServiceView, config: DecideConfig | None = None, *, endpoints: bool = True,
            leadership: Leadership = NO_LEADERSHIP) -> DesiredState:
    eps = (EndpointView(("10.244.0.5",), NODE),) if endpoints else ()
    snapshot = ClusterSnapshot({svc.key: svc}, {svc.key: eps})
    return decide(config or DecideConfig(node_name=NODE), snapshot, leadership)


def handled(svc: ServiceView, config: DecideConfig) -> bool:
    return svc.key in decided(svc, config).decisions


# -- loadBalancerClass (lbClassFilterLegacy: the default; lbClassFilter: lb_class_legacy_handling=false) --------

@pytest.mark.parametrize(("cls", "only", "expected"), [
    (None, False, True),               # no class, not class-only: ours
    (None, True, False),               # no class, class-only: skipped
    (DEFAULT_LB_CLASS, False, True),   # our class
    (DEFAULT_LB_CLASS, True, True),
    ("other.io/lb", False, False),     # another controller's class
    ("other.io/lb", True, False),
])
def test_legacy_class_handling(cls: str | None, only: bool, expected: bool) -> None:
    assert handled(service(cls=cls), DecideConfig(node_name=NODE, lb_class_only=only)) is expected


@pytest.mark.parametrize(("cls", "name", "expected"), [
    (None, DEFAULT_LB_CLASS, False),   # no class while a class name is configured: skipped
    (None, "", True),                  # no class and no class name: ours
    (DEFAULT_LB_CLASS, DEFAULT_LB_CLASS, True),
    ("other.io/lb", DEFAULT_LB_CLASS, False),
    ("other.io/lb", "", False),        # a class, but not the (empty) configured one
])
def test_class_handling_without_legacy(cls: str | None, name: str, expected: bool) -> None:
    config = DecideConfig(node_name=NODE, lb_class_legacy=False, lb_class_name=name)
    assert handled(service(cls=cls), config) is expected


def test_ignore_annotation_true_skips_the_service() -> None:
    assert not handled(service(annotations={"kube-vip.io/ignore": "true"}), DecideConfig(node_name=NODE))


def test_ignore_annotation_other_spellings_of_true() -> None:
    """DIFFERS: kube-vip compares with "true" exactly; kvip also takes "True", "1" and "yes" (and reports
    a value that is no boolean at all), so an operator's `True` is not silently ignored."""
    assert not handled(service(annotations={"kube-vip.io/ignore": "True"}), DecideConfig(node_name=NODE))


def test_a_service_that_stops_being_a_load_balancer_is_withdrawn() -> None:
    """processor_lease_test: a tracked LoadBalancer whose type changes is torn down."""
    assert {str(v) for v in decided(service()).vips} == {"192.168.1.10"}
    assert decided(service(type_="NodePort")).vips == frozenset()


# -- service address discovery (FetchServiceAddresses) -----------------------------------------------------

def vips_of(svc: ServiceView) -> list[str]:
    return [str(v) for v in decided(svc).decisions[svc.key].vips]


@pytest.mark.parametrize(("svc", "expected"), [
    (service(annotations={"kube-vip.io/loadbalancerIPs": "10.0.0.1,10.0.0.2"}, spec_ip="10.0.0.9",
             ingress=("10.0.0.8",)), ["10.0.0.1", "10.0.0.2"]),                 # the annotation wins
    (service(annotations={"kube-vip.io/loadbalancerIPs": " 10.0.0.1 , fd00::1 "}), ["10.0.0.1", "fd00::1"]),
    (service(ingress=("10.0.0.5",)), ["10.0.0.5"]),                               # status only
    (service(ingress=("10.0.0.5", "fd00::5")), ["10.0.0.5", "fd00::5"]),          # dual-stack status
    (service(spec_ip="10.0.0.7", ingress=()), ["10.0.0.7"]),                      # legacy spec only
    (service(spec_ip="10.0.0.7", ingress=("10.0.0.5",)), ["10.0.0.7"]),           # spec differs: spec wins
    (service(ingress=()), []),                                                     # nothing allocated yet
])
def test_address_discovery(svc: ServiceView, expected: list[str]) -> None:
    assert vips_of(svc) == expected


def test_address_discovery_spec_equal_to_status_with_a_second_family() -> None:
    """DIFFERS: kube-vip returns every status address when spec.loadBalancerIP equals one of them
    (10.0.0.5 and fd00::5); kvip reads spec.loadBalancerIP before status, so only 10.0.0.5."""
    assert vips_of(service(spec_ip="10.0.0.5", ingress=("10.0.0.5", "fd00::5"))) == ["10.0.0.5"]


def test_address_discovery_spec_of_one_family_status_of_the_other() -> None:
    """DIFFERS: kube-vip returns the status' fd00::5 (no same-family status address differs from the spec);
    kvip returns spec.loadBalancerIP 10.0.0.7, the address the user asked for."""
    assert vips_of(service(spec_ip="10.0.0.7", ingress=("fd00::5",))) == ["10.0.0.7"]


def test_address_discovery_hostname_in_the_annotation() -> None:
    """DIFFERS in reporting only: kube-vip keeps a non-IP entry as a hostname (DHCP/DDNS, which kvip does not
    implement); neither advertises an IP for it, and kvip reports the entry as InvalidVIP."""
    state = decided(service(annotations={"kube-vip.io/loadbalancerIPs": "lb.example.com"}, ingress=()))
    assert state.vips == frozenset() and [p.reason for p in state.problems] == ["InvalidVIP"]


# -- Lease names (pkg/lease ServiceName, lease_test.go GetName*) ------------------------------------------

@pytest.mark.parametrize(("annotations", "expected"), [
    (None, LeaseKey("my-namespace", "kubevip-my-service")),
    ({"kube-vip.io/leaseName": "shared-lease"}, LeaseKey("my-namespace", "shared-lease")),
    ({"kube-vip.io/leaseName": "other-namespace/shared-lease"}, LeaseKey("other-namespace", "shared-lease")),
])
def test_lease_names(annotations: dict[str, str] | None, expected: LeaseKey) -> None:
    assert lease_of(service("my-service", annotations=annotations)) == expected


def test_common_lease_outlives_one_of_its_services() -> None:
    """lease_test CommonLeaseScenario: two Services naming one Lease share it; it stays while either exists."""
    plan = ElectionPlan(ElectionMode.SERVICE)
    shared = {"kube-vip.io/leaseName": "shared-lease"}
    svc1, svc2 = service("svc1", annotations=shared), service("svc2", annotations=shared)
    both = {svc1.key: svc1, svc2.key: svc2}
    assert wanted_leases(plan, both, set(both)) == {LeaseKey("my-namespace", "shared-lease")}
    assert wanted_leases(plan, {svc2.key: svc2}, {svc2.key}) == {LeaseKey("my-namespace", "shared-lease")}
    assert wanted_leases(plan, {}, set()) == frozenset()


def test_common_lease_needs_cluster_traffic_policy() -> None:
    """processor.go AddOrModify refuses kube-vip.io/leaseName with externalTrafficPolicy other than Cluster."""
    state = decided(service(policy="Local", annotations={"kube-vip.io/leaseName": "shared-lease"}))
    assert state.vips == frozenset() and [p.reason for p in state.problems] == ["InvalidAnnotation"]


def test_empty_common_lease_annotation_on_a_local_service() -> None:
    """DIFFERS: kube-vip refuses a Local Service that merely carries an empty kube-vip.io/leaseName (it tests
    presence); kvip treats the empty value as absent, as kube-vip's ServiceName itself does."""
    state = decided(service(policy="Local", annotations={"kube-vip.io/leaseName": ""}))
    assert {str(v) for v in state.vips} == {"192.168.1.10"}


def test_losing_the_lease_withdraws_but_keeps_contending() -> None:
    """leader_test: losing a service's Lease ends its leadership without deleting the Service: it stays
    eligible, its Lease stays wanted, and it is advertised again once re-elected."""
    svc = service("matst-example")
    config = DecideConfig(node_name=NODE, election=ElectionMode.SERVICE)
    plan = ElectionPlan(ElectionMode.SERVICE)
    snapshot = ClusterSnapshot({svc.key: svc}, {svc.key: (EndpointView(("10.244.0.5",), NODE),)})
    lost = decide(config, snapshot, leadership_from_leases(plan, set(), snapshot.services.values()))
    assert lost.vips == frozenset() and lost.decisions[svc.key].reason == "not-leader"
    assert wanted_leases(plan, snapshot.services, lost.eligible) == {lease_of(svc)}
    again = leadership_from_leases(plan, {lease_of(svc)}, snapshot.services.values())
    assert {str(v) for v in decide(config, snapshot, again).vips} == {"192.168.1.10"}


# -- kube-vip.io/allow-reconcile-without-endpoints (endpoints_test.go) ------------------------------------

ALLOW = {"kube-vip.io/allow-reconcile-without-endpoints": "true"}


@pytest.mark.parametrize(("policy", "annotations", "expected"), [
    ("Cluster", ALLOW, {"192.168.1.10"}),   # cluster opt-in: served without endpoints
    ("Cluster", {}, set()),                 # cluster without opt-in: cleared
    ("Local", ALLOW, set()),                # local opt-in: still cleared
])
def test_zero_endpoints(policy: str, annotations: dict[str, str], expected: set[str]) -> None:
    assert {str(v) for v in decided(service(policy=policy, annotations=annotations), endpoints=False).vips} == expected


# -- forcePerServiceElection and per_service_election_on_demand (processor.go, manager/worker/common.go) ----

@pytest.mark.parametrize(("mode", "on_demand", "forced", "leadership", "expected"), [
    # On-demand on: the annotated Service follows its own Lease, the others the node's mode.
    (ElectionMode.GLOBAL, True, True, Leadership(is_global_leader=True), False),
    (ElectionMode.GLOBAL, True, True, Leadership(led_services=frozenset({ServiceKey("my-namespace", "example")})),
     True),
    (ElectionMode.GLOBAL, True, False, Leadership(is_global_leader=True), True),
    (ElectionMode.NONE, True, True, Leadership(), False),
    (ElectionMode.NONE, True, False, Leadership(), True),
    # On-demand off: kube-vip's watcher skips the annotated Service; no node serves it.
    (ElectionMode.GLOBAL, False, True, Leadership(is_global_leader=True), False),
    (ElectionMode.NONE, False, True, Leadership(), False),
])
def test_forced_per_service_election(mode: ElectionMode, on_demand: bool, forced: bool, leadership: Leadership,
                                     expected: bool) -> None:
    config = DecideConfig(node_name=NODE, election=mode, per_service_election_on_demand=on_demand)
    state = decided(service(annotations=FORCE if forced else None), config, leadership=leadership)
    assert bool(state.vips) is expected


def test_forced_per_service_election_under_svc_election() -> None:
    """DIFFERS: with svc_election kube-vip's (non-forced) per-service watcher skips a Service annotated
    forcePerServiceElection=true, so nobody serves it; kvip elects it like every other Service."""
    config = DecideConfig(node_name=NODE, election=ElectionMode.SERVICE)
    led = Leadership(led_services=frozenset({ServiceKey("my-namespace", "example")}))
    assert decided(service(annotations=FORCE), config, leadership=led).vips
    assert not decided(service(annotations=FORCE), config).vips  # a non-leader does not advertise


def test_services_sharing_a_vip_under_one_lease_are_led_by_one_node() -> None:
    """kube-vip #879, #1579, #1286: the shared Lease's holder is the only node advertising the shared VIP."""
    shared = {"kube-vip.io/leaseName": "shared-lease"}
    group = [service(n, annotations=shared, ingress=("192.168.1.50",)) for n in ("a", "b", "c")]
    snapshot = ClusterSnapshot({s.key: s for s in group},
                               {s.key: (EndpointView(("10.244.0.5",), n),) for s, n in zip(group, (NODE, OTHER, "n3"))})
    plan = ElectionPlan(ElectionMode.SERVICE)
    advertisers = set()
    for node in (NODE, OTHER, "n3"):
        held = {LeaseKey("my-namespace", "shared-lease")} if node == OTHER else set()
        config = DecideConfig(node_name=node, election=ElectionMode.SERVICE)
        if decide(config, snapshot, leadership_from_leases(plan, held, snapshot.services.values())).vips:
            advertisers.add(node)
    assert advertisers == {OTHER}


# -- settings kvip reads differently: one line each ------------------------------------------------------

def test_service_interface_auto_is_not_taken_for_an_interface_named_auto() -> None:
    """DIFFERS: kube-vip puts the VIP on the interface whose subnet holds it; kvip does not choose by subnet,
    says so once, and leaves the VIP on vip_interface (not on a device called "auto")."""
    state = decided(service(annotations={"kube-vip.io/serviceInterface": "auto"}))
    (advertisement,) = state.advertisements.values()
    assert advertisement.interface is None
    assert [p.reason for p in state.problems] == ["UnsupportedAnnotation"]


def test_leadership_loss_settings_are_each_one_notice_line() -> None:
    """DIFFERS: vip_preserve_on_leadership_loss (keep the IPv4 address, stop announcing) and vip_loseleadership
    (give up leadership while the interface is down) are not implemented; each is one warning line."""
    config = load_config({"vip_nodename": NODE, "vip_preserve_on_leadership_loss": "true",
                          "vip_loseleadership": "true"})
    assert sum(n.startswith("vip_preserve_on_leadership_loss=true") for n in config.notices) == 1
    assert sum(n.startswith("vip_loseleadership=true") for n in config.notices) == 1
    assert not any("leadership" in n for n in load_config({"vip_nodename": NODE}).notices)


def test_per_service_election_on_demand_reaches_decide() -> None:
    config = load_config({"vip_nodename": NODE, "per_service_election_on_demand": "true"})
    assert config.decide_config().per_service_election_on_demand
