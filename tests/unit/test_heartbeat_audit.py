"""`kvip audit` from digests: the heartbeat Lease no longer lists every VIP, yet the audit still names
the VIP a node drifts on, and says plainly when it cannot (kvip issue #21)."""

from __future__ import annotations

import datetime as dt
from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from kvip.cli.audit import Heartbeat, audit, heartbeats_from_leases
from kvip.kube.heartbeat import MAX_LISTED, NodeView, resolve_advertised
from kvip.lab.objects import Endpoint, endpoint_slice, load_balancer_service, node

NODES = [node(n) for n in ("node-a", "node-b", "node-c")]
WEB, API = "10.96.0.60", "10.96.0.61"


def cluster() -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """web: pods on node-a and node-b; api: a pod on node-a (externalTrafficPolicy Local)."""
    services = [load_balancer_service("web", vips=[WEB]), load_balancer_service("api", vips=[API])]
    slices = [endpoint_slice("web", [Endpoint("10.244.1.1", "node-a"), Endpoint("10.244.2.1", "node-b")]),
              endpoint_slice("api", [Endpoint("10.244.1.2", "node-a")])]
    return services, slices


def beat(name: str, advertised: set[str], desired: set[str], age: float = 1.0) -> Heartbeat:
    return Heartbeat(name, NodeView.of(advertised, desired), age)


def rows(report: Any) -> dict[str, tuple[list[str], list[str]]]:
    return {v["vip"]: (v["expected"], v["reported"]) for v in report.to_json()["vips"]}


def test_every_node_advertising_what_it_should_is_ok() -> None:
    beats = {"node-a": beat("node-a", {WEB, API}, {WEB, API}), "node-b": beat("node-b", {WEB}, {WEB}),
             "node-c": beat("node-c", set(), set())}
    report = audit(*cluster(), NODES, beats)
    assert report.ok
    assert rows(report) == {WEB: (["node-a", "node-b"], ["node-a", "node-b"]), API: (["node-a"], ["node-a"])}


def test_a_node_that_lost_one_vip_is_named_on_that_vip_only() -> None:
    beats = {"node-a": beat("node-a", {API}, {WEB, API}), "node-b": beat("node-b", {WEB}, {WEB}),
             "node-c": beat("node-c", set(), set())}
    report = audit(*cluster(), NODES, beats)
    assert not report.ok and not report.unresolved_nodes
    assert rows(report) == {WEB: (["node-a", "node-b"], ["node-b"]), API: (["node-a"], ["node-a"])}


def test_a_node_advertising_a_vip_nobody_should_is_named_on_it() -> None:
    beats = {"node-a": beat("node-a", {WEB, API}, {WEB, API}), "node-b": beat("node-b", {WEB}, {WEB}),
             "node-c": beat("node-c", {"10.96.9.9"}, set())}
    report = audit(*cluster(), NODES, beats)
    assert rows(report)["10.96.9.9"] == ([], ["node-c"]) and not report.ok


def test_a_node_whose_own_view_differs_from_the_audit_is_unresolved_with_what_it_should_advertise() -> None:
    # node-a's cache still has an old VIP and advertises it instead of API: its desired set is not the
    # audit's, so missing/extra (relative to its own view) cannot be applied; the digest says "different".
    beats = {"node-a": beat("node-a", {WEB, "10.96.5.5"}, {WEB, "10.96.5.5"}), "node-b": beat("node-b", {WEB}, {WEB}),
             "node-c": beat("node-c", set(), set())}
    report = audit(*cluster(), NODES, beats)
    assert not report.ok
    assert report.to_json()["unresolvedNodes"] == [{"node": "node-a", "expected": [WEB, API], "expectedCount": 2,
                                                    "advertisedCount": 2}]
    # the other nodes are still judged, node-a apart (like a stale node)
    assert rows(report) == {WEB: (["node-b"], ["node-b"]), API: ([], [])}


def test_a_node_advertising_exactly_what_it_should_checks_out_even_when_its_lists_were_cut() -> None:
    # node-a wants many more VIPs than the audit expects of it (a stale cache): more than the Lease lists.
    stale = {f"10.96.7.{i}" for i in range(MAX_LISTED + 4)}
    beats = {"node-a": beat("node-a", {WEB, API}, {WEB, API} | stale), "node-b": beat("node-b", {WEB}, {WEB}),
             "node-c": beat("node-c", set(), set())}
    assert audit(*cluster(), NODES, beats).ok


def test_heartbeats_are_read_back_from_the_lease_annotations() -> None:
    now = dt.datetime(2025, 1, 1, tzinfo=dt.UTC)
    lease = {"metadata": {"name": "kvip-node-node-b", "labels": {"kvip.io/heartbeat": "true"},
                          "annotations": NodeView.of({WEB}, {WEB, API}).annotations()},
             "spec": {"renewTime": "2024-12-31T23:59:50.000000Z"}}
    broken = {"metadata": {"name": "kvip-node-node-c", "labels": {"kvip.io/heartbeat": "true"},
                           "annotations": {"kvip.io/advertised-count": "many"}},
              "spec": {"renewTime": "2024-12-31T23:59:50.000000Z"}}
    beats = heartbeats_from_leases([lease, broken], now)
    assert beats["node-b"] == Heartbeat("node-b", NodeView.of({WEB}, {WEB, API}), 10.0)
    assert beats["node-c"].view is None
    report = audit(*cluster(), NODES, beats)
    assert [(u.node, u.advertised_count) for u in report.unresolved_nodes] == [("node-c", None)]


VIP_SETS = st.sets(st.integers(0, 60).map(lambda i: f"10.96.1.{i}"), max_size=40)


@given(VIP_SETS, VIP_SETS)
def test_the_advertised_set_is_recovered_whenever_the_differences_fit_in_the_lease(advertised: set[str],
                                                                                   desired: set[str]) -> None:
    got = resolve_advertised(NodeView.of(advertised, desired), desired)
    if len(desired - advertised) <= MAX_LISTED and len(advertised - desired) <= MAX_LISTED:
        assert got == advertised
    else:
        assert got is None  # never a wrong set: a candidate counts only if the digest confirms it


@given(VIP_SETS, VIP_SETS, VIP_SETS)
def test_against_any_expectation_the_answer_is_the_true_set_or_none(advertised: set[str], desired: set[str],
                                                                    expected: set[str]) -> None:
    assert resolve_advertised(NodeView.of(advertised, desired), expected) in (advertised, None)
