"""The control-plane VIP end to end (issue #18): three control-plane nodes in namespaces, each with its own
API server (one stand-in store, a TLS listener on :6443 in each node), real agents with kube-vip's
variables, a client asking https://VIP:6443/livez through the VIP, in ARP, table and BGP (BIRD router) modes.

Holders are read from each node's own truth (address on eth0, route in table 198, the speaker's
announcement); in election mode a checker reads them every 50 ms and there must never be two.
Lease timing 3/2/1 s and a 1 s x 2 local health check keep every failover to a few seconds."""

from __future__ import annotations

import asyncio
import signal
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from kvip.lab.control_plane import ControlPlaneLab, CpMode, HolderChecker
from kvip.lab.objects import Endpoint, endpoint_slice, load_balancer_service

pytestmark = pytest.mark.root

NODES = frozenset({"node-a", "node-b", "node-c"})
LEASE, RENEW, RETRY = 3.0, 2.0, 1.0
# Others take a lapsed Lease lease_duration after they last saw it change (seen within one retry), then
# on their next retry; the rest is a loaded 2-core machine's slack.
FAILOVER_BOUND = LEASE + 2 * RETRY + 2.0


async def _lab(tmp_path: Path, mode: CpMode, **kwargs: object) -> ControlPlaneLab:
    lab = ControlPlaneLab(mode, tmp_path, **kwargs)  # type: ignore[arg-type]
    await lab.start()
    return lab


