"""The seed's failure stories, end to end: 3 real agents in 3 node namespaces, real kernel routes,
the API stand-in over real HTTP. Each test is one scenario of issue 3."""

from __future__ import annotations

import asyncio
import signal
import subprocess
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from kvip.lab.cluster import LabCluster
from kvip.lab.objects import Endpoint, endpoint_slice, load_balancer_service

pytestmark = pytest.mark.root

VIP = "10.96.0.10"
ROUTE = f"{VIP}/32"
RESYNC = 3.0
NODES = ("node-a", "node-b", "node-c")


@pytest.fixture
async def lab(tmp_path: Path) -> AsyncIterator[LabCluster]:
    cluster = LabCluster(NODES, workdir=tmp_path, resync_period=RESYNC)
    await cluster.start()
    try:
        yield cluster
    finally:
        await cluster.stop()


async def start_all(lab: LabCluster) -> None:
    for name in NODES:
        lab.start_agent(name)
    await lab.wait_agents_ready()


def web_on(lab: LabCluster, node: str, *, policy: str = "Local", vip: str = VIP, name: str = "web") -> None:
    lab.api.create(load_balancer_service(name, vips=[vip], external_traffic_policy=policy))
    lab.api.create(endpoint_slice(name, [Endpoint("10.244.1.5", node)]))


def move_endpoint(lab: LabCluster, to_node: str, name: str = "web") -> None:
    lab.api.replace({**lab.api.get("endpointslices", f"{name}-kvip", "default"),
                     "endpoints": [{"addresses": ["10.244.2.7"], "nodeName": to_node,
                                    "conditions": {"ready": True}}]})


def only(node: str, *routes: str) -> dict[str, set[str]]:
    return {n: (set(routes) if n == node else set()) for n in NODES}


async def test_pod_rescheduled_while_rbac_revoked_withdraws_route_once_access_returns(lab: LabCluster) -> None:
    web_on(lab, "node-a")
    await start_all(lab)
    await lab.wait_for(only("node-a", ROUTE))

    lab.api.deny("endpointslices", user="node-a")
    move_endpoint(lab, "node-b")
    # node-b sees the move; node-a cannot, and fails static on its last good cache.
    await lab.wait_for({"node-b": {ROUTE}, "node-c": set()})
    await asyncio.sleep(1.0)
    assert lab.routes("node-a") == {ROUTE}

    lab.api.allow("endpointslices", user="node-a")
    elapsed = await lab.wait_for(only("node-b", ROUTE), timeout=RESYNC)
    assert elapsed <= RESYNC
    assert "forbidden" in lab.agent_log("node-a")


async def test_single_endpoint_moved_between_nodes_old_node_withdraws_within_a_second(lab: LabCluster) -> None:
    web_on(lab, "node-a")
    await start_all(lab)
    await lab.wait_for(only("node-a", ROUTE))
    move_endpoint(lab, "node-c")
    await lab.wait_for(only("node-c", ROUTE), timeout=1.0)


async def test_last_local_endpoint_gone_withdraws_and_deleted_service_withdraws_everywhere(
    lab: LabCluster,
) -> None:
    web_on(lab, "node-b")
    lab.api.create(load_balancer_service("shop", vips=["10.96.0.20"], external_traffic_policy="Cluster"))
    lab.api.create(endpoint_slice("shop", [Endpoint("10.244.3.3", "node-c")]))
    await start_all(lab)
    everywhere = "10.96.0.20/32"
    await lab.wait_for({"node-a": {everywhere}, "node-b": {ROUTE, everywhere}, "node-c": {everywhere}})

    lab.api.patch("endpointslices", "web-kvip", {"endpoints": []}, namespace="default")
    await lab.wait_for({n: {everywhere} for n in NODES})

    lab.api.delete("services", "shop", namespace="default")
    await lab.wait_for({n: set() for n in NODES})


async def test_service_deleted_while_agent_down_is_cleaned_at_restart_and_valid_route_has_no_gap(
    lab: LabCluster,
) -> None:
    web_on(lab, "node-a")
    web_on(lab, "node-a", vip="10.96.0.11", name="gone")
    await start_all(lab)
    await lab.wait_for(only("node-a", ROUTE, "10.96.0.11/32"))

    await lab.stop_agent("node-a", sig=signal.SIGKILL)  # a crash: routes stay in the kernel
    lab.api.delete("services", "gone", namespace="default")
    assert lab.routes("node-a") == {ROUTE, "10.96.0.11/32"}

    monitor = subprocess.Popen(["ip", "-n", lab.node("node-a").netns, "monitor", "route"],
                               stdout=subprocess.PIPE, text=True)
    try:
        await asyncio.sleep(0.2)
        lab.start_agent("node-a")
        await lab.wait_for(only("node-a", ROUTE))
        await asyncio.sleep(0.5)
    finally:
        monitor.terminate()
        events = monitor.communicate(timeout=5)[0]
    assert "10.96.0.11" in events  # the stale route was deleted ...
    assert VIP not in events.replace("10.96.0.11", "")  # ... and the valid one never touched


async def test_route_deleted_by_hand_is_restored_and_foreign_route_is_never_touched(lab: LabCluster) -> None:
    netns = lab.node("node-a").netns
    subprocess.run(["ip", "-n", netns, "route", "add", "10.96.9.9/32", "dev", "lo", "table", "198",
                    "proto", "static"], check=True)
    web_on(lab, "node-a")
    await start_all(lab)
    await lab.wait_for(only("node-a", ROUTE))

    subprocess.run(["ip", "-n", netns, "route", "del", ROUTE, "table", "198"], check=True)
    elapsed = await lab.wait_for(only("node-a", ROUTE), timeout=2.0)
    assert elapsed < 2.0

    subprocess.run(["ip", "-n", netns, "route", "add", "10.96.7.7/32", "dev", "lo", "table", "198",
                    "proto", "248"], check=True)  # a stale route that claims to be ours
    await lab.wait_for(only("node-a", ROUTE), timeout=2.0)
    await asyncio.sleep(RESYNC + 0.5)  # at least one timer pass
    table = subprocess.run(["ip", "-n", netns, "route", "show", "table", "198"],
                           check=True, capture_output=True, text=True).stdout
    assert "10.96.9.9 dev lo proto static" in table


async def test_dropped_delete_event_is_corrected_within_the_check_period(lab: LabCluster) -> None:
    web_on(lab, "node-a")
    await start_all(lab)
    await lab.wait_for(only("node-a", ROUTE))

    lab.api.drop_events("endpointslices", types=("DELETED",))
    lab.api.delete("endpointslices", "web-kvip", namespace="default")
    await asyncio.sleep(0.5)
    assert lab.routes("node-a") == {ROUTE}  # the event never arrived
    # kvip_resync_period=RESYNC also sets the check period; no periodic relist (kvip issue #21).
    await lab.wait_for(only("node-a"), timeout=RESYNC + 2.0)
    assert "consistency check: 1 object(s) differ" in lab.agent_log("node-a")


async def test_compacted_watch_history_forces_relist_and_agents_converge(lab: LabCluster) -> None:
    web_on(lab, "node-a")
    await start_all(lab)
    await lab.wait_for(only("node-a", ROUTE))

    lab.api.drop_events("endpointslices")  # nothing reaches the watchers from here ...
    move_endpoint(lab, "node-b")
    lab.api.compact()  # ... and the history they would resume from is gone
    lab.api.clear_faults()
    lab.api.cut_watches()
    await lab.wait_for(only("node-b", ROUTE), timeout=RESYNC)
    assert any("relisting" in lab.agent_log(n) for n in NODES)
