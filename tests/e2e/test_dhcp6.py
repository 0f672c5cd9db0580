"""DHCPv6-assigned Service addresses end to end (ARP/NDP mode, per-Service election): a Service asking for
`::` leases an IPv6 address from the lab's dnsmasq through its macvlan (client ID = DUID-LL of the
macvlan's MAC); the address is advertised on the macvlan, written to status and annotations, kept by the
next leader (the same DUID and IAID: the same address), and released at the server when the Service is
deleted; `0.0.0.0,::` leases both families on one macvlan. No lease is waited out (dnsmasq's shortest is
120 s): renewal and expiry are unit-tested."""

from __future__ import annotations

import asyncio
import ipaddress
import subprocess
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from dhcp_lab import (
    NODES,
    dhcp_lab,
    dhcp_rows,
    held_on,
    holder_of,
    ingress,
    service,
    until,
)

from kvip.core.dhcp import derived_mac
from kvip.core.dhcp6 import duid_ll
from kvip.lab.cluster import LabCluster
from kvip.lab.dnsmasq import Dnsmasq, Lease6Row
from kvip.lab.objects import load_balancer_service

pytestmark = pytest.mark.root

HOSTNAME = "web-dhcp6"
FIRST, LAST = "fd00:251::100", "fd00:251::1ff"


def our_lease(dhcp: Dnsmasq) -> Lease6Row | None:
    return next((row for row in dhcp.leases6() if row.hostname.split(".")[0] == HOSTNAME), None)


@pytest.fixture
async def lab(tmp_path: Path) -> AsyncIterator[tuple[LabCluster, Dnsmasq]]:
    async with dhcp_lab(tmp_path, first6=FIRST, last6=LAST) as running:
        yield running


def create(lab: LabCluster, vips: str) -> None:
    lab.api.create(load_balancer_service("web", vips=vips.split(","), via="annotation", external_traffic_policy="Cluster",
                                         annotations={"kube-vip.io/loadbalancerHostname": HOSTNAME}))


async def test_a_v6_lease_is_advertised_written_kept_by_the_next_leader_and_released_on_delete(
        lab: tuple[LabCluster, Dnsmasq]) -> None:
    cluster, dhcp = lab
    create(cluster, "::")
    row = await until("a DHCPv6 lease at the server", lambda: our_lease(dhcp), 15)
    address = str(row.address)
    assert ipaddress.IPv6Address(FIRST) <= row.address <= ipaddress.IPv6Address(LAST)
    leader = await until("the leased address on a macvlan", lambda: holder_of(cluster, address), 10)
    # the server knows the client by the DUID-LL of the macvlan's MAC (derived from the UID: no hwaddr given)
    uid = service(cluster)["metadata"]["uid"]
    assert row.duid == duid_ll(derived_mac(uid)).hex(":")
    # status and kube-vip's annotations say what was leased, with which MAC
    await until("status ingress", lambda: ingress(cluster) == [address], 10)
    notes = await until("annotations", lambda: service(cluster)["metadata"]["annotations"]
                        if "kube-vip.io/requestedIP" in service(cluster)["metadata"]["annotations"] else None, 10)
    assert notes["kube-vip.io/requestedIP"] == address
    assert notes["kube-vip.io/hwaddr"] == derived_mac(uid).hex(":")
    # the LAN reaches it (NDP answers for the leased MAC's macvlan)
    assert cluster.topology is not None
    ping = ["ip", "netns", "exec", cluster.topology.router_netns, "ping", "-6", "-c1", "-W2", address]
    await asyncio.to_thread(subprocess.run, ping, check=True, capture_output=True)

    # the leader goes: the other node takes the Lease and gets the same address for the same DUID and IAID
    await cluster.stop_agent(leader)
    other = next(n for n in NODES if n != leader)
    await until("the address on the other node", lambda: holder_of(cluster, address) == other, 15)
    assert [r.address for r in dhcp.leases6()] == [row.address]  # one lease: the same client, not a second
    assert ingress(cluster) == [address]

    # deleted: the Release reaches the server (it drops the lease), the macvlan and the address go
    cluster.api.delete("services", "web", "default")
    await until("the lease released", lambda: our_lease(dhcp) is None, 10)
    assert "DHCPRELEASE" in dhcp.log()
    await until("the address withdrawn", lambda: holder_of(cluster, address) is None, 5)


async def test_a_dual_stack_request_leases_both_families_on_one_macvlan(lab: tuple[LabCluster, Dnsmasq]) -> None:
    cluster, dhcp = lab
    create(cluster, "0.0.0.0,::")
    v6 = await until("a DHCPv6 lease at the server", lambda: our_lease(dhcp), 15)
    v4 = await until("a DHCPv4 lease at the server",
                     lambda: next((r for r in dhcp.leases() if r.hostname == HOSTNAME), None), 10)
    # both on the one macvlan of the one leader
    on = await until("both addresses held", lambda: (a := held_on(cluster, str(v4.address))) and
                     (b := held_on(cluster, str(v6.address))) and (a, b), 10)
    assert on[0] == on[1], f"the two leases on different links: {on}"
    # kube-vip's form of the annotation: the IPv4 lease, a comma, the IPv6 one
    await until("requestedIP with both", lambda: service(cluster)["metadata"]["annotations"]
                .get("kube-vip.io/requestedIP") == f"{v4.address},{v6.address}", 10)
    await until("both in status", lambda: sorted(ingress(cluster)) == sorted([str(v4.address), str(v6.address)]), 10)
    # `kvip status` on the leader: a row per family, each with its lease's timers and its server
    rows = {row["address"]: row for row in dhcp_rows(cluster, on[0][0])}
    assert set(rows) == {str(v4.address), str(v6.address)}, rows
    for row in rows.values():
        assert row["state"] == "bound" and 0 < row["renewsInSeconds"] < row["expiresInSeconds"] <= 120, row
    assert ipaddress.ip_address(rows[str(v4.address)]["server"]).version == 4
    assert len(bytes.fromhex(rows[str(v6.address)]["server"].replace(":", ""))) >= 4  # the server's DUID
