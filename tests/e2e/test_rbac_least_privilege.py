"""The agent runs on exactly the RBAC rules kvip generates — and says which one is missing when any is removed.

The stand-in enforces the rules as the node's allow list (like a ClusterRole bound to its user).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from kvip.deploy.rbac import agent_rules, allow_list
from kvip.lab.cluster import LabCluster
from kvip.lab.objects import Endpoint, endpoint_slice, load_balancer_service

pytestmark = pytest.mark.root

RULES = allow_list(agent_rules(election=False))


@pytest.fixture
async def lab(tmp_path: Path) -> AsyncIterator[LabCluster]:
    async with LabCluster(("node-a",), workdir=tmp_path, resync_period=2.0) as cluster:
        cluster.api.create(load_balancer_service("web", vips=["10.96.0.10"], via="annotation"))
        cluster.api.create(endpoint_slice("web", [Endpoint("10.244.1.1", "node-a")]))
        cluster.api.create(load_balancer_service("broken", vips=["10.96.0.300"], via="annotation"))
        yield cluster


async def test_agent_does_everything_with_exactly_the_generated_rules(lab: LabCluster) -> None:
    lab.api.set_allowed("node-a", RULES)
    lab.start_agent("node-a")
    await lab.wait_for({"node-a": {"10.96.0.10/32"}})
    deadline = time.monotonic() + 10
    while True:
        status_written = lab.api.get("services", "web", "default")["status"]["loadBalancer"].get("ingress")
        events = [e for e in lab.api.list("events", "default") if e["involvedObject"]["name"] == "broken"]
        heartbeat = [l for l in lab.api.list("leases", "kube-system") if l["metadata"]["name"] == "kvip-node-node-a"]
        if status_written and events and heartbeat:
            break
        assert time.monotonic() < deadline, (status_written, events, heartbeat)
        await asyncio.sleep(0.1)
    assert "forbidden" not in lab.agent_log("node-a").lower()


@pytest.mark.parametrize("missing", sorted(RULES), ids=lambda p: f"{p[1]}-{p[0]}")
async def test_removing_any_one_rule_is_reported_naming_the_permission(lab: LabCluster,
                                                                        missing: tuple[str, str]) -> None:
    resource, verb = missing
    lab.api.set_allowed("node-a", RULES - {missing})
    lab.start_agent("node-a")
    plural = resource.split("/")[0]
    deadline = time.monotonic() + 12
    while True:
        log = lab.agent_log("node-a")
        if f'cannot {verb} resource "{plural}' in log or f'cannot {verb} resource "{resource}"' in log:
            break
        assert time.monotonic() < deadline, f"no report of missing {verb} {resource}:\n{log[-2000:]}"
        await asyncio.sleep(0.1)


@pytest.mark.parametrize("env", [{"svc_election": "true"}, {"vip_leaderelection": "true"},
                                 {"vip_routingtable": "false", "vip_arp": "true", "vip_interface": "eth0",
                                  "vip_leaderelection": "true"}],
                         ids=["service-election", "global-election", "arp-global"])
async def test_election_and_arp_modes_run_on_their_generated_rules(lab: LabCluster, env: dict[str, str]) -> None:
    lab.api.set_allowed("node-a", allow_list(agent_rules(election=True)))
    lab.start_agent("node-a", env={"vip_leaseduration": "3", "vip_renewdeadline": "2", "vip_retryperiod": "0.5",
                                   **env})
    deadline = time.monotonic() + 15
    while True:
        if env.get("vip_arp"):
            import subprocess

            done = "10.96.0.10/32" in subprocess.run(["ip", "-n", lab.node("node-a").netns, "addr", "show", "dev",
                                                      "eth0"], capture_output=True, text=True).stdout
        else:
            done = lab.routes("node-a") == {"10.96.0.10/32"}
        if done:
            break
        assert time.monotonic() < deadline, lab.agent_log("node-a")[-2000:]
        await asyncio.sleep(0.1)
    assert "forbidden" not in lab.agent_log("node-a").lower()


async def test_bgp_mode_runs_on_the_same_generated_rules(lab: LabCluster) -> None:
    from kvip.lab.bgp_router import BirdRouter, bgp_agent_env

    assert lab.topology is not None
    router = BirdRouter(lab.topology, lab.workdir)
    router.start()
    try:
        lab.api.set_allowed("node-a", RULES)
        lab.start_agent("node-a", env=bgp_agent_env(lab.topology, "node-a", lab.workdir))
        deadline = time.monotonic() + 15
        while True:
            announced = "node-a" in (await asyncio.to_thread(router.rib)).get("10.96.0.10/32", {})
            written = lab.api.get("services", "web", "default")["status"]["loadBalancer"].get("ingress")
            if announced and written:
                break
            assert time.monotonic() < deadline, lab.agent_log("node-a")[-2000:]
            await asyncio.sleep(0.1)
        assert "forbidden" not in lab.agent_log("node-a").lower()
    finally:
        router.stop()
