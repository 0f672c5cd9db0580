"""Who may advertise, end to end (kvip issue #20): node label selectors with real agents, routes read
from the kernel, Leases read from the stand-in. A node leaves the moment its label does, and comes back
with it; a node outside the selector never holds the Lease."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from kvip.lab.cluster import LabCluster
from kvip.lab.objects import Endpoint, endpoint_slice, load_balancer_service

pytestmark = pytest.mark.root

NODES = ("node-a", "node-b", "node-c")
WEB, EDGE_ONLY = "10.96.4.1/32", "10.96.4.2/32"
LEASE, RENEW, RETRY = 3.0, 2.0, 0.5
TIMING = {"vip_leaseduration": str(LEASE), "vip_renewdeadline": str(RENEW), "vip_retryperiod": str(RETRY)}
SELECTOR = "kvip.io/node-selector"


@pytest.fixture
async def lab(tmp_path: Path) -> AsyncIterator[LabCluster]:
    async with LabCluster(NODES, workdir=tmp_path, resync_period=30.0, agent_env=TIMING) as cluster:
        for name, role in (("node-a", "edge"), ("node-b", "edge")):
            cluster.api.patch("nodes", name, {"metadata": {"labels": {"role": role}}})
        yield cluster


def label(lab: LabCluster, node: str, value: str | None) -> None:
    lab.api.patch("nodes", node, {"metadata": {"labels": {"role": value}}})


def lease_holder(lab: LabCluster, name: str, namespace: str = "default") -> str:
    try:
        return str(lab.api.get("leases", name, namespace)["spec"].get("holderIdentity") or "")
    except Exception:  # noqa: BLE001 (not created yet)
        return ""


async def test_table_mode_a_node_leaves_with_its_label_and_comes_back_with_it(lab: LabCluster) -> None:
    lab.api.create(load_balancer_service("web", vips=["10.96.4.1"], external_traffic_policy="Cluster"))
    lab.api.create(endpoint_slice("web", [Endpoint("10.244.1.1", "node-c")]))
    lab.api.create(load_balancer_service("edge-only", vips=["10.96.4.2"], external_traffic_policy="Cluster",
                                         annotations={SELECTOR: "role in (edge)"}))
    lab.api.create(endpoint_slice("edge-only", [Endpoint("10.244.1.2", "node-c")]))
    lab.api.create(load_balancer_service("broken", vips=["10.96.4.3"], external_traffic_policy="Cluster",
                                         annotations={SELECTOR: "role in (edge"}))
    lab.api.create(endpoint_slice("broken", [Endpoint("10.244.1.3", "node-c")]))
    for name in NODES:  # node-c: the global selector lets it in, the Service's keeps it out
        lab.start_agent(name, env={"kvip_node_selector": "!no-vips"})
    both = {WEB, EDGE_ONLY}
    await lab.wait_for({"node-a": both, "node-b": both, "node-c": {WEB}}, timeout=15)

    label(lab, "node-b", "core")
    took = await lab.wait_for({"node-a": both, "node-b": {WEB}, "node-c": {WEB}}, timeout=3)
    print(f"withdrawn {took * 1000:.0f} ms after the label changed")
    label(lab, "node-b", "edge")
    took = await lab.wait_for({"node-a": both, "node-b": both, "node-c": {WEB}}, timeout=3)
    print(f"advertised again {took * 1000:.0f} ms after the label came back")

    lab.api.patch("nodes", "node-a", {"metadata": {"labels": {"no-vips": ""}}})  # out of the global selector
    await lab.wait_for({"node-a": set(), "node-b": both, "node-c": {WEB}}, timeout=3)

    events = [e for e in lab.api.list("events", "default") if e["involvedObject"]["name"] == "broken"]
    assert events and all("not advertised by any node" in e["message"] for e in events), events
    assert all("10.96.4.3/32" not in routes for routes in lab.all_routes().values())


async def test_per_service_election_the_excluded_node_never_holds_the_lease(lab: LabCluster) -> None:
    lab.api.create(load_balancer_service("edge-only", vips=["10.96.4.2"], external_traffic_policy="Cluster",
                                         annotations={SELECTOR: "role=edge"}))
    lab.api.create(endpoint_slice("edge-only", [Endpoint("10.244.1.2", "node-c")]))
    seen: list[tuple[float, str]] = []
    stop = asyncio.Event()

    async def watch_lease() -> None:
        while not stop.is_set():
            seen.append((time.monotonic(), lease_holder(lab, "kubevip-edge-only")))
            await asyncio.sleep(0.02)

    watcher = asyncio.create_task(watch_lease())
    lab.start_agent("node-c", env={"svc_election": "true"})  # first: it would win a free Lease if it contended
    await lab.wait_agents_ready()
    await asyncio.sleep(2 * RETRY)
    for name in ("node-a", "node-b"):
        lab.start_agent(name, env={"svc_election": "true"})
    await until(lambda: holders(lab) in ({"node-a"}, {"node-b"}), 15)
    leader = holders(lab).pop()
    other = ({"node-a", "node-b"} - {leader}).pop()

    label(lab, leader, None)  # the leader leaves the selector: it withdraws and lets go of the Lease at once
    dropped = time.monotonic()
    await lab.wait_for({leader: set()}, timeout=2)
    await until(lambda: holders(lab) == {other}, RETRY + 3)
    print(f"failover {time.monotonic() - dropped:.2f}s after the leader's label was removed")
    label(lab, leader, "edge")
    await asyncio.sleep(2 * RETRY)
    assert holders(lab) == {other}, "a returning node contends again but does not take a held Lease"
    stop.set()
    await watcher
    assert all(holder != "node-c" for _, holder in seen), "node-c is outside the selector: never a holder"
    assert all(holder != leader for at, holder in seen if at > dropped + 1.0), seen[-5:]


async def test_global_election_a_node_outside_the_selector_does_not_contend(lab: LabCluster) -> None:
    lab.api.create(load_balancer_service("web", vips=["10.96.4.1"], external_traffic_policy="Cluster"))
    lab.api.create(endpoint_slice("web", [Endpoint("10.244.1.1", "node-c")]))
    env = {"vip_leaderelection": "true", "kvip_node_selector": "role=edge", "svc_leasename": "plndr-svcs-lock"}
    lab.start_agent("node-c", env=env)  # alone, with the Lease free: it still does not take it
    await lab.wait_agents_ready()
    await asyncio.sleep(3 * RETRY)
    assert lease_holder(lab, "plndr-svcs-lock", "kube-system") == "" and lab.routes("node-c") == set()
    lab.start_agent("node-a", env=env)
    await lab.wait_for({"node-a": {WEB}, "node-c": set()}, timeout=10)
    assert lease_holder(lab, "plndr-svcs-lock", "kube-system") == "node-a"


def holders(lab: LabCluster) -> set[str]:
    return {n for n in NODES if EDGE_ONLY in lab.routes(n)}


async def until(condition, timeout: float) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        await asyncio.sleep(0.02)
