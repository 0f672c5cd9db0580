"""`kvip audit` with the control-plane VIP: the Lease holder must advertise it (election); in anycast any
control-plane node may (its API server's health is its own), a worker never."""

from __future__ import annotations

from typing import Any

from kvip.cli.audit import ControlPlaneAudit, Heartbeat, audit
from kvip.kube.heartbeat import NodeView
from kvip.lab.objects import node

CP = "192.168.0.40"
ROLE = {"node-role.kubernetes.io/control-plane": ""}
NODES = [node("cp-1", labels=ROLE), node("cp-2", labels=ROLE), node("worker", labels={})]
ELECTED = ControlPlaneAudit((CP,), ("kube-system", "plndr-cp-lock"))
ANYCAST = ControlPlaneAudit((CP,))


def beats(*advertising: str) -> dict[str, Heartbeat]:
    return {n: Heartbeat(n, NodeView.of({CP} if n in advertising else set(), {CP} if n in advertising else set()), 1.0)
            for n in ("cp-1", "cp-2", "worker")}


def row(report: Any) -> tuple[list[str], list[str], list[str]]:
    (only,) = report.to_json()["vips"]
    return only["expected"], only["reported"], only["services"]


def test_election_the_lease_holder_and_only_it_advertises() -> None:
    holders = {("kube-system", "plndr-cp-lock"): "cp-2"}
    good = audit([], [], NODES, beats("cp-2"), lease_holders=holders, control_plane=ELECTED)
    assert good.ok and row(good) == (["cp-2"], ["cp-2"], ["control-plane"])
    two = audit([], [], NODES, beats("cp-1", "cp-2"), lease_holders=holders, control_plane=ELECTED)
    assert not two.ok  # two holders of an ARP VIP: the split brain the audit exists for
    none = audit([], [], NODES, beats(), lease_holders=holders, control_plane=ELECTED)
    assert not none.ok and [u.node for u in none.unresolved_nodes] == ["cp-2"]


def test_anycast_any_control_plane_node_may_advertise_a_worker_never() -> None:
    assert audit([], [], NODES, beats("cp-1", "cp-2"), control_plane=ANYCAST).ok
    assert audit([], [], NODES, beats("cp-1"), control_plane=ANYCAST).ok  # cp-2's API server is down
    assert not audit([], [], NODES, beats("cp-1", "worker"), control_plane=ANYCAST).ok
