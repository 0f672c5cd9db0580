"""`kvip audit` and the agents' kvip_node_selector (issue #20): a node outside the selector advertises
nothing, its agent says which selector it applies in its heartbeat, and the audit expects nothing of it."""

from __future__ import annotations

import datetime as dt
from typing import Any

from kvip.cli.audit import Heartbeat, audit, heartbeats_from_leases
from kvip.kube.heartbeat import AgentFacts, NodeView
from kvip.lab.objects import Endpoint, endpoint_slice, load_balancer_service, node

WEB = "10.96.0.60"
SELECTOR = "kvip=yes"
# node-c runs a web pod, but is outside the agents' kvip_node_selector: its agent advertises nothing.
NODES = [node("node-a", labels={"kvip": "yes"}), node("node-b", labels={"kvip": "yes"}), node("node-c")]


def cluster() -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    pods = [Endpoint("10.244.1.1", "node-a"), Endpoint("10.244.2.1", "node-b"), Endpoint("10.244.3.1", "node-c")]
    return [load_balancer_service("web", vips=[WEB])], [endpoint_slice("web", pods)]


def beat(name: str, advertised: set[str], selector: str | None) -> Heartbeat:
    return Heartbeat(name, NodeView.of(advertised, advertised), 1.0, AgentFacts(node_selector=selector))


def expected_on_web(report: Any) -> list[str]:
    [row] = [v for v in report.to_json()["vips"] if v["vip"] == WEB]
    return row["expected"]


def test_a_node_outside_the_agents_selector_is_not_expected_to_advertise() -> None:
    beats = {"node-a": beat("node-a", {WEB}, SELECTOR), "node-b": beat("node-b", {WEB}, SELECTOR),
             "node-c": beat("node-c", set(), SELECTOR)}
    report = audit(*cluster(), NODES, beats)
    assert report.ok, report.to_json()
    assert expected_on_web(report) == ["node-a", "node-b"]


def test_a_node_without_a_heartbeat_gets_the_selector_the_other_agents_say() -> None:
    # node-c runs no agent at all: outside the selector it is not "silent", nothing is expected of it
    beats = {"node-a": beat("node-a", {WEB}, SELECTOR), "node-b": beat("node-b", {WEB}, SELECTOR)}
    report = audit(*cluster(), NODES, beats)
    assert report.ok and not report.silent_nodes


def test_agents_that_say_no_selector_or_nothing_are_audited_as_before() -> None:
    for said in ("", None):  # "" = no selector; None = a kvip before issue #20
        beats = {"node-a": beat("node-a", {WEB}, said), "node-b": beat("node-b", {WEB}, said),
                 "node-c": beat("node-c", set(), said)}
        report = audit(*cluster(), NODES, beats)
        # node-c is expected to advertise WEB, and its digest (nothing) cannot say it does
        assert not report.ok and [u.node for u in report.unresolved_nodes] == ["node-c"]
        assert report.to_json()["unresolvedNodes"][0]["expected"] == [WEB]


def test_the_selector_is_read_back_from_the_heartbeat_lease() -> None:
    now = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
    leases = [{"metadata": {"name": f"kvip-node-{n}", "namespace": "kube-system",
                            "labels": {"kvip.io/heartbeat": "true"},
                            "annotations": {**NodeView.of(vips, vips).annotations(),
                                            **AgentFacts.of(SELECTOR, None).annotations()}},
               "spec": {"renewTime": "2026-01-01T00:00:00.000000Z"}}
              for n, vips in (("node-a", [WEB]), ("node-b", [WEB]), ("node-c", []))]
    beats = heartbeats_from_leases(leases, now)
    assert beats["node-c"].facts.node_selector == SELECTOR
    assert audit(*cluster(), NODES, beats).ok
