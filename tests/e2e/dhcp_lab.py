"""The lab both DHCP end-to-end stories run in (`test_dhcp`, `test_dhcp6`): two nodes in ARP/NDP mode with
per-Service election, the lab's dnsmasq on the router, the Service `web`'s endpoint on node-b, and what
the tests ask of it (a wait, which node holds an address on a macvlan, the Service, an agent's /status)."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from kvip.lab.cluster import LabCluster
from kvip.lab.dnsmasq import Dnsmasq
from kvip.lab.netns import run_in_netns
from kvip.lab.objects import Endpoint, endpoint_slice

NODES = ("node-a", "node-b")
ENV = {"vip_routingtable": "false", "vip_arp": "true", "vip_interface": "eth0", "svc_election": "true",
       "vip_arpRate": "300", "vip_leaseduration": "3", "vip_renewdeadline": "2", "vip_retryperiod": "0.5"}


@asynccontextmanager
async def dhcp_lab(tmp_path: Path, services: tuple[dict[str, Any], ...] = (),
                   **dnsmasq: Any) -> AsyncIterator[tuple[LabCluster, Dnsmasq]]:
    """The running lab: `services` created before the agents start, `dnsmasq` Dnsmasq's options."""
    async with LabCluster(NODES, workdir=tmp_path, resync_period=5.0, agent_env=ENV) as cluster:
        assert cluster.topology is not None
        dhcp = Dnsmasq(cluster.topology.router_netns, tmp_path / "dnsmasq", **dnsmasq)
        dhcp.start()
        for made in services:
            cluster.api.create(made)
        cluster.api.create(endpoint_slice("web", [Endpoint("10.244.1.1", "node-b")], port=80))
        for name in NODES:
            cluster.start_agent(name)
        try:
            yield cluster, dhcp
        finally:
            dhcp.stop()


async def until(what: str, check: Callable[[], Any], timeout: float) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        found = check()
        if found:
            return found
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.2)


def held_on(lab: LabCluster, address: str) -> tuple[str, str] | None:
    """(node, link) holding `address` on a vip-* macvlan (and only one)."""
    found = []
    for node in NODES:
        links = json.loads(subprocess.run(["ip", "-n", lab.node(node).netns, "-j", "addr", "show"],
                                          capture_output=True, text=True, check=True).stdout)
        found += [(node, link["ifname"]) for link in links for a in link.get("addr_info", ())
                  if a["local"] == address]
    assert len(found) <= 1, f"{address} held twice: {found}"
    if found:
        assert found[0][1].startswith("vip-"), f"{address} is not on a macvlan: {found}"
    return found[0] if found else None


def holder_of(lab: LabCluster, address: str) -> str | None:
    """The node with `address` on a vip-* macvlan (and only one)."""
    found = held_on(lab, address)
    return found[0] if found else None


def service(lab: LabCluster) -> dict[str, Any]:
    return lab.api.get("services", "web", "default")


def ingress(lab: LabCluster) -> list[str]:
    return [i.get("ip") for i in service(lab)["status"]["loadBalancer"].get("ingress", [])]


def dhcp_rows(lab: LabCluster, node: str) -> list[dict[str, Any]]:
    """The `dhcp` rows of `kvip status -o json` on `node`."""
    status = run_in_netns(lab.node(node).netns, [sys.executable, "-m", "kvip", "status", "-o", "json",
                                                 "--socket", str(lab.status_socket(node))])
    return list(json.loads(status.stdout).get("dhcp", []))
