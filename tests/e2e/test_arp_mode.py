"""Layer-2 (ARP) mode end to end: VIP on eth0 of the elected node, gratuitous ARP moves the client,
TCP reaches the new node, the old node keeps no VIP, and a forced second holder is reported."""

from __future__ import annotations

import asyncio
import json
import re
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from kvip.lab.cluster import LabCluster
from kvip.lab.netns import popen_in_netns, run_in_netns
from kvip.lab.objects import Endpoint, endpoint_slice, load_balancer_service

pytestmark = pytest.mark.root

NODES = ("node-a", "node-b", "node-c")
VIP = "10.250.100.10"
ARP_RATE = 0.3
ENV = {"vip_routingtable": "false", "vip_arp": "true", "vip_interface": "eth0", "vip_leaderelection": "true",
       "vip_arpRate": str(int(ARP_RATE * 1000)), "vip_leaseduration": "3", "vip_renewdeadline": "2",
       "vip_retryperiod": "0.5"}


def holders(lab: LabCluster) -> set[str]:
    return {n for n in NODES
            if f"inet {VIP}/32" in subprocess.run(["ip", "-n", lab.node(n).netns, "addr", "show", "dev", "eth0"],
                                                   capture_output=True, text=True).stdout}


def mac(lab: LabCluster, node: str) -> str:
    link = json.loads(subprocess.run(["ip", "-n", lab.node(node).netns, "-j", "link", "show", "dev", "eth0"],
                                     capture_output=True, text=True, check=True).stdout)
    return link[0]["address"]


def client_neigh(lab: LabCluster) -> str | None:
    assert lab.topology is not None
    out = subprocess.run(["ip", "-n", lab.topology.router_netns, "neigh", "show", VIP], capture_output=True,
                         text=True).stdout
    found = re.search(r"lladdr (\S+)", out)
    return found.group(1) if found else None


async def single_holder(lab: LabCluster, among: set[str], timeout: float = 15.0) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        held = holders(lab) & among
        if len(held) == 1 and not holders(lab) - among:
            return held.pop()
        await asyncio.sleep(0.02)
    raise AssertionError(f"no single holder: {holders(lab)}")


