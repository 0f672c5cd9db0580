"""Who may advertise (kvip issue #20): decide() with `kvip_node_selector` and the Service's
`kvip.io/node-selector`, the Leases a node outside them contends for, and the option itself."""

from __future__ import annotations

import ipaddress
from types import MappingProxyType

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kvip.config.agent import ConfigError, load_config
from kvip.core.decide import DecideConfig, decide
from kvip.core.election_rules import LeaseKey, service_lease_key
from kvip.core.leases import ElectionPlan, wanted_leases
from kvip.core.model import (
    ClusterSnapshot,
    ControlPlaneState,
    ElectionMode,
    EndpointView,
    Leadership,
    NodeView,
    PortView,
    ServiceKey,
    ServiceView,
)
from kvip.core.node_selector import NODE_SELECTOR_ANNOTATION, parse_selector

HERE = "node-a"
EDGE = NodeView(HERE, labels=MappingProxyType({"role": "edge", "zone": "z1"}))
CORE = NodeView(HERE, labels=MappingProxyType({"role": "core", "zone": "z1"}))


def service(name: str, vip: str, selector: str | None = None) -> ServiceView:
    annotations = {} if selector is None else {NODE_SELECTOR_ANNOTATION: selector}
    return ServiceView(ServiceKey("default", name), ingress_ips=(vip,), ports=(PortView("p", 80, "TCP"),),
                       annotations=MappingProxyType(annotations))


def cluster(node: NodeView | None, *services: ServiceView) -> ClusterSnapshot:
    return ClusterSnapshot({s.key: s for s in services},
                           {s.key: (EndpointView(("10.244.0.9",), "node-b"),) for s in services}, node)


def config(selector: str | None = None, election: ElectionMode = ElectionMode.NONE, **more: object) -> DecideConfig:
    return DecideConfig(node_name=HERE, election=election,
                        node_selector=None if selector is None else parse_selector(selector), **more)  # type: ignore[arg-type]


def advertised(state) -> set[str]:  # type: ignore[no-untyped-def]
    return {str(v) for v in state.advertisements}


WEB = service("web", "192.0.2.10")


def test_a_node_outside_the_global_selector_advertises_nothing_and_says_why() -> None:
    assert advertised(decide(config("role=edge"), cluster(EDGE, WEB))) == {"192.0.2.10"}
    state = decide(config("role=edge"), cluster(CORE, WEB))
    assert advertised(state) == set() and state.problems == ()
    decision = state.decisions[WEB.key]
    assert (decision.eligible, decision.reason) == (False, "node-not-selected")


def test_the_service_annotation_narrows_one_service_and_leaves_the_others_alone() -> None:
    edge_only = service("edge-only", "192.0.2.11", "role in (edge)")
    assert advertised(decide(config(), cluster(CORE, WEB, edge_only))) == {"192.0.2.10"}
    assert decide(config(), cluster(CORE, WEB, edge_only)).decisions[edge_only.key].reason == \
        "node-not-selected-by-service"
    assert advertised(decide(config(), cluster(EDGE, WEB, edge_only))) == {"192.0.2.10", "192.0.2.11"}


def test_both_selectors_must_hold() -> None:
    core_only = service("core-only", "192.0.2.12", "role=core")
    assert advertised(decide(config("zone=z1"), cluster(CORE, core_only))) == {"192.0.2.12"}
    assert advertised(decide(config("zone=z2"), cluster(CORE, core_only))) == set()
    assert advertised(decide(config("zone=z1"), cluster(EDGE, core_only))) == set()


def test_a_bad_annotation_is_reported_and_that_service_is_advertised_nowhere() -> None:
    broken = service("broken", "192.0.2.13", "role in (edge")
    for node in (EDGE, CORE):
        state = decide(config(), cluster(node, WEB, broken))
        assert advertised(state) == {"192.0.2.10"}, "the other Service is untouched"
        [problem] = state.problems
        assert (problem.service, problem.reason) == (broken.key, "InvalidAnnotation")
        assert NODE_SELECTOR_ANNOTATION in problem.message and "not advertised by any node" in problem.message
        assert state.decisions[broken.key].reason == "invalid-node-selector"


def test_an_oversized_annotation_is_refused_before_it_is_read() -> None:
    huge = service("huge", "192.0.2.14", "role in (" + ",".join(["edge"] * 2000) + ")")
    [problem] = decide(config(), cluster(EDGE, huge)).problems
    assert "more than the limit of 4096" in problem.message and len(problem.message) < 300


