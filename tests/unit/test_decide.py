"""decide(): which VIPs this node advertises, scenario by scenario, with plain values."""

from __future__ import annotations

import ipaddress
from types import MappingProxyType

from kvip.core.decide import DecideConfig, decide
from kvip.core.election_rules import LeaseKey
from kvip.core.leases import ElectionPlan, leadership_from_leases, wanted_leases
from kvip.core.model import (
    ClusterSnapshot,
    ElectionMode,
    EndpointView,
    Leadership,
    NodeView,
    PortView,
    ProbeVerdicts,
    ServiceKey,
    ServiceView,
)

HERE, THERE = "node-a", "node-b"
CONFIG = DecideConfig(node_name=HERE)


def svc(name: str, *ips: str, policy: str = "Local", cls: str | None = None, annotations: dict | None = None,
        lb_ip: str | None = None, port: int = 80, type_: str = "LoadBalancer") -> ServiceView:
    return ServiceView(ServiceKey("default", name), type=type_, load_balancer_class=cls, external_traffic_policy=policy,
                       load_balancer_ip=lb_ip, ingress_ips=ips, ports=(PortView("p", port, "TCP"),),
                       annotations=MappingProxyType(annotations or {}))


def ep(node: str, ready: bool = True, serving: bool | None = None, terminating: bool = False,
       address: str = "10.244.0.5") -> EndpointView:
    return EndpointView((address,), node, ready, ready if serving is None else serving, terminating)


def snap(*services: ServiceView, endpoints: dict[str, tuple[EndpointView, ...]] | None = None,
         node: NodeView | None = None) -> ClusterSnapshot:
    return ClusterSnapshot(
        services={s.key: s for s in services},
        endpoints={ServiceKey("default", k): v for k, v in (endpoints or {}).items()},
        node=node,
    )


def advertised(state) -> set[str]:  # type: ignore[no-untyped-def]
    return {str(v) for v in state.vips}


def test_local_policy_advertises_only_with_a_ready_local_endpoint() -> None:
    web = svc("web", "10.96.0.10")
    assert advertised(decide(CONFIG, snap(web, endpoints={"web": (ep(HERE),)}))) == {"10.96.0.10"}
    assert advertised(decide(CONFIG, snap(web, endpoints={"web": (ep(THERE),)}))) == set()
    assert advertised(decide(CONFIG, snap(web, endpoints={"web": (ep(HERE, ready=False),)}))) == set()
    state = decide(CONFIG, snap(web, endpoints={}))
    assert state.decisions[web.key].reason == "no-ready-local-endpoint"


def test_cluster_policy_advertises_while_any_endpoint_anywhere_is_ready() -> None:
    web = svc("web", "10.96.0.10", policy="Cluster")
    assert advertised(decide(CONFIG, snap(web, endpoints={"web": (ep(THERE),)}))) == {"10.96.0.10"}
    assert advertised(decide(CONFIG, snap(web, endpoints={"web": (ep(THERE, ready=False),)}))) == set()


def test_serving_but_terminating_endpoint_counts_only_when_configured() -> None:
    web = svc("web", "10.96.0.10")
    draining = {"web": (ep(HERE, ready=False, serving=True, terminating=True),)}
    assert advertised(decide(CONFIG, snap(web, endpoints=draining))) == set()
    lenient = DecideConfig(node_name=HERE, serving_terminating=True)
    assert advertised(decide(lenient, snap(web, endpoints=draining))) == {"10.96.0.10"}


def test_load_balancer_class_matrix_follows_kube_vip() -> None:
    ours, theirs, none = (svc("a", "10.96.0.1", policy="Cluster", cls="kube-vip.io/kube-vip-class"),
                          svc("b", "10.96.0.2", policy="Cluster", cls="other.io/lb"),
                          svc("c", "10.96.0.3", policy="Cluster"))
    everywhere = {n: (ep(THERE),) for n in "abc"}
    cluster = snap(ours, theirs, none, endpoints=everywhere)
    legacy = decide(CONFIG, cluster)
    assert advertised(legacy) == {"10.96.0.1", "10.96.0.3"}
    only = decide(DecideConfig(node_name=HERE, lb_class_only=True), cluster)
    assert advertised(only) == {"10.96.0.1"}
    strict = decide(DecideConfig(node_name=HERE, lb_class_legacy=False), cluster)
    assert advertised(strict) == {"10.96.0.1"}


def test_ignore_annotation_skips_service_and_malformed_value_is_reported_not_ignored() -> None:
    ignored = svc("a", "10.96.0.1", policy="Cluster", annotations={"kube-vip.io/ignore": "true"})
    garbled = svc("b", "10.96.0.2", policy="Cluster", annotations={"kube-vip.io/ignore": "maybe"})
    state = decide(CONFIG, snap(ignored, garbled, endpoints={"a": (ep(THERE),), "b": (ep(THERE),)}))
    assert advertised(state) == {"10.96.0.2"}
    assert [(p.service.name, p.reason) for p in state.problems] == [("b", "InvalidAnnotation")]


