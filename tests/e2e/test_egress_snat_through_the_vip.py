"""Service egress end to end: a pod's connection to the outside leaves with the Service's VIP as source.

Real agents in node namespaces, real nftables, real connections: each pod is a namespace of its own behind
its node (a veth, the node forwards for it); the outside is the lab router, where a tiny TCP server records
the source address each connection arrives from. The router routes the VIP to the node that holds it (what
BGP or ARP would do). Then the pod's IP changes (kube-vip #1428), the pod moves to another node, someone
flushes and deletes the table by hand, and a second instance (another instance_name) keeps its own table.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import time
from collections.abc import AsyncIterator, Iterator
from ipaddress import ip_address
from pathlib import Path

import pytest

from kvip.core.model import DesiredState, EgressRule, ServiceKey
from kvip.dataplane.egress import NftEgress
from kvip.lab.cluster import LabCluster, LabError
from kvip.lab.netns import socket_in_netns
from kvip.lab.objects import Endpoint, endpoint_slice, load_balancer_service
from kvip.lab.topology import destroy_namespace

pytestmark = pytest.mark.root

VIP = "10.96.0.10"
PORT = 8443
ENV = {"egress_podcidr": "10.244.0.0/16"}
EGRESS = {"kube-vip.io/egress": "true"}
GATEWAYS = {"node-a": "10.244.1.1", "node-b": "10.244.2.1"}


def run(*argv: str) -> str:
    return subprocess.run(list(argv), check=True, capture_output=True, text=True).stdout


class Pods:
    """Pod namespaces behind the lab's nodes, removed with the lab."""

    def __init__(self, lab: LabCluster) -> None:
        self.lab = lab
        self.made: list[str] = []

    def add(self, node_name: str, address: str) -> str:
        node = self.lab.node(node_name)
        assert self.lab.topology is not None
        netns, outside = f"{node.netns}-pod", f"kp{self.lab.topology.run_id[-6:]}{len(self.made)}"
        run("ip", "netns", "add", netns)
        self.made.append(netns)
        run("ip", "link", "add", outside, "netns", node.netns, "type", "veth", "peer", "name", "eth0", "netns", netns)
        run("ip", "-n", node.netns, "addr", "add", f"{GATEWAYS[node_name]}/24", "dev", outside)
        run("ip", "-n", node.netns, "link", "set", outside, "up")
        run("ip", "netns", "exec", node.netns, "sysctl", "-qw", "net.ipv4.ip_forward=1")
        run("ip", "-n", netns, "link", "set", "lo", "up")
        run("ip", "-n", netns, "addr", "add", f"{address}/24", "dev", "eth0")
        run("ip", "-n", netns, "link", "set", "eth0", "up")
        run("ip", "-n", netns, "route", "add", "default", "via", GATEWAYS[node_name])
        return netns

    def close(self) -> None:
        for netns in self.made:
            destroy_namespace(netns)


class Recorder:
    """A TCP server in the router namespace that records each connection's source address."""

    def __init__(self) -> None:
        self.peers: list[str] = []

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.peers.append(writer.get_extra_info("peername")[0])
        writer.close()


@pytest.fixture
async def lab(tmp_path: Path) -> AsyncIterator[LabCluster]:
    async with LabCluster(("node-a", "node-b"), workdir=tmp_path, agent_env=ENV) as cluster:
        cluster.api.create(load_balancer_service("web", vips=[VIP], annotations=EGRESS))
        cluster.api.create(endpoint_slice("web", [Endpoint("10.244.1.5", "node-a")]))
        yield cluster


@pytest.fixture
def pods(lab: LabCluster) -> Iterator[Pods]:
    made = Pods(lab)
    try:
        yield made
    finally:
        made.close()


@pytest.fixture
async def recorder(lab: LabCluster) -> AsyncIterator[Recorder]:
    assert lab.topology is not None
    found = Recorder()
    sock = socket_in_netns(lab.topology.router_netns, str(lab.topology.router_address), PORT)
    server = await asyncio.start_server(found.handle, sock=sock)
    yield found
    server.close()


def egress_rules(netns: str, table: str = "kvip_egress") -> set[tuple[str, str]]:
    """(pod, VIP) of every rule in our table, read from the comments kvip writes; empty without a table."""
    listed = subprocess.run(["ip", "netns", "exec", netns, "nft", "-j", "list", "table", "inet", table],
                            capture_output=True, text=True, check=False)
    if listed.returncode != 0:
        return set()
    rules = [e["rule"] for e in json.loads(listed.stdout)["nftables"] if "rule" in e]
    return {(r["comment"].split()[3], r["comment"].split()[2]) for r in rules if "comment" in r}


