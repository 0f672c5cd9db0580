"""The agent runs on exactly the RBAC rules kvip generates — and says which one is missing when any is removed.

The expected grants are written out here by hand, not computed by the code under test: the first test
checks kvip.deploy.rbac produces exactly them. The stand-in enforces them as the node's allow list the
way RBAC does — (apiGroup, resource, verb, namespace), namespace None for a ClusterRole binding — so a
rule in the wrong namespace or API group is as missing as an absent one.
"""

from __future__ import annotations

import asyncio
import copy
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from kvip.deploy.rbac import agent_rules, allow_list
from kvip.lab.cluster import LabCluster
from kvip.lab.objects import Endpoint, endpoint_slice, load_balancer_service

pytestmark = pytest.mark.root

Grant = tuple[str, str, str, str | None]
CLUSTER = None  # a ClusterRole binding: every namespace
AGENT_NS = "kube-system"  # where the lab's agents run (cp_namespace)
COMMON: set[Grant] = {
    ("", "services", "list", CLUSTER), ("", "services", "watch", CLUSTER),
    ("", "services", "patch", CLUSTER),  # the kvip.io/advertised-by annotation
    ("", "services/status", "patch", CLUSTER),
    ("discovery.k8s.io", "endpointslices", "list", CLUSTER), ("discovery.k8s.io", "endpointslices", "watch", CLUSTER),
    ("", "nodes", "list", CLUSTER), ("", "nodes", "watch", CLUSTER),
    ("", "events", "create", CLUSTER), ("", "events", "patch", CLUSTER),
}
LEASES = "coordination.k8s.io"
EXPECTED: dict[str, set[Grant]] = {
    # the heartbeat Leases only, in the agent's namespace: ours created once, then renewed by patch; all watched
    "none": COMMON | {(LEASES, "leases", verb, AGENT_NS) for verb in ("create", "list", "patch", "watch")},
    # + observing the global Lease's holder
    "global": COMMON | {(LEASES, "leases", verb, AGENT_NS)
                        for verb in ("create", "get", "list", "patch", "update", "watch")},
    # a Lease in every Service's namespace
    "service": COMMON | {(LEASES, "leases", verb, CLUSTER)
                         for verb in ("create", "get", "list", "patch", "update", "watch")},
}
RULES = EXPECTED["none"]


@pytest.mark.parametrize("election", sorted(EXPECTED))
def test_the_generated_rules_are_exactly_the_expected_grants(election: str) -> None:
    assert allow_list(agent_rules(election=election), AGENT_NS) == EXPECTED[election]


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


async def flap_broken_service(lab: LabCluster) -> None:
    """Once the "broken" Service's Event exists, fix and break it again: the same Event again, which is
    a count update (patch) of the first, not a second object."""
    deadline = time.monotonic() + 10
    while not [e for e in lab.api.list("events", "default") if e["involvedObject"]["name"] == "broken"]:
        assert time.monotonic() < deadline, lab.agent_log("node-a")[-2000:]
        await asyncio.sleep(0.1)
    for vip in ("10.96.0.30", "10.96.0.300"):
        # A copy: editing the stand-in's stored object in place would change it without a new resourceVersion.
        service = copy.deepcopy(lab.api.get("services", "broken", "default"))
        service["metadata"]["annotations"]["kube-vip.io/loadbalancerIPs"] = vip
        lab.api.replace(service)
        await asyncio.sleep(2.5)  # > the lab's resync period: seen even if a watch event were lost


@pytest.mark.parametrize("missing", sorted(RULES, key=str), ids=lambda g: f"{g[2]}-{g[1]}-{g[3] or 'cluster'}")
async def test_removing_any_one_rule_is_reported_naming_the_permission(lab: LabCluster, missing: Grant) -> None:
    _, resource, verb, _ = missing
    lab.api.set_allowed("node-a", RULES - {missing})
    lab.start_agent("node-a")
    if (resource, verb) == ("events", "patch"):
        await flap_broken_service(lab)
    plural = resource.split("/")[0]
    deadline = time.monotonic() + 12
    while True:
        log = lab.agent_log("node-a")
        if f'cannot {verb} resource "{plural}' in log or f'cannot {verb} resource "{resource}"' in log:
            break
        assert time.monotonic() < deadline, f"no report of missing {verb} {resource}:\n{log[-2000:]}"
        await asyncio.sleep(0.1)


async def test_the_heartbeat_lease_granted_in_another_namespace_does_not_count(lab: LabCluster) -> None:
    elsewhere = {(g[0], g[1], g[2], "default" if g[3] == AGENT_NS else g[3]) for g in RULES}
    lab.api.set_allowed("node-a", elsewhere)
    lab.start_agent("node-a")
    deadline = time.monotonic() + 12
    while 'cannot patch resource "leases" in API group "coordination.k8s.io" in the namespace "kube-system"' \
            not in lab.agent_log("node-a"):
        assert time.monotonic() < deadline, lab.agent_log("node-a")[-2000:]
        await asyncio.sleep(0.1)


@pytest.mark.parametrize("election,env", [("service", {"svc_election": "true"}),
                                          ("global", {"vip_leaderelection": "true"}),
                                          ("global", {"vip_routingtable": "false", "vip_arp": "true",
                                                      "vip_interface": "eth0", "vip_leaderelection": "true"})],
                         ids=["service-election", "global-election", "arp-global"])
async def test_election_and_arp_modes_run_on_their_generated_rules(lab: LabCluster, election: str,
                                                                   env: dict[str, str]) -> None:
    lab.api.set_allowed("node-a", EXPECTED[election])
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


# per_service_election_on_demand: a Lease in each annotated Service's own namespace, so cluster-wide (as "service");
# the elected control-plane VIP: its Lease (vip_leasename) beside the heartbeat, in the agent's namespace.
ON_DEMAND: set[Grant] = EXPECTED["service"]
CONTROL_PLANE: set[Grant] = EXPECTED["global"]


def test_on_demand_and_control_plane_leases_are_exactly_the_expected_grants() -> None:
    assert allow_list(agent_rules(election="none", on_demand=True), AGENT_NS) == ON_DEMAND
    assert allow_list(agent_rules(election="global", on_demand=True), AGENT_NS) == ON_DEMAND
    assert allow_list(agent_rules(election="none", control_plane=True), AGENT_NS) == CONTROL_PLANE


async def test_a_service_forced_to_its_own_election_on_demand_runs_on_the_generated_rules(lab: LabCluster) -> None:
    service = lab.api.get("services", "web", "default")
    service["metadata"]["annotations"]["kube-vip.io/forcePerServiceElection"] = "true"
    lab.api.replace(service)
    lab.api.set_allowed("node-a", ON_DEMAND)
    lab.start_agent("node-a", env={"per_service_election_on_demand": "true", "vip_leaseduration": "3",
                                   "vip_renewdeadline": "2", "vip_retryperiod": "0.5"})
    deadline = time.monotonic() + 15
    while True:
        held = [l for l in lab.api.list("leases", "default")
                if l["metadata"]["name"] == "kubevip-web" and l["spec"].get("holderIdentity")]
        if held and lab.routes("node-a") == {"10.96.0.10/32"}:
            break
        assert time.monotonic() < deadline, lab.agent_log("node-a")[-2000:]
        await asyncio.sleep(0.1)
    assert "forbidden" not in lab.agent_log("node-a").lower()