def test_vip_sources_in_kube_vip_order_annotation_then_spec_then_status() -> None:
    both = svc("a", "10.96.0.3", policy="Cluster", lb_ip="10.96.0.2",
               annotations={"kube-vip.io/loadbalancerIPs": "10.96.0.1, 2001:db8::1"})
    spec_only = svc("b", "10.96.0.5", policy="Cluster", lb_ip="10.96.0.4")
    state = decide(CONFIG, snap(both, spec_only, endpoints={"a": (ep(THERE),), "b": (ep(THERE),)}))
    assert advertised(state) == {"10.96.0.1", "2001:db8::1", "10.96.0.4"}
    assert state.advertisements[ipaddress.ip_address("2001:db8::1")].prefix_len == 128


def test_shared_vip_stays_while_any_owner_wants_it() -> None:
    http = svc("http", "10.96.0.9", port=80)
    https = svc("https", "10.96.0.9", port=443)
    state = decide(CONFIG, snap(http, https, endpoints={"http": (ep(HERE),), "https": ()}))
    assert advertised(state) == {"10.96.0.9"}
    owners = state.advertisements[ipaddress.ip_address("10.96.0.9")].services
    assert owners == {http.key}
    assert state.problems == ()


def test_conflicting_ports_on_a_shared_vip_are_reported_on_both_and_others_are_unaffected() -> None:
    one, two = svc("one", "10.96.0.9"), svc("two", "10.96.0.9")
    other = svc("other", "10.96.0.8")
    eps = {"one": (ep(HERE),), "two": (ep(HERE),), "other": (ep(HERE),)}
    state = decide(CONFIG, snap(one, two, other, endpoints=eps))
    assert advertised(state) == {"10.96.0.9", "10.96.0.8"}
    assert {(p.service.name, p.reason) for p in state.problems} == {("one", "VIPConflict"), ("two", "VIPConflict")}


def test_malformed_vip_annotation_on_one_service_never_changes_another() -> None:
    good = svc("good", "10.96.0.1", policy="Cluster")
    bad = svc("bad", policy="Cluster", annotations={"kube-vip.io/loadbalancerIPs": "10.96.0.300,,fe80::1,0.0.0.0"})
    eps = {"good": (ep(THERE),), "bad": (ep(THERE),)}
    alone = decide(CONFIG, snap(good, endpoints=eps))
    together = decide(CONFIG, snap(good, bad, endpoints=eps))
    assert advertised(alone) == advertised(together) == {"10.96.0.1"}
    assert {p.service.name for p in together.problems} == {"bad"}
    assert together.decisions[bad.key].reason == "no-vip"


def test_excluded_or_network_unavailable_node_advertises_nothing_cordon_only_when_asked() -> None:
    web = svc("web", "10.96.0.10")
    eps = {"web": (ep(HERE),)}
    excluded = NodeView(HERE, labels=MappingProxyType({"node.kubernetes.io/exclude-from-external-load-balancers": ""}))
    assert advertised(decide(CONFIG, snap(web, endpoints=eps, node=excluded))) == set()
    assert advertised(decide(CONFIG, snap(web, endpoints=eps, node=NodeView(HERE, network_unavailable=True)))) == set()
    cordoned = NodeView(HERE, unschedulable=True)
    assert advertised(decide(CONFIG, snap(web, endpoints=eps, node=cordoned))) == {"10.96.0.10"}
    draining = DecideConfig(node_name=HERE, drain_on_cordon=True)
    assert advertised(decide(draining, snap(web, endpoints=eps, node=cordoned))) == set()


def test_leadership_gates_advertisement_per_election_mode() -> None:
    web, api = svc("web", "10.96.0.1", policy="Cluster"), svc("api", "10.96.0.2", policy="Cluster")
    cluster = snap(web, api, endpoints={"web": (ep(THERE),), "api": (ep(THERE),)})
    glob = DecideConfig(node_name=HERE, election=ElectionMode.GLOBAL)
    assert advertised(decide(glob, cluster, Leadership(is_global_leader=False))) == set()
    assert advertised(decide(glob, cluster, Leadership(is_global_leader=True))) == {"10.96.0.1", "10.96.0.2"}
    per = DecideConfig(node_name=HERE, election=ElectionMode.SERVICE)
    state = decide(per, cluster, Leadership(led_services=frozenset({web.key})))
    assert advertised(state) == {"10.96.0.1"}
    assert state.eligible == {web.key, api.key}  # both may be led: the elector contends for both


def test_failing_local_probe_withdraws_a_local_service() -> None:
    web = svc("web", "10.96.0.10")
    eps = {"web": (ep(HERE, address="10.244.0.7"),)}
    assert advertised(decide(CONFIG, snap(web, endpoints=eps), probes=ProbeVerdicts(frozenset({"10.244.0.7"})))) == set()


def test_non_load_balancer_services_are_not_ours() -> None:
    web = svc("web", "10.96.0.10", type_="ClusterIP")
    state = decide(CONFIG, snap(web, endpoints={"web": (ep(HERE),)}))
    assert advertised(state) == set() and web.key not in state.decisions


