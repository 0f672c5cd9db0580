"""DHCP leases and egress rules as kvip status, the metrics and kvip audit show them (kvip issue #19):
the rows, the drift lines, the counts, and their bounds — from plain values."""

from __future__ import annotations

import datetime as dt
import ipaddress
import json
from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from kvip.agent.status_doc import StatusLimits, dataplane_sections, with_dataplane
from kvip.cli.audit import Heartbeat, audit, heartbeats_from_leases
from kvip.core.dataplane_report import (
    MAX_DRIFT_ITEMS,
    LeaseView,
    bounded,
    dhcp_drift,
    egress_drift,
    egress_repairs,
    egress_views,
    lease_events,
    lease_view,
    other_view,
)
from kvip.core.dhcp import DhcpAsk, DhcpLease
from kvip.core.dhcp_lease import ClientState, Lease, Phase
from kvip.core.model import EgressRule, ElectionMode, ServiceKey
from kvip.kube.heartbeat import NodeView
from kvip.lab.objects import Endpoint, endpoint_slice, load_balancer_service, node

WEB, API = ServiceKey("default", "web"), ServiceKey("team-a", "api")
ASK = DhcpAsk(bytes.fromhex("020000000001"), "vip-12345678")
IP = ipaddress.ip_address


def bound(at: float = 100.0, renewals: int = 0) -> ClientState:
    lease = Lease(ipaddress.IPv4Address("10.250.200.11"), ipaddress.IPv4Address("10.250.0.1"), at, 120, 60, 105)
    return ClientState(Phase.BOUND, 7, lease, renewals=renewals)


def rule(service: ServiceKey, vip: str, pod: str) -> EgressRule:
    return EgressRule(service, IP(vip), IP(pod))


def test_a_bound_lease_shows_its_interface_mac_address_server_and_time_left() -> None:
    row = lease_view(WEB, ASK, bound(at=100.0, renewals=2), now=150.0)
    assert row == LeaseView(WEB, "vip-12345678", "02:00:00:00:00:01", "10.250.200.11", "bound", 70.0,
                            "10.250.0.1", 2, None, renew_in=10.0)
    waiting = lease_view(WEB, ASK, ClientState(Phase.SELECTING, lost="the DHCP server refused 10.1.1.1 (DHCPNAK)"), 1)
    assert (waiting.address, waiting.state, waiting.expires_in, waiting.lost) == (
        None, "selecting", None, "the DHCP server refused 10.1.1.1 (DHCPNAK)")
    assert lease_view(WEB, ASK, bound(at=0.0), now=500.0).expires_in == 0.0  # never negative


def test_a_service_without_a_client_shows_why() -> None:
    failed = other_view(WEB, DhcpLease(None, "", "no DHCP client: no such interface"))
    assert (failed.state, failed.address, failed.lost) == ("no-client", None, "no DHCP client: no such interface")


def test_egress_rules_are_grouped_by_service_and_vip_with_their_pods() -> None:
    rules = [rule(WEB, "10.96.0.10", "10.244.1.6"), rule(WEB, "10.96.0.10", "10.244.1.5"),
             rule(API, "10.96.0.20", "10.244.1.7")]
    views = egress_views(rules, "inet kvip_egress")
    assert [(str(v.service), v.vip, v.pods, v.table) for v in views] == [
        ("default/web", "10.96.0.10", ("10.244.1.5", "10.244.1.6"), "inet kvip_egress"),
        ("team-a/api", "10.96.0.20", ("10.244.1.7",), "inet kvip_egress")]


def test_dhcp_drift_names_a_service_led_here_without_a_lease_and_an_unused_macvlan_of_ours() -> None:
    leases = {WEB: DhcpLease(None, "vip-1", "lease of 10.1.1.1 expired: no DHCP server answered for 60s after T1")}
    assert dhcp_drift([WEB], leases, ["vip-1", "vip-2"], ["vip-1"]) == (
        "dhcp default/web: led here, no lease: lease of 10.1.1.1 expired: no DHCP server answered for 60s after T1",
        "dhcp macvlan vip-2: ours, no Service uses it")
    assert dhcp_drift([], {WEB: DhcpLease(IP("10.1.1.1"), "vip-1")}, ["vip-1"], ["vip-1"]) == ()


def test_egress_drift_is_one_line_per_rule_nftables_refused() -> None:
    assert egress_drift({"egress ab12 snat to 10.96.0.10": "Error: No such file"}) == (
        "egress egress ab12 snat to 10.96.0.10: Error: No such file",)
    assert egress_drift({}) == ()


@given(st.lists(st.text(max_size=400), max_size=60))
def test_drift_lines_are_bounded_in_number_and_width_and_say_how_many_were_left_out(lines: list[str]) -> None:
    shown = bounded(lines)
    assert len(shown) <= MAX_DRIFT_ITEMS and all(len(line) <= 200 for line in shown)
    if len(lines) > MAX_DRIFT_ITEMS:
        assert shown[-1] == f"... and {len(lines) - MAX_DRIFT_ITEMS + 1} more"
    else:
        assert len(shown) == len(lines)


def test_renewals_and_lost_leases_are_counted_between_two_samples() -> None:
    before = {WEB: bound(renewals=1), API: bound(renewals=0)}
    expired = ClientState(Phase.SELECTING, lost="lease of 10.250.200.11 expired")
    after = {WEB: bound(renewals=3), API: expired, ServiceKey("x", "new"): bound(renewals=1)}
    events = lease_events(before, after)
    assert (events.renewals, events.lost) == (3, 1)  # 2 on web, 1 on the new client; api's lease lost
    assert lease_events(after, after) == lease_events({}, {})  # nothing new: nothing counted


