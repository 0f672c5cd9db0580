"""The lab harness: namespaces joined through the router, sockets inside them, cleanup of stale runs."""

from __future__ import annotations

import os

import pytest

from kvip.lab.netns import popen_in_netns, run_in_netns, socket_in_netns
from kvip.lab.topology import cleanup_stale, create_topology, destroy_topology, topology

pytestmark = pytest.mark.root


def test_nodes_reach_the_router_and_each_other_only_inside_the_lab() -> None:
    with topology(["n1", "n2"]) as topo:
        assert run_in_netns(topo.node("n1").netns, ["ping", "-c1", "-W2", "10.250.0.1"]).returncode == 0
        assert run_in_netns(topo.node("n1").netns, ["ping", "-c1", "-W2", "10.250.0.12"]).returncode == 0
    assert not any(n.startswith(f"kvip-{topo.run_id}") for n in os.listdir("/run/netns"))


def test_socket_made_in_router_namespace_serves_a_client_in_a_node_namespace() -> None:
    with topology(["n1"]) as topo:
        server = socket_in_netns(topo.router_netns, "10.250.0.1", 6443)
        server.setblocking(True)
        client = popen_in_netns(topo.node("n1").netns, [
            "python3", "-c", "import socket; socket.create_connection(('10.250.0.1', 6443), 3).sendall(b'ping')"])
        conn, peer = server.accept()
        assert conn.recv(4) == b"ping" and peer[0] == "10.250.0.11"
        assert client.wait(5) == 0
        server.close()


def test_two_topologies_at_once_never_collide() -> None:
    with topology(["n1"]) as one, topology(["n1"]) as two:
        assert set(one.namespaces).isdisjoint(two.namespaces)


def test_stale_namespaces_of_a_dead_run_are_cleaned_and_live_ones_kept() -> None:
    stale = create_topology(["n1"], run_id="dead0001")
    (stale_marker := __import__("pathlib").Path("/run/kvip-lab/dead0001")).write_text("999999")
    live = create_topology(["n1"])
    try:
        removed = cleanup_stale()
        assert set(stale.namespaces) <= set(removed)
        assert not set(live.namespaces) & set(removed)
        assert not stale_marker.exists()
    finally:
        destroy_topology(stale)
        destroy_topology(live)
