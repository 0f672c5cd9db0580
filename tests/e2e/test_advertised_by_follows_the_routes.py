"""kvip.io/advertised-by in the lab (3 real agents, table mode, anycast): after each step the annotation
names exactly the nodes whose kernel really holds the route — endpoint moves, a node cordoned, an agent
stopped — and it is written once per change, not once per node."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from kvip.core.advertised_by import ANNOTATION
from kvip.lab.apiserver import WRITE_VERBS
from kvip.lab.cluster import LabCluster
from kvip.lab.objects import Endpoint, endpoint_slice, load_balancer_service

pytestmark = pytest.mark.root

VIP = "10.96.0.10"
ROUTE = f"{VIP}/32"
RESYNC = 2.0  # heartbeat Leases last 3 periods: a stopped agent drops out after 6 s
NODES = ("node-a", "node-b", "node-c")


@pytest.fixture
async def lab(tmp_path: Path) -> AsyncIterator[LabCluster]:
    async with LabCluster(NODES, workdir=tmp_path, resync_period=RESYNC) as cluster:
        yield cluster


def annotation(lab: LabCluster) -> str:
    return (lab.api.get("services", "web", "default")["metadata"].get("annotations") or {}).get(ANNOTATION, "")


async def annotation_matches_routes(lab: LabCluster, carriers: set[str], timeout: float = 15.0) -> None:
    """Until the route is on exactly `carriers` and the annotation names exactly the nodes holding it."""
    deadline = time.monotonic() + timeout
    while True:
        holding = {n for n, routes in lab.all_routes().items() if ROUTE in routes}
        if holding == carriers and annotation(lab) == ",".join(sorted(holding)):
            return
        assert time.monotonic() < deadline, (f"route on {sorted(holding)}, want {sorted(carriers)}; "
                                             f"annotation {annotation(lab)!r}")
        await asyncio.sleep(0.1)


def endpoints_on(lab: LabCluster, *nodes: str) -> None:
    lab.api.replace({**lab.api.get("endpointslices", "web-kvip", "default"),
                     "endpoints": [{"addresses": [f"10.244.{i}.7"], "nodeName": node, "conditions": {"ready": True}}
                                   for i, node in enumerate(nodes)]})


def cordon(lab: LabCluster, node: str) -> None:
    obj = lab.api.get("nodes", node)
    lab.api.replace({**obj, "spec": {**(obj.get("spec") or {}), "unschedulable": True}})


async def test_the_annotation_follows_the_nodes_that_really_hold_the_route(lab: LabCluster) -> None:
    lab.api.create(load_balancer_service("web", vips=[VIP], external_traffic_policy="Local"))
    lab.api.create(endpoint_slice("web", [Endpoint("10.244.1.5", "node-a")]))
    for name in NODES:
        lab.start_agent(name)
    await lab.wait_agents_ready()
    await annotation_matches_routes(lab, {"node-a"})

    endpoints_on(lab, "node-c")  # the endpoint moves
    await annotation_matches_routes(lab, {"node-c"})

    endpoints_on(lab, "node-b", "node-c")  # scaled out
    await annotation_matches_routes(lab, {"node-b", "node-c"})
    writes = len(lab.api.request_log(resource="services", verbs=WRITE_VERBS))
    await asyncio.sleep(3 * RESYNC)  # heartbeats renew, passes run: nothing changes, nothing is written
    assert len(lab.api.request_log(resource="services", verbs=WRITE_VERBS)) == writes

    cordon(lab, "node-b")  # kvip_drain_on_cordon (default): node-b withdraws
    await annotation_matches_routes(lab, {"node-c"})

    await lab.stop_agent("node-c")  # SIGTERM: withdraws, then its heartbeat goes stale
    await annotation_matches_routes(lab, set(), timeout=4 * RESYNC + 10)
    # one write per change, from one node: 4 values after the first; never one per node
    assert len(lab.api.request_log(resource="services", verbs=WRITE_VERBS)) <= 5 + 1