def test_an_egress_change_is_a_repair_only_when_the_desired_rules_did_not_change() -> None:
    rules = frozenset({rule(WEB, "10.96.0.10", "10.244.1.5")})
    assert egress_repairs(rules, rules, {"a"}) == 1  # the table was flushed: the rule put back
    assert egress_repairs(frozenset(), rules, {"a"}) == 0  # a new pod: a new rule, not a repair
    assert egress_repairs(None, rules, {"a"}) == 0  # the first pass writes what a restart left out
    assert egress_repairs(rules, rules, {"a", "b"}, retried={"b"}) == 1  # nft refused b last time: a retry


def test_the_status_sections_are_bounded_and_count_what_they_left_out() -> None:
    limits = StatusLimits(services=3, items=2, text=16)
    leases = [lease_view(ServiceKey("default", f"svc-{i}-" + "x" * 100), ASK, bound(), 150.0) for i in range(5)]
    leases.append(other_view(WEB, DhcpLease(None, "vip-web", "no DHCP client: no such interface")))
    rules = [rule(ServiceKey("default", f"s{i}"), "10.96.0.10", f"10.244.1.{p}") for i in range(5) for p in (1, 2, 3)]
    drift = [f"dhcp default/s{i}: led here, no lease" for i in range(5)]
    sections = dataplane_sections(leases, egress_views(rules, "inet kvip_egress"), drift, limits)
    assert len(sections["dhcp"]) == 3 and len(sections["egress"]) == 3
    assert all(len(r["pods"]) == 2 for r in sections["egress"]) and len(sections["dataplaneDrift"]) == 2
    assert sections["truncated"] == {"dhcp": 3, "egress": 2, "egressPods": 3, "dataplaneDrift": 3}
    assert all(len(r["service"]) < 16 + 30 for r in sections["dhcp"])  # cut, with its length said
    doc = with_dataplane({"node": "node-a", "truncated": {"services": 0}}, sections)
    assert doc["truncated"]["services"] == 0 and doc["truncated"]["dhcp"] == 3 and "dhcp" in doc
    assert len(json.dumps(sections)) <= limits.dataplane_bytes()


def test_a_full_document_with_both_sections_stays_within_max_bytes() -> None:
    limits = StatusLimits()
    big = "\u2028" * 5000  # escapes to 6 bytes a character
    leases = [lease_view(ServiceKey(big, f"{i}"), DhcpAsk(ASK.mac, big), ClientState(lost=big), 1.0)
              for i in range(limits.services + 5)]
    rules = [EgressRule(ServiceKey(big, f"{i}"), IP("10.96.0.1"), IP(f"10.244.0.{p}")) for i in range(300)
             for p in range(1, 20)]
    sections = dataplane_sections(leases, egress_views(rules, big), [big] * 100, limits)
    assert len(json.dumps(sections)) <= limits.dataplane_bytes()


def test_the_audit_fails_on_drift_a_node_reports_and_names_the_node() -> None:
    now = dt.datetime(2025, 1, 1, tzinfo=dt.UTC)
    drift = ("dhcp default/web: led here, no lease", "egress egress ab12 snat to 10.96.0.10: refused")
    lease: dict[str, Any] = {"metadata": {"name": "kvip-node-node-a", "labels": {"kvip.io/heartbeat": "true"},
                                          "annotations": NodeView.of((), (), drift=drift).annotations()},
                             "spec": {"renewTime": "2024-12-31T23:59:50.000000Z"}}
    beats = heartbeats_from_leases([lease], now)
    assert beats["node-a"].view is not None and beats["node-a"].view.drift == drift  # read back from the Lease
    report = audit([], [], [node("node-a")], beats)
    assert not report.ok
    assert report.to_json()["dataplaneDrift"] == [f"node-a: {line}" for line in drift]
    clean = audit([], [], [node("node-a")], {"node-a": Heartbeat("node-a", NodeView.of((), ()), 1.0)})
    assert clean.ok and clean.dataplane == ()
    stale = audit([], [], [node("node-a")], {"node-a": Heartbeat("node-a", NodeView.of((), (), drift=drift), 900)})
    assert stale.dataplane == ()  # a stale node's claims are unknown: reported as stale, not as drift


def test_the_audit_expects_a_dhcp_services_leased_address_on_its_lease_holder_only() -> None:
    web = load_balancer_service("web", vips=["0.0.0.0"], via="spec", external_traffic_policy="Cluster")
    web["status"] = {"loadBalancer": {"ingress": [{"ip": "10.250.200.11"}]}}  # written by kvip after the lease
    slices = [endpoint_slice("web", [Endpoint("10.244.1.1", "node-a"), Endpoint("10.244.2.1", "node-b")])]
    nodes = [node("node-a"), node("node-b")]
    beats = {"node-a": Heartbeat("node-a", NodeView.of({"10.250.200.11"}, {"10.250.200.11"}), 1.0),
             "node-b": Heartbeat("node-b", NodeView.of((), ()), 1.0)}
    report = audit([web], slices, nodes, beats, election=ElectionMode.SERVICE,
                   lease_holders={("default", "kubevip-web"): "node-a"})
    assert report.ok, report.to_json()
    assert [(v.vip, sorted(v.expected)) for v in report.vips] == [("10.250.200.11", ["node-a"])]
    moved = {"node-a": Heartbeat("node-a", NodeView.of((), ()), 1.0), "node-b": beats["node-a"]}
    assert not audit([web], slices, nodes, moved, election=ElectionMode.SERVICE,  # advertised by the wrong node
                     lease_holders={("default", "kubevip-web"): "node-a"}).ok