def test_a_label_change_moves_the_decision_with_nothing_remembered() -> None:
    cfg = config("role=edge")
    assert [advertised(decide(cfg, cluster(node, WEB))) for node in (EDGE, CORE, EDGE)] == \
        [{"192.0.2.10"}, set(), {"192.0.2.10"}]


def test_without_the_node_object_a_selector_fails_closed() -> None:
    assert advertised(decide(config(), cluster(None, WEB))) == {"192.0.2.10"}, "no selector: as before"
    assert advertised(decide(config("!gpu"), cluster(None, WEB))) == set()
    assert advertised(decide(config(), cluster(None, service("s", "192.0.2.15", "!gpu")))) == set()


def test_per_service_election_a_node_outside_does_not_even_want_the_lease() -> None:
    edge_only = service("edge-only", "192.0.2.11", "role=edge")
    plan = ElectionPlan(ElectionMode.SERVICE)
    for node, wanted in ((EDGE, {service_lease_key(WEB.key), service_lease_key(edge_only.key)}),
                         (CORE, {service_lease_key(WEB.key)})):
        snapshot = cluster(node, WEB, edge_only)
        state = decide(config(election=ElectionMode.SERVICE), snapshot)
        assert wanted_leases(plan, snapshot.services, state.eligible) == wanted


def test_global_election_a_node_outside_wants_no_lease_and_never_advertises_even_holding_it() -> None:
    env = {"vip_nodename": HERE, "vip_leaderelection": "true", "kvip_node_selector": "role=edge"}
    agent = load_config(env)
    assert agent.election is ElectionMode.GLOBAL and agent.decide_config().node_selector is not None
    assert agent.selects_node(EDGE) and not agent.selects_node(CORE) and not agent.selects_node(None)
    assert load_config({"vip_nodename": HERE}).selects_node(CORE), "unset: every node contends"
    state = decide(agent.decide_config(), cluster(CORE, WEB), Leadership(is_global_leader=True))
    assert advertised(state) == set() and state.eligible == frozenset()


def test_the_control_plane_vip_is_not_a_service_and_ignores_the_selector() -> None:
    cp = ControlPlaneState((ipaddress.ip_address("192.0.2.1"),), healthy=True)
    state = decide(config("role=edge"), cluster(CORE, WEB), control_plane=cp)
    assert advertised(state) == {"192.0.2.1"}


@settings(max_examples=200, deadline=None)
@given(election=st.sampled_from(list(ElectionMode)), on_demand=st.booleans(), bgp=st.booleans(),
       draining=st.booleans(), global_leader=st.booleans(), leads=st.booleans(), lease_name=st.booleans(),
       through=st.sampled_from(["global", "service"]))
def test_outside_a_selector_no_mode_or_election_style_advertises(  # type: ignore[no-untyped-def]
        election, on_demand, bgp, draining, global_leader, leads, lease_name, through) -> None:
    annotations = {"kube-vip.io/forcePerServiceElection": "true"} if on_demand else {}
    if lease_name:
        annotations["kube-vip.io/leaseName"] = "shared"
    if through == "service":
        annotations[NODE_SELECTOR_ANNOTATION] = "role=edge"
    svc = ServiceView(ServiceKey("default", "web"), ingress_ips=("192.0.2.10",), ports=(PortView("p", 80, "TCP"),),
                      annotations=MappingProxyType(annotations))
    cfg = DecideConfig(node_name=HERE, election=election, per_service_election_on_demand=on_demand,
                       bgp_attributes=bgp, node_selector=parse_selector("role=edge") if through == "global" else None)
    leadership = Leadership(is_global_leader=global_leader, led_services=frozenset({svc.key}) if leads else frozenset())
    state = decide(cfg, cluster(CORE, svc), leadership, draining=draining)
    assert state.advertisements == {} and state.eligible == frozenset()
    plan = ElectionPlan(election, on_demand, LeaseKey("kube-system", "plndr-svcs-lock"))
    assert not wanted_leases(plan, {svc.key: svc}, state.eligible) - {plan.global_lease}


def test_the_option_bad_value_is_one_line_naming_it_and_empty_means_unset() -> None:
    with pytest.raises(ConfigError) as bad:
        load_config({"vip_nodename": HERE, "kvip_node_selector": "role in (edge"})
    assert str(bad.value).count("\n") == 0 and str(bad.value).startswith("kvip_node_selector: ")
    assert load_config({"vip_nodename": HERE, "kvip_node_selector": ""}).node_selector is None
    flag = load_config({"vip_nodename": HERE, "kvip_node_selector": "role=core"}, {"node_selector": "role=edge"})
    assert flag.selects_node(EDGE) and not flag.selects_node(CORE)