def test_service_interface_annotation_chooses_the_layer2_interface_of_its_vip() -> None:
    web = svc("web", "10.96.0.10", policy="Cluster", annotations={"kube-vip.io/serviceInterface": "eth1"})
    api = svc("api", "10.96.0.11", policy="Cluster")
    state = decide(CONFIG, snap(web, api, endpoints={"web": (ep(THERE),), "api": (ep(THERE),)}))
    assert state.advertisements[ipaddress.ip_address("10.96.0.10")].interface == "eth1"
    assert state.advertisements[ipaddress.ip_address("10.96.0.11")].interface is None


# -- kube-vip's election annotations (kvip issue #23) ---------------------------------------------

SHARED_LEASE = {"kube-vip.io/leaseName": "web-vip"}


def test_services_sharing_a_vip_and_a_lease_name_are_advertised_by_the_one_lease_holder_only() -> None:
    """kube-vip #879/#1579/#1286: three Services on one VIP, endpoints on three nodes, per-service election."""
    group = [svc(n, "10.96.0.9", policy="Cluster", port=p, annotations=SHARED_LEASE)
             for n, p in (("http", 80), ("https", 443), ("dns", 53))]
    eps = {"http": (ep("node-a"),), "https": (ep("node-b"),), "dns": (ep("node-c"),)}
    cluster = snap(*group, endpoints=eps)
    plan = ElectionPlan(ElectionMode.SERVICE)
    holders = {LeaseKey("default", "web-vip"): "node-b"}
    advertisers = set()
    for node in ("node-a", "node-b", "node-c"):
        config = DecideConfig(node_name=node, election=ElectionMode.SERVICE)
        eligible = decide(config, cluster).eligible
        assert wanted_leases(plan, cluster.services, eligible) == {LeaseKey("default", "web-vip")}
        held = {lease for lease, holder in holders.items() if holder == node}
        if advertised(decide(config, cluster, leadership_from_leases(plan, held, cluster.services.values()))):
            advertisers.add(node)
    assert advertisers == {"node-b"}


def test_shared_lease_name_on_a_local_policy_service_is_refused_as_kube_vip_does() -> None:
    web = svc("web", "10.96.0.9", policy="Local", annotations=SHARED_LEASE)
    state = decide(CONFIG, snap(web, endpoints={"web": (ep(HERE),)}))
    assert advertised(state) == set() and state.decisions[web.key].reason == "shared-lease-needs-cluster-policy"
    assert [p.reason for p in state.problems] == ["InvalidAnnotation"]


def test_allow_reconcile_without_endpoints_advertises_a_cluster_service_that_has_none() -> None:
    allow = {"kube-vip.io/allow-reconcile-without-endpoints": "True"}
    web = svc("web", "10.96.0.9", policy="Cluster", annotations=allow)
    state = decide(CONFIG, snap(web))
    assert advertised(state) == {"10.96.0.9"} and state.problems == ()
    assert advertised(decide(CONFIG, snap(svc("web", "10.96.0.9", policy="Cluster")))) == set()
    # Local: ignored (no local endpoint, no traffic), and said so.
    local = svc("web", "10.96.0.9", policy="Local", annotations=allow)
    state = decide(CONFIG, snap(local))
    assert advertised(state) == set() and [p.reason for p in state.problems] == ["InvalidAnnotation"]
    # Still behind the election: a non-leader does not advertise it.
    per = DecideConfig(node_name=HERE, election=ElectionMode.SERVICE)
    assert advertised(decide(per, snap(web))) == set()
    assert decide(per, snap(web)).eligible == {web.key}


def test_forced_per_service_election_on_demand_overrides_the_global_lease_for_that_service_only() -> None:
    forced = svc("db", "10.96.0.7", policy="Cluster", annotations={"kube-vip.io/forcePerServiceElection": "true"})
    plain = svc("web", "10.96.0.8", policy="Cluster")
    cluster = snap(forced, plain, endpoints={"db": (ep(THERE),), "web": (ep(THERE),)})
    on_demand = DecideConfig(node_name=HERE, election=ElectionMode.GLOBAL, per_service_election_on_demand=True)
    assert advertised(decide(on_demand, cluster, Leadership(is_global_leader=True))) == {"10.96.0.8"}
    assert advertised(decide(on_demand, cluster, Leadership(led_services=frozenset({forced.key})))) == {"10.96.0.7"}
    anycast = DecideConfig(node_name=HERE, per_service_election_on_demand=True)
    assert advertised(decide(anycast, cluster)) == {"10.96.0.8"}
    # Without on-demand election kube-vip serves the annotated Service nowhere: kvip says so.
    state = decide(DecideConfig(node_name=HERE), cluster)
    assert advertised(state) == {"10.96.0.8"}
    assert state.decisions[forced.key].reason == "per-service-election-off"
    assert [p.reason for p in state.problems] == ["ElectionUnavailable"]
    # Under svc_election every Service has its own Lease anyway (kube-vip would skip the annotated one).
    per = DecideConfig(node_name=HERE, election=ElectionMode.SERVICE)
    assert advertised(decide(per, cluster, Leadership(led_services=frozenset({forced.key})))) == {"10.96.0.7"}