async def until(lab: LabCluster, want: dict[str, set[tuple[str, str]]], timeout: float = 10.0) -> float:
    start = time.monotonic()
    while (have := {n: egress_rules(lab.node(n).netns) for n in want}) != want:
        if time.monotonic() - start > timeout:
            logs = "\n".join(lab.agent_log(n)[-2000:] for n in want)
            raise LabError(f"egress rules: want {want}, have {have}\n{logs}")
        await asyncio.sleep(0.05)
    return time.monotonic() - start


async def source_seen(lab: LabCluster, recorder: Recorder, pod_netns: str) -> str | None:
    """Connect from the pod to the router's server; the source address the server saw (None: no answer)."""
    assert lab.topology is not None
    before = len(recorder.peers)
    client = await asyncio.create_subprocess_exec(
        "ip", "netns", "exec", pod_netns, "python3", "-c",
        f"import socket; socket.create_connection(('{lab.topology.router_address}', {PORT}), timeout=2).close()",
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    await client.wait()
    return recorder.peers[before] if len(recorder.peers) > before else None


def route_vip_to(lab: LabCluster, node_name: str) -> None:
    assert lab.topology is not None
    run("ip", "-n", lab.topology.router_netns, "route", "replace", f"{VIP}/32", "via", str(lab.node(node_name).address))


async def test_pod_traffic_leaves_with_the_vip_and_the_rules_follow_the_pod(
        lab: LabCluster, pods: Pods, recorder: Recorder) -> None:
    pod_a, pod_b = pods.add("node-a", "10.244.1.5"), pods.add("node-b", "10.244.2.5")
    route_vip_to(lab, "node-a")
    lab.start_agent("node-a")
    lab.start_agent("node-b")
    await until(lab, {"node-a": {("10.244.1.5", VIP)}, "node-b": set()}, timeout=20)
    assert await source_seen(lab, recorder, pod_a) == VIP

    # Someone flushes our table, then deletes it: each is put back at once (nft monitor), not at the next resync.
    node_a = lab.node("node-a").netns
    for verb in ("flush", "delete"):
        run("ip", "netns", "exec", node_a, "nft", verb, "table", "inet", "kvip_egress")
        restored = await until(lab, {"node-a": {("10.244.1.5", VIP)}}, timeout=3)
        assert restored < 3
    assert await source_seen(lab, recorder, pod_a) == VIP

    # The pod is recreated with another IP on the same node (kube-vip #1428): the rule follows the new IP.
    run("ip", "-n", pod_a, "addr", "flush", "dev", "eth0")
    run("ip", "-n", pod_a, "addr", "add", "10.244.1.6/24", "dev", "eth0")
    run("ip", "-n", pod_a, "route", "add", "default", "via", GATEWAYS["node-a"])
    current = lab.api.get("endpointslices", "web-kvip", "default")
    lab.api.replace({**current, **endpoint_slice("web", [Endpoint("10.244.1.6", "node-a")])})
    await until(lab, {"node-a": {("10.244.1.6", VIP)}, "node-b": set()})
    assert await source_seen(lab, recorder, pod_a) == VIP

    # The pod moves to node-b: node-a's rules (and table) are gone, node-b SNATs, the VIP is routed there.
    current = lab.api.get("endpointslices", "web-kvip", "default")
    lab.api.replace({**current, **endpoint_slice("web", [Endpoint("10.244.2.5", "node-b")])})
    await until(lab, {"node-a": set(), "node-b": {("10.244.2.5", VIP)}})
    route_vip_to(lab, "node-b")
    assert await source_seen(lab, recorder, pod_b) == VIP
    assert await source_seen(lab, recorder, pod_a) is None  # no SNAT on node-a: no way back for the reply


async def test_a_second_instance_keeps_its_own_table(lab: LabCluster) -> None:
    node_a = lab.node("node-a").netns
    lab.start_agent("node-a")
    await until(lab, {"node-a": {("10.244.1.5", VIP)}}, timeout=20)
    other = NftEgress(instance_name="second", netns=node_a)
    rule = EgressRule(ServiceKey("other", "svc"), ip_address("10.96.0.20"), ip_address("10.244.1.9"))
    items = other.desired(DesiredState({}, egress=frozenset({rule})))
    await other.apply(items, frozenset())
    assert await other.observe() == items  # it sees its own rule only, not the agent's

    run("ip", "netns", "exec", node_a, "nft", "flush", "table", "inet", "kvip_egress")
    await until(lab, {"node-a": {("10.244.1.5", VIP)}}, timeout=3)
    assert egress_rules(node_a, "kvip_egress_second") == {("10.244.1.9", "10.96.0.20")}
    await lab.stop_agent("node-a")  # withdraws its own rules on the way out, and only those
    assert egress_rules(node_a) == set()
    assert egress_rules(node_a, "kvip_egress_second") == {("10.244.1.9", "10.96.0.20")}
