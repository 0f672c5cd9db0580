"""kvip.io/preferred-nodes end to end (kvip issue #20): real agents in table mode, Leases on the stand-in, the
VIP's route read from each node's kernel every 50 ms. While the preferred node's health flaps (faster than
the hold-down) the VIP stays where it is; once the node is steadily healthy the Lease moves to it by a
graceful handover: the route is never on both nodes and off both only briefly. The global Lease (ARP mode, global
election) does the same by the agents' kvip_preferred_nodes, and the handover shows in metrics and /status."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from kvip.lab.cluster import LabCluster
from kvip.lab.netns import run_in_netns
from kvip.lab.objects import Endpoint, endpoint_slice, load_balancer_service

pytestmark = pytest.mark.root

NODES = ("node-a", "node-b")
VIP = "10.96.7.1"
LEASE, RENEW, RETRY, HOLDDOWN = 3.0, 2.0, 0.5, 1.5
ENV = {"vip_leaseduration": str(LEASE), "vip_renewdeadline": str(RENEW), "vip_retryperiod": str(RETRY),
       "svc_election": "true", "kvip_preference_holddown": str(HOLDDOWN)}


@pytest.fixture
async def lab(tmp_path: Path) -> AsyncIterator[LabCluster]:
    async with LabCluster(NODES, workdir=tmp_path, resync_period=30.0, agent_env=ENV) as cluster:
        yield cluster


def sick(lab: LabCluster, node: str, is_sick: bool) -> None:
    lab.api.patch("nodes", node, {"metadata": {"labels": {"sick": "yes" if is_sick else None}}})


async def has_vip(lab: LabCluster, node: str) -> bool:
    """The VIP's route in the node's table 198 (one `ip`, not blocking the loop that serves the stand-in)."""
    process = await asyncio.create_subprocess_exec(
        "ip", "-n", lab.node(node).netns, "-j", "-4", "route", "show", "table", "198", "proto", "248",
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.DEVNULL)
    out, _ = await process.communicate()
    if process.returncode != 0:
        return False  # no table 198 yet: the kernel creates it with its first route
    return any(route.get("dst") == VIP for route in json.loads(out or b"[]"))


class Sampler:
    """Which nodes hold the VIP, every 50 ms (both nodes read at the same instant, in parallel)."""

    def __init__(self, lab: LabCluster) -> None:
        self.lab = lab
        self.samples: list[tuple[float, frozenset[str]]] = []

    async def run(self) -> None:
        while True:
            at = time.monotonic()
            found = await asyncio.gather(*(has_vip(self.lab, n) for n in NODES))
            self.samples.append((at, frozenset(n for n, held in zip(NODES, found, strict=True) if held)))
            await asyncio.sleep(max(0.0, at + 0.05 - time.monotonic()))

    def since(self, start: float) -> list[frozenset[str]]:
        return [holders for at, holders in self.samples if at >= start]


async def until(condition, timeout: float) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        await asyncio.sleep(0.02)


def log_lines(lab: LabCluster, node: str, text: str) -> int:
    return (lab.workdir / f"agent-{node}.log").read_text(errors="replace").count(text)


async def test_the_vip_moves_to_the_preferred_node_by_handover_and_not_while_its_health_flaps(
        lab: LabCluster) -> None:
    lab.api.patch("nodes", "node-a", {"metadata": {"labels": {"zone": "a"}}})
    sick(lab, "node-a", True)
    lab.api.create(load_balancer_service("web", vips=[VIP], external_traffic_policy="Cluster", annotations={
        "kvip.io/preferred-nodes": "100:zone=a", "kvip.io/node-selector": "!sick"}))
    lab.api.create(endpoint_slice("web", [Endpoint("10.244.1.1", "node-b")]))
    sampler = Sampler(lab)
    task = asyncio.create_task(sampler.run())
    try:
        for name in NODES:
            lab.start_agent(name)
        await until(lambda: bool(sampler.samples) and sampler.samples[-1][1] == {"node-b"}, 15)

        flapping = time.monotonic()
        for _ in range(4):  # healthy 0.5 s, sick 0.5 s: never a whole hold-down (1.5 s) healthy
            sick(lab, "node-a", False)
            await asyncio.sleep(HOLDDOWN / 3)
            sick(lab, "node-a", True)
            await asyncio.sleep(HOLDDOWN / 3)
        during = sampler.since(flapping)
        assert set(during) == {frozenset({"node-b"})}, "the VIP moved while node-a's health flapped"
        assert log_lines(lab, "node-a", "asked node-b for lease") == 0

        sick(lab, "node-a", False)  # steadily healthy: after the hold-down it asks, and node-b hands over
        healthy = time.monotonic()
        await until(lambda: sampler.samples[-1][1] == {"node-a"} and sampler.samples[-1][0] > healthy, 10)
        await asyncio.sleep(0.3)  # and it stays there
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
    handover = sampler.since(healthy)
    assert all(len(holders) <= 1 for holders in handover), "the VIP was on both nodes"
    first_a = next(i for i, holders in enumerate(handover) if holders == {"node-a"})
    assert all(holders == {"node-a"} for holders in handover[first_a:]), "the VIP moved back"
    gap = sum(1 for holders in handover if not holders)
    print(f"handover {time.monotonic() - healthy:.2f}s after node-a turned healthy; "
          f"VIP on no node for {gap} sample(s) of 50 ms")
    assert gap * 0.05 <= 1.0, f"VIP on no node for ~{gap * 50} ms"  # generous: one write, one poll, one pass
    assert log_lines(lab, "node-b", "handed lease default/kubevip-web over to node-a") == 1


async def has_address(lab: LabCluster, node: str) -> bool:
    """ARP mode: the VIP as an address on the node's eth0 (as tests/e2e/test_arp_mode.py reads it)."""
    process = await asyncio.create_subprocess_exec(
        "ip", "-n", lab.node(node).netns, "-j", "-4", "addr", "show", "dev", "eth0",
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.DEVNULL)
    out, _ = await process.communicate()
    return any(a.get("local") == VIP for link in json.loads(out or b"[]") for a in link.get("addr_info", ()))


