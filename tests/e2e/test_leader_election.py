"""Leader election end to end: real agents, Leases on the stand-in, VIPs read from the kernel."""

from __future__ import annotations

import asyncio
import random
import signal
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from kvip.lab.cluster import LabCluster
from kvip.lab.objects import Endpoint, endpoint_slice, load_balancer_service

pytestmark = pytest.mark.root

NODES = ("node-a", "node-b", "node-c")
ROUTE = "10.96.0.50/32"
LEASE, RENEW, RETRY = 3.0, 2.0, 0.5
TIMING = {"vip_leaseduration": str(LEASE), "vip_renewdeadline": str(RENEW), "vip_retryperiod": str(RETRY)}


@pytest.fixture
async def lab(tmp_path: Path) -> AsyncIterator[LabCluster]:
    async with LabCluster(NODES, workdir=tmp_path, resync_period=5.0, agent_env=TIMING) as cluster:
        yield cluster


def holders(lab: LabCluster, route: str = ROUTE, nodes: set[str] | None = None) -> set[str]:
    return {n for n in (nodes or NODES) if route in lab.routes(n)}


async def until_single_holder(lab: LabCluster, timeout: float, route: str = ROUTE,
                              among: set[str] | None = None) -> tuple[str, float]:
    """Until exactly one of `among` (default: every node) holds the route; returns it and the wait."""
    start = time.monotonic()
    while time.monotonic() - start < timeout:
        current = holders(lab, route, among)
        if len(current) == 1:
            return current.pop(), time.monotonic() - start
        await asyncio.sleep(0.02)
    raise AssertionError(f"no single holder of {route} after {timeout}s: {holders(lab, route, among)}")


async def test_global_election_one_node_advertises_and_fails_over_on_kill_and_on_sigterm(lab: LabCluster) -> None:
    lab.api.create(load_balancer_service("web", vips=["10.96.0.50"], external_traffic_policy="Cluster"))
    lab.api.create(endpoint_slice("web", [Endpoint("10.244.1.1", "node-c")]))
    for name in NODES:
        lab.start_agent(name, env={"vip_leaderelection": "true"})
    leader, _ = await until_single_holder(lab, 15)

    await lab.stop_agent(leader, sig=signal.SIGKILL)
    survivors = set(NODES) - {leader}
    # The killed agent cannot withdraw (its kernel route stays): look at the survivors only.
    second, took = await until_single_holder(lab, LEASE + RETRY + 2.0, among=survivors)
    assert took <= LEASE + RETRY + 2.0, took

    await lab.stop_agent(second, sig=signal.SIGTERM)
    third, took = await until_single_holder(lab, 3 * RETRY + 1.0, among=survivors - {second})
    assert third not in (leader, second)


async def test_per_service_leaders_spread_and_follow_the_endpoints(lab: LabCluster) -> None:
    for name in NODES:
        lab.start_agent(name, env={"svc_election": "true"})
    await lab.wait_agents_ready()  # services appear in a running cluster, as they do in life
    for i in range(6):
        lab.api.create(load_balancer_service(f"s{i}", vips=[f"10.96.1.{i}"], external_traffic_policy="Cluster"))
        lab.api.create(endpoint_slice(f"s{i}", [Endpoint("10.244.1.1", "node-a")]))
    lab.api.create(load_balancer_service("local", vips=["10.96.0.50"], external_traffic_policy="Local"))
    lab.api.create(endpoint_slice("local", [Endpoint("10.244.2.2", "node-b"), Endpoint("10.244.3.3", "node-c")]))
    owners = {}
    for i in range(6):
        owners[i], _ = await until_single_holder(lab, 15, route=f"10.96.1.{i}/32")
    assert len(set(owners.values())) >= 2, owners  # leaders spread over nodes
    first, _ = await until_single_holder(lab, 15, among={"node-b", "node-c"})

    other = ({"node-b", "node-c"} - {first}).pop()
    current = lab.api.get("endpointslices", "local-kvip", "default")
    lab.api.replace({**current, "endpoints": [e for e in current["endpoints"] if e["nodeName"] == other]})
    moved_to, took = await until_single_holder(lab, 5, among={other})
    assert moved_to == other and took < 3.0  # the old leader released at once; no lease expiry wait


async def test_partitioned_leader_withdraws_before_anyone_else_advertises(lab: LabCluster) -> None:
    lab.api.create(load_balancer_service("web", vips=["10.96.0.50"], external_traffic_policy="Cluster"))
    lab.api.create(endpoint_slice("web", [Endpoint("10.244.1.1", "node-c")]))
    for name in NODES:
        lab.start_agent(name, env={"vip_leaderelection": "true"})
    leader, _ = await until_single_holder(lab, 15)
    lab.api.deny("leases", ("get", "list", "create", "update", "patch"), user=leader)
    overlap, worst_overlap, start = None, 0.0, time.monotonic()
    new_leader = None
    while time.monotonic() - start < LEASE + 4:
        now_holding = holders(lab)
        if len(now_holding) > 1:
            overlap = overlap or time.monotonic()
            worst_overlap = max(worst_overlap, time.monotonic() - overlap)
        else:
            overlap = None
        if now_holding and leader not in now_holding:
            new_leader = now_holding
        await asyncio.sleep(0.05)
    assert new_leader and len(new_leader) == 1
    assert worst_overlap == 0.0, f"two nodes held the VIP for {worst_overlap:.3f}s"


async def test_rapid_endpoint_churn_ends_with_the_vip_only_on_the_lease_holder(lab: LabCluster) -> None:
    lab.api.create(load_balancer_service("web", vips=["10.96.0.50"], external_traffic_policy="Local"))
    lab.api.create(endpoint_slice("web", [Endpoint("10.244.1.1", "node-a")]))
    for name in NODES:
        lab.start_agent(name, env={"svc_election": "true"})
    await until_single_holder(lab, 15)
    rng = random.Random(1775)
    for _ in range(50):  # kube-vip #1775: 50 flips in 10 s
        nodes = rng.sample(NODES, rng.randint(1, 3))
        current = lab.api.get("endpointslices", "web-kvip", "default")
        lab.api.replace({**current, "endpoints": [
            {"addresses": [f"10.244.{i}.1"], "nodeName": n, "conditions": {"ready": True}} for i, n in enumerate(nodes)]})
        await asyncio.sleep(0.2)
    final_nodes = {e["nodeName"] for e in lab.api.get("endpointslices", "web-kvip", "default")["endpoints"]}
    holder, _ = await until_single_holder(lab, LEASE + 3, among=final_nodes)
    lease = lab.api.get("leases", "kubevip-web", "default")
    await asyncio.sleep(1.0)
    assert holders(lab) == {holder} and lease["spec"]["holderIdentity"] == holder
