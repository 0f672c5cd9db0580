"""FRR bgpd as a lab router (kvip.lab.frr): it learns one VIP from two BIRD 2 nodes as an ECMP pair
with its communities, sends nothing back, and learns a /128 over an IPv6 session."""

from __future__ import annotations

import json
import subprocess
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path

import pytest

from kvip.lab.bird import BirdProcess
from kvip.lab.frr import FrrPath, FrrRouter, frr_router_config
from kvip.lab.topology import NodeNamespace, Topology, topology

pytestmark = pytest.mark.root

ROUTER_ASN = 65000
NODE_ASN = 65100  # one AS for both nodes: the two paths differ only by peer, so eBGP multipath applies
VIP4 = "10.96.0.1/32"
VIP6 = "fd00:96::1/128"
GRACEFUL_SHUTDOWN = "65535:0"
LARGE = "65000:1:2"


def wait_until(predicate: Callable[[], bool], timeout: float = 10.0, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"{what} not reached within {timeout}s"
        time.sleep(0.1)


def node_config(node: NodeNamespace, *, neighbor: str, family: str, route: str) -> str:
    """A node announcing one blackhole route to the router, next hop self."""
    return f"""
router id {node.address};
protocol device {{ scan time 1; }}
protocol static {{
    {family};
    route {route} blackhole {{ bgp_community.add((65535,0)); bgp_large_community.add((65000,1,2)); }};
}}
protocol bgp uplink {{
    local as {NODE_ASN};
    neighbor {neighbor} as {ROUTER_ASN};
    hold time 9; keepalive time 3; connect retry time 1; error wait time 1, 5;
    {family} {{ import all; export all; next hop self; }};
}}
"""


@contextmanager
def lab(topo: Topology, workdir: Path, peers: list[str], nodes: dict[str, str]) -> Iterator[FrrRouter]:
    """FRR in the router namespace peering with `peers`, and one BIRD per node namespace → config."""
    with ExitStack() as stack:
        router = FrrRouter(topo.router_netns, workdir / "frr",
                           frr_router_config(router_id=str(topo.router_address), asn=ROUTER_ASN,
                                             peers=[(address, NODE_ASN) for address in peers]))
        router.start()
        stack.callback(router.stop)
        for netns, config in nodes.items():
            bird = BirdProcess(netns, workdir / netns, config)
            bird.start()
            stack.callback(bird.stop)
        yield router


def test_frr_selects_both_nodes_paths_with_their_communities(tmp_path: Path) -> None:
    with topology(["node-a", "node-b"]) as topo:
        addresses = {str(n.address) for n in topo.nodes}
        configs = {n.netns: node_config(n, neighbor=str(topo.router_address), family="ipv4", route=VIP4)
                   for n in topo.nodes}
        with lab(topo, tmp_path, sorted(addresses), configs) as router:
            wait_until(lambda: router.established_peers() == addresses, what="both sessions Established")
            # Both used: FRR's ECMP set is both nodes (best path + its eBGP multipath sibling).
            wait_until(lambda: router.ecmp().get(VIP4) == frozenset(addresses), what="both paths selected")

            paths: tuple[FrrPath, ...] = router.paths()[VIP4]
            assert {p.peer for p in paths} == {p.next_hop for p in paths} == addresses
            assert all(p.selected and p.valid for p in paths) and sorted(p.best for p in paths) == [False, True]
            for path in paths:
                # FRR prints 65535:0 as "graceful-shutdown"; FrrPath carries the numeric form.
                assert path.communities == {GRACEFUL_SHUTDOWN} and path.large_communities == {LARGE}
                # RFC 8326 on receipt: FRR sets local-pref 0 on eBGP paths tagged graceful-shutdown.
                assert path.local_pref == 0
            # The route-map on every session keeps the router from advertising anything back.
            summary = json.loads(router.vtysh("show bgp summary json"))["ipv4Unicast"]["peers"]
            assert {a: summary[a]["pfxSnt"] for a in addresses} == dict.fromkeys(addresses, 0)
            assert router.paths("ipv6") == {}


def test_frr_learns_a_128_over_an_ipv6_session(tmp_path: Path) -> None:
    with topology(["node-a"]) as topo:
        node = topo.node("node-a")
        assert node.address6 is not None  # the topology puts fd00:251::/64 on br0 and every eth0 (nodad)
        address6 = str(node.address6)
        config = node_config(node, neighbor=str(topo.router_address6), family="ipv6", route=VIP6)
        # Once eth0's link-local address is past DAD, BIRD adds it to the next hop: the update FRR
        # would withdraw ("no peer interface information") without zebra telling bgpd the interfaces.
        tentative = ["ip", "-n", node.netns, "-6", "addr", "show", "tentative"]
        wait_until(lambda: not subprocess.run(tentative, capture_output=True, text=True).stdout.strip(),
                   what="IPv6 DAD on the node")
        with lab(topo, tmp_path, [address6], {node.netns: config}) as router:
            wait_until(lambda: router.established_peers() == {address6}, what="the IPv6 session Established")
            wait_until(lambda: router.ecmp("ipv6") == {VIP6: frozenset({address6})}, what="the /128 selected")

            (path,) = router.paths("ipv6")[VIP6]
            assert path.peer == path.next_hop == address6 and path.best
            assert path.communities == {GRACEFUL_SHUTDOWN} and path.large_communities == {LARGE}
            (raw,) = json.loads(router.vtysh(f"show bgp ipv6 unicast {VIP6} json"))["paths"]
            assert {h["scope"] for h in raw["nexthops"]} == {"global", "link-local"}, raw["nexthops"]
            assert router.paths("ipv4") == {}