async def test_the_global_lease_moves_to_the_node_kvip_preferred_nodes_prefers(tmp_path: Path) -> None:
    """kube-vip's global election (ARP mode, vip_leaderelection): node-b takes the one Lease alone; node-a, in
    zone a that kvip_preferred_nodes prefers, joins, asks after its hold-down and node-b hands it over."""
    env = {**ENV, "svc_election": "false", "vip_leaderelection": "true", "vip_routingtable": "false",
           "vip_arp": "true", "vip_interface": "eth0", "kvip_preferred_nodes": "100:zone=a"}
    async with LabCluster(NODES, workdir=tmp_path, resync_period=30.0, agent_env=env) as lab:
        lab.api.patch("nodes", "node-a", {"metadata": {"labels": {"zone": "a"}}})
        lab.api.create(load_balancer_service("web", vips=[VIP], external_traffic_policy="Cluster"))
        lab.api.create(endpoint_slice("web", [Endpoint("10.244.1.1", "node-b")]))
        samples: list[frozenset[str]] = []

        async def sample() -> None:
            while True:
                found = await asyncio.gather(*(has_address(lab, n) for n in NODES))
                samples.append(frozenset(n for n, held in zip(NODES, found, strict=True) if held))
                await asyncio.sleep(0.05)

        task = asyncio.create_task(sample())
        try:
            lab.start_agent("node-b")
            await until(lambda: bool(samples) and samples[-1] == {"node-b"}, 15)
            joined = len(samples)
            lab.start_agent("node-a")
            await until(lambda: samples[-1] == {"node-a"}, HOLDDOWN + 12)
            await asyncio.sleep(0.3)
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
        after = samples[joined:]
        assert all(len(holders) <= 1 for holders in after), "the VIP was on both nodes"
        gap = sum(1 for holders in after if not holders)
        assert gap * 0.05 <= 1.0, f"VIP on no node for ~{gap * 50} ms"
        assert log_lines(lab, "node-b", "over to node-a") == 1
        # Visible without the logs: kvip_lease_handovers_total on both, and node-b's /status names node-a.
        given = run_in_netns(lab.node("node-b").netns, ["curl", "-s", "http://127.0.0.1:2112/metrics"]).stdout
        taken = run_in_netns(lab.node("node-a").netns, ["curl", "-s", "http://127.0.0.1:2112/metrics"]).stdout
        assert 'kvip_lease_handovers_total{direction="granted"} 1.0' in given
        assert 'kvip_lease_handovers_total{direction="received"} 1.0' in taken
        curl = await asyncio.create_subprocess_exec("curl", "-s", "--unix-socket", str(lab.status_socket("node-b")),
                                                    "http://kvip/status", stdout=asyncio.subprocess.PIPE)
        status = json.loads((await curl.communicate())[0])
        assert [(r["outcome"], r["to"]) for r in status["handovers"]["last"]] == [("granted", "node-a")]
