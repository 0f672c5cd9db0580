"""Scenario 7: a BIRD router peering with every node sees the ECMP set follow the endpoints."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest

from kvip.lab.cluster import LabCluster
from kvip.lab.fabric import BgpFabric
from kvip.lab.objects import Endpoint, endpoint_slice, load_balancer_service

pytestmark = pytest.mark.root

NODES = ("node-a", "node-b", "node-c")
ROUTE = "10.96.0.30/32"


async def router_sees(fabric: BgpFabric, nodes: set[str], timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while (seen := set(fabric.ecmp().get(ROUTE, frozenset()))) != nodes:
        if time.monotonic() > deadline:
            raise AssertionError(f"router ECMP set for {ROUTE} is {seen}, wanted {nodes}")
        await asyncio.sleep(0.1)


async def test_router_ecmp_set_follows_endpoints_across_nodes(tmp_path: Path) -> None:
    async with LabCluster(NODES, workdir=tmp_path, resync_period=3.0) as lab:
        assert lab.topology is not None
        fabric = BgpFabric(lab.topology, tmp_path)
        await asyncio.to_thread(fabric.start)
        try:
            for name in NODES:
                lab.start_agent(name)
            await lab.wait_agents_ready()
            lab.api.create(load_balancer_service("api", vips=["10.96.0.30"], external_traffic_policy="Local"))
            lab.api.create(endpoint_slice("api", [Endpoint("10.244.1.1", "node-a"), Endpoint("10.244.2.1", "node-b")]))
            await router_sees(fabric, {"node-a", "node-b"})

            current = lab.api.get("endpointslices", "api-kvip", "default")
            lab.api.replace({**current, "endpoints": [
                {"addresses": ["10.244.3.1"], "nodeName": "node-c", "conditions": {"ready": True}},
                {"addresses": ["10.244.2.1"], "nodeName": "node-b", "conditions": {"ready": False}},
            ]})
            await router_sees(fabric, {"node-c"})

            lab.api.delete("services", "api", namespace="default")
            await router_sees(fabric, set())
        finally:
            await asyncio.to_thread(fabric.stop)
