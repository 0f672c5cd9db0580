"""The control-plane VIP in decide(): anycast and election, API-server health, node state, conflicts, DNS modes."""

from __future__ import annotations

import ipaddress
from types import MappingProxyType

import pytest
from hypothesis import given
from hypothesis import strategies as st

from kvip.core.control_plane import (
    InvalidControlPlaneAddress,
    select_addresses,
    split_address,
    wants_lease,
)
from kvip.core.decide import EXCLUDE_LB_LABEL, DecideConfig, decide
from kvip.core.model import (
    CONTROL_PLANE_KEY,
    ClusterSnapshot,
    ControlPlaneState,
    EndpointView,
    Leadership,
    NodeView,
    PortView,
    ServiceKey,
    ServiceView,
)

HERE = "cp-1"
CP_VIP = ipaddress.ip_address("192.168.10.100")
ANYCAST = DecideConfig(node_name=HERE)
ELECTED = DecideConfig(node_name=HERE, control_plane_election=True)
EMPTY = ClusterSnapshot(services={}, endpoints={})
LEADER = Leadership(is_control_plane_leader=True)


def cp(healthy: bool = True, *addresses: str, leaving: bool = False) -> ControlPlaneState:
    return ControlPlaneState(tuple(ipaddress.ip_address(a) for a in addresses) or (CP_VIP,), healthy, leaving)


def web(ip: str) -> tuple[ClusterSnapshot, ServiceKey]:
    service = ServiceView(ServiceKey("default", "web"), external_traffic_policy="Cluster", ingress_ips=(ip,),
                          ports=(PortView("p", 443, "TCP"),), annotations=MappingProxyType({}))
    endpoint = EndpointView(("10.244.0.5",), HERE)
    return ClusterSnapshot({service.key: service}, {service.key: (endpoint,)}), service.key


def test_anycast_every_healthy_node_advertises_and_an_unhealthy_one_withdraws() -> None:
    state = decide(ANYCAST, EMPTY, control_plane=cp())
    assert state.vips == {CP_VIP}
    assert state.advertisements[CP_VIP].control_plane
    assert state.decisions[CONTROL_PLANE_KEY].reason == "advertised"
    down = decide(ANYCAST, EMPTY, control_plane=cp(False))
    assert down.vips == set()
    assert down.decisions[CONTROL_PLANE_KEY].reason == "apiserver-unhealthy"


def test_election_only_the_lease_holder_advertises_and_only_while_healthy() -> None:
    assert decide(ELECTED, EMPTY, LEADER, control_plane=cp()).vips == {CP_VIP}
    follower = decide(ELECTED, EMPTY, Leadership(), control_plane=cp())
    assert follower.vips == set() and follower.decisions[CONTROL_PLANE_KEY].reason == "not-leader"
    assert follower.decisions[CONTROL_PLANE_KEY].eligible  # a healthy follower still contends
    assert decide(ELECTED, EMPTY, LEADER, control_plane=cp(False)).vips == set()


def test_the_services_global_lease_does_not_elect_the_control_plane() -> None:
    assert decide(ELECTED, EMPTY, Leadership(is_global_leader=True), control_plane=cp()).vips == set()


def test_cordon_and_kubeadms_exclude_label_do_not_withdraw_the_control_plane_vip() -> None:
    cordoned = NodeView(HERE, unschedulable=True, labels=MappingProxyType({EXCLUDE_LB_LABEL: ""}),
                        network_unavailable=True)
    config = DecideConfig(node_name=HERE, drain_on_cordon=True)
    snapshot = ClusterSnapshot(services={}, endpoints={}, node=cordoned)
    assert decide(config, snapshot, control_plane=cp()).vips == {CP_VIP}


def test_a_drain_window_marks_services_but_never_the_control_plane_vip() -> None:
    state = decide(ANYCAST, EMPTY, draining=True, control_plane=cp())
    assert not state.advertisements[CP_VIP].draining


def test_a_stopping_agent_withdraws_the_control_plane_vip_at_once() -> None:
    state = decide(ANYCAST, EMPTY, LEADER, control_plane=cp(leaving=True))
    assert state.vips == set() and state.decisions[CONTROL_PLANE_KEY].reason == "agent-stopping"


def test_an_unresolved_name_advertises_nothing() -> None:
    state = decide(ANYCAST, EMPTY, control_plane=ControlPlaneState((), True))
    assert state.vips == set() and state.decisions[CONTROL_PLANE_KEY].reason == "no-address"


