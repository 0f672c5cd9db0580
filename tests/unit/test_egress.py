"""Which SNAT rules a node holds for Services that ask for egress (kube-vip.io/egress), from plain values."""

from __future__ import annotations

import ipaddress

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kvip.config.agent import load_config
from kvip.config.options import ConfigError
from kvip.core.decide import DecideConfig, decide
from kvip.core.egress import EgressSettings, parse_ports
from kvip.core.model import (
    ClusterSnapshot,
    ElectionMode,
    EndpointView,
    Leadership,
    ServiceKey,
    ServiceView,
)
from kvip.dataplane.egress import render

WEB = ServiceKey("default", "web")
API = ServiceKey("default", "api")
PODS = EgressSettings((ipaddress.ip_network("10.244.0.0/16"), ipaddress.ip_network("fd00:244::/56")))
ON = {"kube-vip.io/egress": "true"}


def service(key: ServiceKey = WEB, vips: tuple[str, ...] = ("10.96.0.10",), **annotations: str) -> ServiceView:
    return ServiceView(key, external_traffic_policy="Local", ingress_ips=vips,
                       annotations={**ON, **{f"kube-vip.io/{k.replace('_', '-')}": v for k, v in annotations.items()}})


def here(*addresses: str, node: str = "node-a") -> tuple[EndpointView, ...]:
    return tuple(EndpointView((a,), node) for a in addresses)


def state(*services: tuple[ServiceView, tuple[EndpointView, ...]], egress: EgressSettings | None = PODS,
          election: ElectionMode = ElectionMode.NONE, leader: bool = True):  # type: ignore[no-untyped-def]
    snapshot = ClusterSnapshot({s.key: s for s, _ in services}, {s.key: e for s, e in services})
    return decide(DecideConfig("node-a", election=election, egress=egress), snapshot,
                  Leadership(is_global_leader=leader))


def test_each_local_pod_of_an_advertised_service_leaves_with_the_vip_except_to_internal_networks() -> None:
    desired = state((service(egress_denied_networks="192.168.1.7/24, 10.244.9.0/24"),
                     here("10.244.1.5", "10.244.1.6") + here("10.244.2.5", node="node-b")))
    assert {(str(r.vip), str(r.pod)) for r in desired.egress} == {("10.96.0.10", "10.244.1.5"),
                                                                  ("10.96.0.10", "10.244.1.6")}
    rule = next(iter(desired.egress))
    # pod CIDR, kube-vip's default service CIDR, the denied networks (host bits dropped, overlaps merged)
    assert [str(n) for n in rule.excluded] == ["10.96.0.0/12", "10.244.0.0/16", "192.168.1.0/24"]
    assert desired.problems == ()


def test_a_node_that_does_not_hold_the_vip_holds_no_rule() -> None:
    desired = state((service(), here("10.244.1.5")), election=ElectionMode.GLOBAL, leader=False)
    assert desired.egress == frozenset() and desired.problems == ()


def test_without_the_annotation_there_is_no_rule() -> None:
    plain = ServiceView(WEB, external_traffic_policy="Local", ingress_ips=("10.96.0.10",))
    assert state((plain, here("10.244.1.5"))).egress == frozenset()


def test_ipv6_egress_uses_the_ipv6_vip_and_pods_and_only_when_an_ipv6_pod_cidr_is_known() -> None:
    dual = service(vips=("10.96.0.10", "2001:db8::10"), egress_ipv6="true")
    desired = state((dual, here("10.244.1.5", "fd00:244::5")))
    assert {(str(r.vip), str(r.pod)) for r in desired.egress} == {("2001:db8::10", "fd00:244::5")}
    v4_only = EgressSettings((ipaddress.ip_network("10.244.0.0/16"),))
    refused = state((dual, here("fd00:244::5")), egress=v4_only)
    assert refused.egress == frozenset()
    assert [p.reason for p in refused.problems] == ["EgressNotConfigured"]


def test_an_agent_without_egress_podcidr_says_so_on_the_service() -> None:
    desired = state((service(), here("10.244.1.5")), egress=None)
    assert desired.egress == frozenset()
    assert [(p.service, p.reason) for p in desired.problems] == [(WEB, "EgressNotConfigured")]
    assert "egress_podcidr" in desired.problems[0].message