@pytest.fixture
async def lab(tmp_path: Path) -> AsyncIterator[LabCluster]:
    async with LabCluster(NODES, workdir=tmp_path, resync_period=5.0, agent_env=ENV) as cluster:
        cluster.api.create(load_balancer_service("web", vips=[VIP], external_traffic_policy="Cluster", port=8080))
        cluster.api.create(endpoint_slice("web", [Endpoint("10.244.1.1", "node-c")], port=8080))
        servers = []
        for name in NODES:  # a "pod" listening on every node, saying which node answered
            root = tmp_path / f"www-{name}"
            root.mkdir()
            (root / "whoami").write_text(name)
            servers.append(popen_in_netns(cluster.node(name).netns, [
                sys.executable, "-m", "http.server", "8080", "--bind", "0.0.0.0", "--directory", str(root)],
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        for name in NODES:
            cluster.start_agent(name)
        try:
            yield cluster
        finally:
            for server in servers:
                server.kill()


async def curl_vip(lab: LabCluster) -> str:
    assert lab.topology is not None
    run = await asyncio.to_thread(run_in_netns, lab.topology.router_netns,
                                  ["curl", "-s", "-m", "3", f"http://{VIP}:8080/whoami"], check=False)
    return run.stdout


async def test_failover_moves_the_clients_neighbour_entry_and_tcp_reaches_the_new_node(lab: LabCluster) -> None:
    leader = await single_holder(lab, set(NODES))
    assert await curl_vip(lab) == leader
    assert client_neigh(lab) == mac(lab, leader)

    await lab.stop_agent(leader)  # clean stop: withdraw the address, release the lease
    assert leader not in holders(lab)  # the kube-vip #996 / #1775 failure: no VIP left behind
    survivors = set(NODES) - {leader}
    new = await single_holder(lab, survivors, timeout=5)
    took_over = time.monotonic()
    while client_neigh(lab) != mac(lab, new):
        assert time.monotonic() - took_over < ARP_RATE + 1.0, "client still points at the old MAC"
        await asyncio.sleep(0.02)
    assert await curl_vip(lab) == new


async def test_a_second_node_holding_the_vip_is_reported_as_a_conflict(lab: LabCluster) -> None:
    leader = await single_holder(lab, set(NODES))
    intruder = sorted(set(NODES) - {leader})[0]
    subprocess.run(["ip", "-n", lab.node(intruder).netns, "addr", "add", f"{VIP}/32", "dev", "eth0"], check=True)
    deadline = time.monotonic() + 10
    while True:
        metrics = run_in_netns(lab.node(leader).netns, ["curl", "-s", "http://127.0.0.1:2112/metrics"]).stdout
        found = re.search(r"^kvip_vip_conflicts_total (\S+)$", metrics, re.M)
        if found and float(found.group(1)) >= 1:
            break
        assert time.monotonic() < deadline, "no conflict reported"
        await asyncio.sleep(0.2)
    deadline = time.monotonic() + 5
    while not any(e["reason"] == "VIPConflict" for e in lab.api.list("events", "default")):
        assert time.monotonic() < deadline
        await asyncio.sleep(0.1)
    assert mac(lab, intruder) in lab.agent_log(leader)


async def test_arp_mode_with_election_explicitly_off_is_refused_with_a_clear_error(lab: LabCluster) -> None:
    # kube-vip's own switches off (vip_leaderelection=false, svc_election=false) mean its one global Lease, as
    # in kube-vip (tests/e2e/test_kubevip_configs.py); only asking kvip for no election at all is refused.
    await lab.stop_agent("node-a")
    agent = lab.start_agent("node-a", env={"vip_leaderelection": "false"}, args=["--election", "none"])
    for _ in range(200):
        if agent.process.poll() is not None:
            break
        await asyncio.sleep(0.05)
    assert agent.process.returncode == 2
    assert "several nodes would answer ARP" in lab.agent_log("node-a")


VIP6 = "fd00:250::10"


def client_neigh6(lab: LabCluster) -> str | None:
    assert lab.topology is not None
    out = subprocess.run(["ip", "-n", lab.topology.router_netns, "-6", "neigh", "show", VIP6], capture_output=True,
                         text=True).stdout
    found = re.search(r"lladdr (\S+)", out)
    return found.group(1) if found else None


async def test_ipv6_failover_moves_the_clients_neighbour_entry_with_unsolicited_na(lab: LabCluster) -> None:
    assert lab.topology is not None
    subprocess.run(["ip", "-n", lab.topology.router_netns, "addr", "add", "fd00:250::1/64", "dev", "br0", "nodad"],
                   check=True)
    for i, name in enumerate(NODES):
        subprocess.run(["ip", "-n", lab.node(name).netns, "addr", "add", f"fd00:250::{i + 11}/64", "dev", "eth0",
                        "nodad"], check=True)
    lab.api.create(load_balancer_service("web6", vips=[VIP6], external_traffic_policy="Cluster", port=8080))
    lab.api.create(endpoint_slice("web6", [Endpoint("fd00:244::1", "node-c")], port=8080, address_type="IPv6"))
    deadline = time.monotonic() + 15
    while True:
        held = {n for n in NODES if f"inet6 {VIP6}/128" in subprocess.run(
            ["ip", "-n", lab.node(n).netns, "addr", "show", "dev", "eth0"], capture_output=True, text=True).stdout}
        if len(held) == 1:
            leader = held.pop()
            break
        assert time.monotonic() < deadline
        await asyncio.sleep(0.05)
    ping = await asyncio.to_thread(run_in_netns, lab.topology.router_netns, ["ping", "-6", "-c1", "-W2", VIP6],
                                   check=False)
    assert ping.returncode == 0
    assert client_neigh6(lab) == mac(lab, leader)
    await lab.stop_agent(leader)
    new = await single_holder(lab, set(NODES) - {leader}, timeout=5)
    took_over = time.monotonic()
    while client_neigh6(lab) != mac(lab, new):
        assert time.monotonic() - took_over < ARP_RATE + 1.0, "client still points at the old MAC"
        await asyncio.sleep(0.02)


async def test_vip_address_deleted_by_hand_is_restored_at_once(lab: LabCluster) -> None:
    leader = await single_holder(lab, set(NODES))
    subprocess.run(["ip", "-n", lab.node(leader).netns, "addr", "del", f"{VIP}/32", "dev", "eth0"], check=True)
    start = time.monotonic()
    while leader not in holders(lab):
        assert time.monotonic() - start < 2.0, "address not restored"
        await asyncio.sleep(0.01)