@pytest.fixture
async def cp_lab(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[ControlPlaneLab]:
    lab = await _lab(tmp_path, CpMode(request.param))
    try:
        yield lab
    finally:
        await lab.stop()


@pytest.mark.parametrize("cp_lab", ["arp", "table", "bgp"], indirect=True)
async def test_one_holder_moves_on_api_server_death_agent_kill_and_link_loss_never_two(cp_lab: ControlPlaneLab) -> None:
    lab = cp_lab
    await lab.start_agents()
    leader, _ = await lab.single_holder(timeout=20)
    probe = lab.probe("http", interval=0.05, timeout=1.0).start()
    await probe.wait_ok_after(time.monotonic(), 15)
    with HolderChecker(lab) as checker:
        # 1. The leader's API server dies: its agent can neither renew nor report; another node takes over.
        t0 = time.monotonic()
        marks = {"api-death": t0}
        await lab.kill_api(leader)
        second, moved = await lab.single_holder(not_on=frozenset({leader}), timeout=FAILOVER_BOUND + 5)
        assert moved <= FAILOVER_BOUND, moved
        await probe.wait_ok_after(time.monotonic(), 10)
        assert probe.downtime(t0) <= FAILOVER_BOUND + 1.0
        await lab.restore_api(leader)

        # 2. kill -9 of the new leader's agent: nothing withdraws (the VIP stays behind, as with kube-vip)
        # until the others take the lapsed Lease; the kubelet restarts it and it cleans up.
        checker.ignore.add(second)
        marks["kill-9"] = time.monotonic()
        await lab.kill_agent(second, signal.SIGKILL)
        held, moved = await lab.wait_holders(lambda h: len(h - {second}) == 1, timeout=FAILOVER_BOUND + 5)
        assert moved <= FAILOVER_BOUND, moved
        third = held - {second}
        marks["restart"] = time.monotonic()
        lab.start_agent(second)
        await lab.wait_holders(lambda h: h == third, timeout=20, what="restarted agent drops its stale VIP")
        checker.ignore.discard(second)
        third_node = next(iter(third))

        # 3. The new leader's link is cut (its API server loses etcd): it drops the VIP itself at its renew
        # deadline, and only then may another node take it.
        cut = marks["cut"] = time.monotonic()
        lab.cut_link(third_node)
        _, dropped = await lab.wait_holders(lambda h: third_node not in h, timeout=RENEW + 3)
        assert dropped <= RENEW + 1.5, dropped
        fourth, moved = await lab.single_holder(not_on=frozenset({third_node}), timeout=FAILOVER_BOUND + 5)
        assert fourth != third_node and time.monotonic() - cut <= FAILOVER_BOUND + 1
        marks["restore"] = time.monotonic()
        lab.restore_link(third_node)
        await probe.wait_ok_after(time.monotonic(), 10)
        # Restored, the cut node stays a follower.
        assert (await lab.single_holder(timeout=5))[0] == fourth
    probe.stop()
    timeline = {k: round(v - t0, 2) for k, v in marks.items()}
    assert checker.samples > 100 and checker.max_holders == 1, (
        timeline, [(round(at - t0, 2), sorted(held)) for at, held in checker.violations[:5]])


@pytest.mark.parametrize("cp_lab", ["table", "bgp"], indirect=True)
async def test_anycast_every_healthy_node_advertises_and_an_unhealthy_api_server_withdraws(
        cp_lab: ControlPlaneLab) -> None:
    lab = cp_lab
    await lab.start_agents(env={"vip_leaderelection": "false"})
    await lab.wait_holders(lambda h: h == NODES, timeout=20, what="every node advertises")
    lab.api.set_listener_health("node-b", "unhealthy")  # /livez 503, requests still served
    _, took = await lab.wait_holders(lambda h: h == NODES - {"node-b"}, timeout=10, what="node-b withdraws")
    assert took <= 2 * 1 + 1 + 2.0, took  # 2 failed checks of a 1 s period, plus one check's timeout
    lab.api.set_listener_health("node-b", "ok")
    await lab.wait_holders(lambda h: h == NODES, timeout=10, what="node-b advertises again")
    # The router (what clients follow) learns the whole set again, and the client gets answers.
    deadline = time.monotonic() + 10
    while (paths := await asyncio.to_thread(lab.router_paths)) != NODES:
        assert time.monotonic() < deadline, paths
        await asyncio.sleep(0.1)
    probe = lab.probe("http").start()
    await probe.wait_ok_after(time.monotonic(), 10)
    probe.stop()


@pytest.mark.parametrize("cp_lab", ["arp"], indirect=True)
async def test_sigterm_withdraws_at_once_and_releases_the_lease(cp_lab: ControlPlaneLab) -> None:
    lab = cp_lab
    await lab.start_agents()
    leader, _ = await lab.single_holder(timeout=20)
    t0 = time.monotonic()
    await lab.kill_agent(leader, signal.SIGTERM)
    gone = time.monotonic() - t0
    assert not lab.holds(leader) and gone < 2.0, gone  # withdrawn before the process exited
    _, moved = await lab.single_holder(not_on=frozenset({leader}), timeout=10)
    assert moved <= 2 * RETRY + 1.0, moved  # released Lease: taken on the next retry, no lease wait


@pytest.mark.parametrize("cp_lab", ["table"], indirect=True)
async def test_hybrid_one_agent_serves_the_control_plane_vip_and_a_service(cp_lab: ControlPlaneLab) -> None:
    """kube-vip's hybrid DaemonSet: cp_enable and svc_enable with vip_leaderelection; each VIP on its
    Lease's holder (plndr-cp-lock, plndr-svcs-lock), from the same agents."""
    lab = cp_lab
    lab.api.create(load_balancer_service("web", vips=["10.96.0.50"], external_traffic_policy="Cluster"))
    lab.api.create(endpoint_slice("web", [Endpoint("10.244.1.5", "node-a"), Endpoint("10.244.2.5", "node-c")]))
    await lab.start_agents(env={"svc_enable": "true"})
    leader, _ = await lab.single_holder(timeout=20)
    deadline = time.monotonic() + 15
    while True:
        routes = lab.cluster.all_routes()
        service = {n for n, r in routes.items() if "10.96.0.50/32" in r}
        if len(service) == 1:
            break
        assert time.monotonic() < deadline, routes
        await asyncio.sleep(0.1)
    assert {n for n, r in routes.items() if lab.mode.prefix in r} == {leader}
    holder = {name: lab.api.get("leases", name, "kube-system")["spec"]["holderIdentity"]
              for name in ("plndr-cp-lock", "plndr-svcs-lock")}
    assert holder == {"plndr-cp-lock": leader, "plndr-svcs-lock": next(iter(service))}


# kube-vip's static Pod, as `kube-vip manifest pod --interface eth0 --address <VIP> --controlplane --arp
# --leaderElection` writes its env (pkg/kubevip/config_generator.go): every variable, unchanged.
# Only the kubeconfig path differs: the lab cannot mount /etc/kubernetes/admin.conf, so k8s_config_file
# (set by the lab for every agent) points at this node's file.
def kube_vip_static_pod_env(vip: str) -> dict[str, str]:
    return {"vip_arp": "true", "port": "6443", "vip_interface": "eth0", "vip_subnet": "32", "dns_mode": "first",
            "cp_enable": "true", "cp_namespace": "kube-system", "vip_leaderelection": "true",
            "vip_leasename": "plndr-cp-lock", "vip_leaseduration": "15", "vip_renewdeadline": "10",
            "vip_retryperiod": "2", "address": vip, "prometheus_server": ":2112"}


async def test_kube_vip_static_pod_env_applied_unchanged_elects_one_and_moves_on_sigterm(tmp_path: Path) -> None:
    mode = CpMode("arp")
    env = kube_vip_static_pod_env(mode.vip)
    lab = await _lab(tmp_path, mode, timing={}, env=env)
    try:
        for name in sorted(NODES):
            # Exactly kube-vip's variables: nothing from the lab's own defaults but the node name and kubeconfig.
            lab.cluster.start_agent(name, env={**env, "vip_nodename": name}, env_only=True)
        leader, _ = await lab.single_holder(timeout=30)
        lease = lab.api.get("leases", "plndr-cp-lock", "kube-system")
        assert lease["spec"]["holderIdentity"] == leader and lease["spec"]["leaseDurationSeconds"] == 15
        probe = lab.probe("http").start()
        await probe.wait_ok_after(time.monotonic(), 10)
        await lab.kill_agent(leader, signal.SIGTERM)
        _, moved = await lab.single_holder(not_on=frozenset({leader}), timeout=15)
        assert moved <= 2 * 2 + 2.0, moved  # released: the next retry (2 s) takes it, not the 15 s lease
        await probe.wait_ok_after(time.monotonic(), 10)
        probe.stop()
    finally:
        await lab.stop()