@pytest.mark.parametrize("annotations", [
    {"egress_destination_ports": "tcp:0"}, {"egress_destination_ports": "tcp:65536"},
    {"egress_destination_ports": "http:80"}, {"egress_destination_ports": "tcp:"},
    {"egress_denied_networks": "10.0.0.0/33"}, {"egress_allowed_networks": "not-a-network"},
    {"egress_allowed_networks": "fe80::1%eth0"}, {"egress_ipv6": "yes"},
])
def test_bad_input_costs_that_service_its_egress_only(annotations: dict[str, str]) -> None:
    desired = state((service(**annotations), here("10.244.1.5")),
                    (service(API, vips=("10.96.0.11",)), here("10.244.1.8")))
    assert {r.service for r in desired.egress} == ({API} if "egress_ipv6" not in annotations else {API, WEB})
    assert [(p.service, p.reason) for p in desired.problems] == [(WEB, "InvalidAnnotation")]
    assert desired.vips == {ipaddress.ip_address("10.96.0.10"), ipaddress.ip_address("10.96.0.11")}


def test_allowed_networks_of_the_other_family_only_means_no_rule_not_every_destination() -> None:
    desired = state((service(vips=("2001:db8::10",), egress_ipv6="true", egress_allowed_networks="203.0.113.0/24"),
                     here("fd00:244::5")))
    assert desired.egress == frozenset()
    assert [p.reason for p in desired.problems] == ["InvalidAnnotation"]


def test_destination_ports_are_kube_vips_protocol_port_pairs_a_bare_port_being_tcp() -> None:
    assert parse_ports(("x", "UDP:53, 443,tcp:443,sctp:9")) == (("sctp", 9), ("tcp", 443), ("udp", 53))


def test_the_rendered_rule_matches_source_ports_and_networks() -> None:
    desired = state((service(egress_destination_ports="tcp:443,udp:53", egress_allowed_networks="203.0.113.0/24"),
                     here("10.244.1.5")))
    assert render(next(iter(desired.egress))) == (
        "ip saddr 10.244.1.5 ip daddr != { 10.96.0.0/12, 10.244.0.0/16 } ip daddr { 203.0.113.0/24 } "
        "meta l4proto . th dport { tcp . 443, udp . 53 } snat ip to 10.96.0.10")


def test_egress_settings_come_from_kube_vips_variables() -> None:
    config = load_config({"vip_nodename": "a", "egress_podcidr": "10.244.0.0/16", "egress_servicecidr": "10.112.0.0/12",
                          "egress_clustercidr": "192.168.0.0/24", "instance_name": "blue",
                          "egress_withnftables": "false"})
    assert config.egress == EgressSettings(*((ipaddress.ip_network(n),) for n in
                                             ("10.244.0.0/16", "10.112.0.0/12", "192.168.0.0/24")))
    assert config.decide_config().egress == config.egress and config.instance_name == "blue"
    assert any(n.startswith("egress_withnftables=false") for n in config.notices)
    assert load_config({"vip_nodename": "a"}).egress is None
    for name, value in (("instance_name", "release_01.prod-a"), ("INSTANCE_NAME", "release_b")):  # kube-vip's
        assert load_config({"vip_nodename": "a", name: value}).notices == ()
    with pytest.raises(ConfigError, match="instance_name"):
        load_config({"vip_nodename": "a", "instance_name": "a b"})


ANNOTATION = st.sampled_from(["egress", "egress-ipv6", "egress-destination-ports", "egress-allowed-networks",
                              "egress-denied-networks", "egress-detect-api-server"])
VALUE = st.one_of(st.sampled_from(["true", "false", "tcp:443", "udp:53,9", "10.0.0.0/8", "fd00::/8", ""]),
                  st.text(max_size=30))


@settings(max_examples=300, deadline=None)
@given(st.dictionaries(ANNOTATION, VALUE), st.booleans(), st.lists(st.sampled_from(
    ["10.244.1.5", "10.244.2.5", "fd00:244::5", "junk"]), max_size=3), st.sampled_from(["node-a", "node-b"]))
def test_any_annotations_give_rules_only_for_local_pods_of_the_vip_held_here(
        annotations: dict[str, str], leader: bool, pods: list[str], node: str) -> None:
    svc = ServiceView(WEB, external_traffic_policy="Local", ingress_ips=("10.96.0.10", "2001:db8::10"),
                      annotations={f"kube-vip.io/{k}": v for k, v in annotations.items()})
    desired = state((svc, here(*pods, node=node)), (service(API, vips=("10.96.0.11",)), here("10.244.1.8")),
                    election=ElectionMode.GLOBAL, leader=leader)
    for rule in desired.egress:
        assert leader and rule.vip.version == rule.pod.version
        assert rule.service == API or (node == "node-a" and str(rule.pod) in pods)
    assert (API in {r.service for r in desired.egress}) is leader  # another Service's input never costs API
    assert all(p.service == WEB for p in desired.problems)