def test_a_service_asking_for_the_control_plane_vip_is_refused_it_and_the_control_plane_wins() -> None:
    snapshot, key = web(str(CP_VIP))
    state = decide(ANYCAST, snapshot, control_plane=cp())
    assert state.advertisements[CP_VIP].control_plane and state.advertisements[CP_VIP].services == frozenset()
    assert [p.reason for p in state.problems if p.service == key] == ["VIPConflict"]
    assert state.decisions[key].vips == ()
    # Unhealthy API server: the Service does not keep the VIP up in the control plane's place.
    assert decide(ANYCAST, snapshot, control_plane=cp(False)).vips == set()


def test_without_cp_enable_a_service_keeps_that_vip() -> None:
    snapshot, _ = web(str(CP_VIP))
    assert decide(ANYCAST, snapshot).vips == {CP_VIP}
    assert CONTROL_PLANE_KEY not in decide(ANYCAST, snapshot).decisions


def test_a_family_no_bgp_peer_carries_is_reported_not_announced() -> None:
    config = DecideConfig(node_name=HERE, address_families=frozenset({4}))
    state = decide(config, EMPTY, control_plane=cp(True, "192.168.10.100", "fd00::100"))
    assert state.vips == {CP_VIP}
    assert [p.reason for p in state.problems] == ["NoPeerForFamily"]


def test_unhealthy_or_stopping_nodes_do_not_contend_for_the_lease() -> None:
    assert wants_lease(cp())
    assert not wants_lease(cp(False))
    assert not wants_lease(cp(leaving=True))
    assert not wants_lease(ControlPlaneState((), True))


def test_address_is_ips_and_dns_names_comma_separated() -> None:
    ips, names = split_address("192.168.10.100, fd00::100,API.Example.com.")
    assert [str(i) for i in ips] == ["192.168.10.100", "fd00::100"] and names == ("api.example.com",)
    for bad in ("", "300.1.1.1", "a b", "-bad.example.com", "api_server"):
        with pytest.raises(InvalidControlPlaneAddress):
            split_address(bad)


def test_dns_mode_selects_from_the_resolver_answer() -> None:
    answer = [ipaddress.ip_address(a) for a in ("fd00::1", "10.0.0.1", "10.0.0.2", "fd00::2")]
    assert [str(a) for a in select_addresses(answer, "first")] == ["fd00::1"]
    assert [str(a) for a in select_addresses(answer, "ipv4")] == ["10.0.0.1"]
    assert [str(a) for a in select_addresses(answer, "IPv6")] == ["fd00::1"]
    assert [str(a) for a in select_addresses(answer, "dual")] == ["10.0.0.1", "fd00::1"]
    assert select_addresses(answer[:1], "ipv4") == ()
    assert select_addresses([], "first") == ()


states = st.builds(ControlPlaneState,
                   st.lists(st.sampled_from([CP_VIP, ipaddress.ip_address("fd00::100")]), unique=True).map(tuple),
                   st.booleans(), st.booleans())
leaderships = st.builds(Leadership, st.booleans(), st.just(frozenset()), st.booleans())


@given(state=states, leadership=leaderships, election=st.booleans())
def test_property_unhealthy_or_stopping_never_advertises(state: ControlPlaneState, leadership: Leadership,
                                                          election: bool) -> None:
    config = DecideConfig(node_name=HERE, control_plane_election=election)
    desired = decide(config, EMPTY, leadership, control_plane=state)
    if not state.healthy or state.leaving:
        assert desired.vips == set()


@given(state=states, leadership=leaderships)
def test_property_in_election_exactly_the_healthy_leader_advertises(state: ControlPlaneState,
                                                                     leadership: Leadership) -> None:
    desired = decide(ELECTED, EMPTY, leadership, control_plane=state)
    serving = leadership.is_control_plane_leader and state.healthy and not state.leaving
    assert desired.vips == (set(state.addresses) if serving else set())
    assert desired.decisions[CONTROL_PLANE_KEY].advertised is (serving and bool(state.addresses))


def test_the_control_plane_advertisement_is_for_the_control_plane_vip_and_marked_as_such() -> None:
    advertisement = decide(ANYCAST, EMPTY, control_plane=cp()).advertisements[CP_VIP]
    assert advertisement.vip == CP_VIP and advertisement.control_plane and not advertisement.services
