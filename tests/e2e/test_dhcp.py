"""DHCP-assigned Service addresses end to end (ARP mode, per-Service election): a Service asking for
0.0.0.0 leases its address from the lab's dnsmasq through a macvlan with a stable MAC; the address is
advertised, written to status and annotations, renewed at T1, kept by the next leader, released when the
Service is deleted, and withdrawn (with an Event saying why) when the server is gone past the lease.

dnsmasq raises lease times under 120 s to 120 s, so renewals are made frequent with T1/T2 (options 58/59)
and the expiry story waits out 120 s (it alone takes ~2.5 minutes)."""

from __future__ import annotations

import asyncio
import re
import subprocess
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from dhcp_lab import NODES, dhcp_lab, holder_of, ingress, service, until

from kvip.lab.cluster import LabCluster
from kvip.lab.dnsmasq import Dnsmasq, LeaseRow
from kvip.lab.objects import load_balancer_service

pytestmark = pytest.mark.root

HOSTNAME = "web-dhcp"


def our_lease(dhcp: Dnsmasq) -> LeaseRow | None:
    return next((row for row in dhcp.leases() if row.hostname == HOSTNAME), None)


@pytest.fixture
async def lab(tmp_path: Path) -> AsyncIterator[tuple[LabCluster, Dnsmasq]]:
    web = load_balancer_service("web", vips=["0.0.0.0"], via="spec", external_traffic_policy="Cluster",
                                annotations={"kube-vip.io/loadbalancerHostname": HOSTNAME})
    async with dhcp_lab(tmp_path, (web,), t1=3, t2=5) as running:
        yield running


async def leased_and_advertised(lab: LabCluster, dhcp: Dnsmasq) -> tuple[LeaseRow, str]:
    row = await until("a lease at the server", lambda: our_lease(dhcp), 15)
    address = str(row.address)
    leader = await until("the leased address on a macvlan", lambda: holder_of(lab, address), 10)
    return row, leader


async def test_leased_advertised_renewed_kept_by_the_next_leader_and_released_on_delete(
        lab: tuple[LabCluster, Dnsmasq]) -> None:
    cluster, dhcp = lab
    row, leader = await leased_and_advertised(cluster, dhcp)
    address = str(row.address)
    # status and kube-vip's annotations say what was leased, with which MAC
    await until("status ingress", lambda: ingress(cluster) == [address], 10)
    notes = await until("annotations", lambda: service(cluster)["metadata"]["annotations"]
                        if "kube-vip.io/requestedIP" in service(cluster)["metadata"]["annotations"] else None, 10)
    assert notes["kube-vip.io/requestedIP"] == address and notes["kube-vip.io/hwaddr"] == row.mac
    # the LAN reaches it at the leased MAC
    assert cluster.topology is not None
    ping = ["ip", "netns", "exec", cluster.topology.router_netns, "ping", "-c1", "-W2", address]
    await asyncio.to_thread(subprocess.run, ping, check=True, capture_output=True)
    neigh = subprocess.run(["ip", "-n", cluster.topology.router_netns, "neigh", "show", address],  # noqa: ASYNC221
                           capture_output=True, text=True, check=True).stdout
    assert row.mac in neigh
    # renewed at T1 (3 s): the server ACKs the same address again, and the lease's expiry moves on
    await until("a renewal", lambda: len(re.findall(rf"DHCPACK\(br0\) {re.escape(address)} ", dhcp.log())) >= 2, 8)
    renewed = await until("a later expiry", lambda: (r := our_lease(dhcp)) and r.expires > row.expires and r, 8)
    assert renewed.address == row.address

    # the leader goes: the other node takes the Lease and leases the same address with the same MAC
    await cluster.stop_agent(leader)
    other = next(n for n in NODES if n != leader)
    await until("the address on the other node", lambda: holder_of(cluster, address) == other, 15)
    assert our_lease(dhcp) is not None and our_lease(dhcp).address == row.address  # type: ignore[union-attr]
    assert ingress(cluster) == [address]

    # deleted: DHCPRELEASE reaches the server, the macvlan and the address go
    cluster.api.delete("services", "web", "default")
    await until("the lease released", lambda: our_lease(dhcp) is None, 10)
    assert "DHCPRELEASE" in dhcp.log()
    await until("the address withdrawn", lambda: holder_of(cluster, address) is None, 5)


async def test_a_server_gone_past_the_lease_withdraws_the_address_with_an_event(
        lab: tuple[LabCluster, Dnsmasq]) -> None:
    cluster, dhcp = lab
    row, leader = await leased_and_advertised(cluster, dhcp)
    address = str(row.address)
    dhcp.stop()  # no more renewals: at T2 rebinding, at 120 s (dnsmasq's shortest lease) expiry
    await asyncio.sleep(100)
    assert holder_of(cluster, address) == leader, "withdrawn before the lease ran out"
    await until("the address withdrawn", lambda: holder_of(cluster, address) is None, 30)
    events = await until("an Event saying why", lambda: [e for e in cluster.api.list("events", "default")
                                                         if e["reason"] == "DHCPLeaseLost"], 5)
    assert address in events[0]["message"] and "expired" in events[0]["message"], events
