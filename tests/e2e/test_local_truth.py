"""The node's own truth when the API cannot be trusted: probes, cordon, terminating endpoints."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from kvip.lab.cluster import LabCluster
from kvip.lab.netns import popen_in_netns
from kvip.lab.objects import Endpoint, endpoint_slice, load_balancer_service

pytestmark = pytest.mark.root

ROUTE = "10.96.0.10/32"
POD = "10.244.1.5"
INTERVAL, FALL = 0.3, 2


@pytest.fixture
async def lab(tmp_path: Path) -> AsyncIterator[LabCluster]:
    async with LabCluster(("node-a", "node-b"), workdir=tmp_path, resync_period=30.0) as cluster:
        cluster.api.create(load_balancer_service("web", vips=["10.96.0.10"]))
        cluster.api.create(endpoint_slice("web", [Endpoint(POD, "node-a")], port=8080))
        yield cluster


def start_pod(lab: LabCluster) -> subprocess.Popen[bytes]:
    netns = lab.node("node-a").netns
    subprocess.run(["ip", "-n", netns, "addr", "add", f"{POD}/32", "dev", "lo"], check=True)
    server = popen_in_netns(netns, [sys.executable, "-m", "http.server", "--bind", POD, "8080"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    time.sleep(0.5)
    return server


async def test_pod_gone_while_api_cut_off_is_withdrawn_by_the_local_probe(lab: LabCluster) -> None:
    pod = start_pod(lab)
    env = {"kvip_probes": "tcp", "kvip_probe_interval": str(INTERVAL), "kvip_probe_fall": str(FALL)}
    lab.start_agent("node-a", env=env)
    lab.start_agent("node-b")  # no pod is really running in this lab's node-b: no probes there
    await lab.wait_for({"node-a": {ROUTE}, "node-b": set()})

    lab.api.deny("endpointslices", user="node-a")  # node-a is blind from here on
    current = lab.api.get("endpointslices", "web-kvip", "default")
    lab.api.replace({**current, "endpoints": [{"addresses": ["10.244.2.5"], "nodeName": "node-b",
                                               "conditions": {"ready": True}}]})
    pod.kill()  # the pod was rescheduled: nothing answers on node-a any more
    pod.wait()
    elapsed = await lab.wait_for({"node-a": set(), "node-b": {ROUTE}}, timeout=INTERVAL * FALL + 1.0 + 1.0)
    assert elapsed <= INTERVAL * FALL + 1.0 + 1.0
    assert "probe tcp 10.244.1.5:8080 down" in lab.agent_log("node-a")


async def test_without_probes_the_blind_agent_keeps_the_route(lab: LabCluster) -> None:
    pod = start_pod(lab)
    lab.start_agent("node-a")
    await lab.wait_for({"node-a": {ROUTE}})
    lab.api.deny("endpointslices", user="node-a")
    pod.kill()
    pod.wait()
    await asyncio.sleep(INTERVAL * FALL + 1.5)
    assert lab.routes("node-a") == {ROUTE}  # what kvip exists to fix once the API answers again


async def test_cordon_withdraws_and_uncordon_advertises_again(lab: LabCluster) -> None:
    lab.start_agent("node-a")
    await lab.wait_for({"node-a": {ROUTE}})
    lab.api.patch("nodes", "node-a", {"spec": {"unschedulable": True}})
    await lab.wait_for({"node-a": set()}, timeout=2)
    lab.api.patch("nodes", "node-a", {"spec": {"unschedulable": None}})
    await lab.wait_for({"node-a": {ROUTE}}, timeout=2)
    lab.api.patch("nodes", "node-a", {"metadata": {"labels": {
        "node.kubernetes.io/exclude-from-external-load-balancers": "true"}}})
    await lab.wait_for({"node-a": set()}, timeout=2)


async def test_serving_but_terminating_endpoint_counts_only_when_configured(lab: LabCluster) -> None:
    current = lab.api.get("endpointslices", "web-kvip", "default")
    lab.api.replace({**current, "endpoints": [{"addresses": [POD], "nodeName": "node-a", "conditions": {
        "ready": False, "serving": True, "terminating": True}}]})
    lab.start_agent("node-a")
    lab.start_agent("node-b", env={"kvip_serving_terminating": "true"})
    await lab.wait_agents_ready()
    await asyncio.sleep(1.0)
    assert lab.routes("node-a") == set()
    # node-b has no local endpoint: Local policy never advertises there, whatever the setting.
    assert lab.routes("node-b") == set()
    await lab.stop_agent("node-a")
    lab.start_agent("node-a", env={"kvip_serving_terminating": "true"})
    await lab.wait_for({"node-a": {ROUTE}}, timeout=10)
