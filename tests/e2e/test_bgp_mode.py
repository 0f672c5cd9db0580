"""BGP mode end to end (issue 6): 3 agents in node namespaces, each running its own BIRD speaker,
peering with a router namespace whose daemon kvip does not manage. Every assertion reads the
router: its RIB (paths with their attributes) and, for BIRD, the ECMP route it installed."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest

from kvip.lab.bgp_router import BirdRouter, LabRouter, RouterPath, bgp_agent_env
from kvip.lab.cluster import LabCluster, LabError
from kvip.lab.netns import run_in_netns
from kvip.lab.objects import Endpoint, endpoint_slice, load_balancer_service

pytestmark = pytest.mark.root

NODES = ("node-a", "node-b", "node-c")
VIP = "10.96.0.10"
PREFIX = f"{VIP}/32"


class BgpLab:
    def __init__(self, cluster: LabCluster, router: LabRouter, families: tuple[int, ...]) -> None:
        self.cluster = cluster
        self.router = router
        self.families = families

    def start_agents(self, *names: str, **env_extra: str) -> None:
        assert self.cluster.topology is not None
        for name in names or NODES:
            env = bgp_agent_env(self.cluster.topology, name, self.cluster.workdir, families=self.families,
                                extra=env_extra)
            self.cluster.start_agent(name, env=env)

    async def wait_router(self, check: Callable[[dict[str, dict[str, RouterPath]]], bool], *, family: int = 4,
                          timeout: float = 10.0) -> float:
        start = time.monotonic()
        while True:
            rib = await asyncio.to_thread(self.router.rib, family)
            if check(rib):
                return time.monotonic() - start
            if time.monotonic() - start > timeout:
                logs = "\n".join(f"--- {n} ---\n{self.cluster.agent_log(n)[-2500:]}" for n in self.cluster.agents)
                raise LabError(f"router RIB not as expected after {timeout}s: {rib}\n{logs}")
            await asyncio.sleep(0.02)

    async def wait_nodes(self, prefix: str, nodes: set[str], *, family: int = 4, timeout: float = 10.0) -> float:
        return await self.wait_router(lambda rib: set(rib.get(prefix, {})) == nodes, family=family, timeout=timeout)


@pytest.fixture
async def bgp(tmp_path: Path) -> AsyncIterator[BgpLab]:
    cluster = LabCluster(NODES, workdir=tmp_path, resync_period=3.0)
    await cluster.start()
    assert cluster.topology is not None
    router = BirdRouter(cluster.topology, tmp_path, families=(4, 6))
    router.start()
    try:
        yield BgpLab(cluster, router, (4, 6))
    finally:
        await cluster.stop()
        router.stop()


def web(lab: BgpLab, nodes: list[str], *, vip: str = VIP, name: str = "web", policy: str = "Local",
        annotations: dict[str, str] | None = None) -> None:
    service = load_balancer_service(name, vips=[vip], external_traffic_policy=policy)
    service["metadata"].setdefault("annotations", {}).update(annotations or {})
    lab.cluster.api.create(service)
    lab.cluster.api.create(endpoint_slice(name, [Endpoint(f"10.244.{i}.5", n) for i, n in enumerate(nodes)]))


def move_endpoints(lab: BgpLab, nodes: list[str], name: str = "web") -> None:
    api = lab.cluster.api
    api.replace({**api.get("endpointslices", f"{name}-kvip", "default"),
                 "endpoints": [{"addresses": [f"10.244.9.{i}"], "nodeName": n, "conditions": {"ready": True}}
                               for i, n in enumerate(nodes)]})


async def test_router_learns_vip_from_exactly_the_nodes_with_ready_endpoints_as_ecmp(bgp: BgpLab) -> None:
    web(bgp, ["node-a", "node-b"])
    bgp.start_agents()
    await bgp.wait_nodes(PREFIX, {"node-a", "node-b"}, timeout=15)
    assert isinstance(bgp.router, BirdRouter)
    deadline = time.monotonic() + 5
    while await asyncio.to_thread(bgp.router.established) != set(NODES):  # node-c peers, announcing nothing
        assert time.monotonic() < deadline
        await asyncio.sleep(0.1)
    while bgp.router.fib().get(PREFIX) != {"node-a", "node-b"}:
        assert time.monotonic() < deadline, bgp.router.fib()
        await asyncio.sleep(0.05)
    while 'kvip_bgp_session_up{peer="10.250.0.1:65000"} 1.0' not in (text := metrics(bgp, "node-a")):
        assert time.monotonic() < deadline + 5, text
        await asyncio.sleep(0.2)
    assert 'kvip_drift_items{backend="bgp"} 0.0' in text
    assert 'kvip_bgp_speaker_restarts_total 0.0' in text
    shown = run_in_netns(bgp.cluster.node("node-a").netns, [sys.executable, "-m", "kvip", "status", "--socket",
                                                            str(bgp.cluster.status_socket("node-a"))]).stdout
    assert "10.250.0.1:65000" in shown and "Established" in shown and "announcing 1 prefix" in shown
    # kvip.io/advertised-by names the peer each carrier exports the VIP to (the IPv6 session does not carry it)
    while (said := (bgp.cluster.api.get("services", "web", "default")["metadata"].get("annotations") or {}).get(
            "kvip.io/advertised-by")) != "node-a(peer 10.250.0.1),node-b(peer 10.250.0.1)":
        assert time.monotonic() < deadline + 20, said
        await asyncio.sleep(0.2)


def metrics(lab: BgpLab, node: str) -> str:
    return run_in_netns(lab.cluster.node(node).netns, ["curl", "-s", "http://127.0.0.1:2112/metrics"]).stdout


async def test_endpoint_move_and_service_deletion_reach_the_router_within_a_second(bgp: BgpLab) -> None:
    web(bgp, ["node-a"])
    bgp.start_agents()
    await bgp.wait_nodes(PREFIX, {"node-a"}, timeout=15)

    move_endpoints(bgp, ["node-c"])
    assert await bgp.wait_nodes(PREFIX, {"node-c"}, timeout=1.0) <= 1.0

    bgp.cluster.api.delete("services", "web", "default")
    assert await bgp.wait_router(lambda rib: PREFIX not in rib, timeout=1.0) <= 1.0


async def test_ipv6_vip_is_announced_as_a_128_over_the_ipv6_session(bgp: BgpLab) -> None:
    service = load_balancer_service("web6", vips=["fd00:96::10"], external_traffic_policy="Local")
    service["spec"]["ipFamilies"] = ["IPv6"]
    bgp.cluster.api.create(service)
    bgp.cluster.api.create(endpoint_slice("web6", [Endpoint("fd00:244::5", "node-b")], address_type="IPv6"))
    bgp.start_agents()
    await bgp.wait_nodes("fd00:96::10/128", {"node-b"}, family=6, timeout=15)
    rib4 = await asyncio.to_thread(bgp.router.rib, 4)
    assert not any(p.startswith("fd00") for p in rib4)


async def test_communities_large_communities_and_local_pref_from_annotations_reach_the_router(
    tmp_path: Path,
) -> None:
    # local-pref only travels over iBGP, so the router is in the nodes' AS here.
    cluster = LabCluster(NODES[:1], workdir=tmp_path, resync_period=3.0)
    await cluster.start()
    assert cluster.topology is not None
    router = BirdRouter(cluster.topology, tmp_path, asn=65101, node_asn=65101)
    router.start()
    lab = BgpLab(cluster, router, (4,))
    try:
        web(lab, ["node-a"], annotations={
            "kvip.io/bgp-communities": "65000:100, no-export",
            "kvip.io/bgp-large-communities": "65000:1:2",
            "kvip.io/bgp-local-pref": "250",
        })
        env = bgp_agent_env(cluster.topology, "node-a", tmp_path, router_asn=65101)
        cluster.start_agent("node-a", env=env)
        await lab.wait_nodes(PREFIX, {"node-a"}, timeout=15)
        path = (await asyncio.to_thread(router.rib))[PREFIX]["node-a"]
        assert path.communities == {"65000:100", "65535:65281"}
        assert path.large_communities == {"65000:1:2"}
        assert path.local_pref == 250
    finally:
        await cluster.stop()
        router.stop()


async def test_sigterm_drains_with_graceful_shutdown_community_before_the_withdraw(bgp: BgpLab) -> None:
    web(bgp, ["node-a", "node-b"])
    bgp.start_agents("node-a", "node-b")
    await bgp.wait_nodes(PREFIX, {"node-a", "node-b"}, timeout=15)

    seen: list[tuple[float, frozenset[str] | None]] = []

    async def sample() -> None:
        while True:
            rib = await asyncio.to_thread(bgp.router.rib)
            path = rib.get(PREFIX, {}).get("node-a")
            seen.append((time.monotonic(), path.communities if path else None))
            if path is None:
                return
            await asyncio.sleep(0.02)

    sampler = asyncio.create_task(sample())
    stopping = asyncio.create_task(bgp.cluster.stop_agent("node-a"))
    await asyncio.wait_for(sampler, 10)
    assert await stopping == 0
    drained = [t for t, c in seen if c is not None and "65535:0" in c]
    assert drained, f"router never saw GRACEFUL_SHUTDOWN from node-a: {seen}"
    withdrawn_at = seen[-1][0]
    assert withdrawn_at - drained[0] >= 0.8  # drain_time 1 s, sampled every ~20 ms
    rib = await asyncio.to_thread(bgp.router.rib)
    assert set(rib[PREFIX]) == {"node-b"} and "65535:0" not in rib[PREFIX]["node-b"].communities


async def test_cordon_drains_then_withdraws_and_uncordon_announces_again(bgp: BgpLab) -> None:
    web(bgp, ["node-a", "node-b"])
    bgp.start_agents("node-a", "node-b")
    await bgp.wait_nodes(PREFIX, {"node-a", "node-b"}, timeout=15)
    api = bgp.cluster.api
    api.patch("nodes", "node-a", {"spec": {"unschedulable": True}})
    await bgp.wait_router(lambda rib: "65535:0" in rib.get(PREFIX, {}).get("node-a", RouterPath("")).communities,
                          timeout=2)
    await bgp.wait_nodes(PREFIX, {"node-b"}, timeout=3)
    api.patch("nodes", "node-a", {"spec": {"unschedulable": False}})
    await bgp.wait_nodes(PREFIX, {"node-a", "node-b"}, timeout=3)


async def test_killed_speaker_is_restarted_and_router_converges_again(bgp: BgpLab) -> None:
    web(bgp, ["node-a"])
    bgp.start_agents("node-a")
    await bgp.wait_nodes(PREFIX, {"node-a"}, timeout=15)
    pid = int((bgp.cluster.workdir / "bgp-node-a" / "bird.pid").read_text())
    os.kill(pid, signal.SIGKILL)
    await bgp.wait_nodes(PREFIX, set(), timeout=15)  # the router drops the session's routes (hold/close)
    took = await bgp.wait_nodes(PREFIX, {"node-a"}, timeout=15)
    assert int((bgp.cluster.workdir / "bgp-node-a" / "bird.pid").read_text()) != pid
    assert "restarting" in bgp.cluster.agent_log("node-a")
    assert took < 10


async def test_speaker_rib_changed_behind_our_back_is_read_back_and_repaired(bgp: BgpLab) -> None:
    web(bgp, ["node-a"])
    bgp.start_agents("node-a")
    await bgp.wait_nodes(PREFIX, {"node-a"}, timeout=15)
    run_dir = bgp.cluster.workdir / "bgp-node-a"
    # An operator (or a bug) empties the speaker's announcements and reloads it by hand.
    (run_dir / "vips4.conf").write_text("# emptied by hand\n")
    subprocess.run(["birdc", "-s", str(run_dir / "bird.ctl"), "configure"], check=True, capture_output=True)
    # BIRD's own log says it was reconfigured by someone else: kvip re-reads and repairs at once,
    # well before the periodic re-read (resync period 3 s) would.
    took = await bgp.wait_nodes(PREFIX, {"node-a"}, timeout=5)
    assert took <= 1.0
    # Disabling kvip's static protocol by hand withdraws everything; kvip sees the state change in BIRD's log
    # and re-enables it (often before the router even notices the withdraw).
    start = time.monotonic()
    subprocess.run(["birdc", "-s", str(run_dir / "bird.ctl"), "disable", "kvip4"], check=True, capture_output=True)
    while "Enabling protocol kvip4" not in bgp.cluster.agent_log("node-a"):
        assert time.monotonic() - start < 1.0, bgp.cluster.agent_log("node-a")[-2000:]
        await asyncio.sleep(0.01)
    await bgp.wait_nodes(PREFIX, {"node-a"}, timeout=1.0)
    assert time.monotonic() - start <= 1.0


async def test_bfd_and_graceful_restart_settings_reach_the_sessions(tmp_path: Path) -> None:
    cluster = LabCluster(NODES[:1], workdir=tmp_path, resync_period=3.0)
    await cluster.start()
    assert cluster.topology is not None
    router = BirdRouter(cluster.topology, tmp_path, bfd=True)
    router.start()
    try:
        env = bgp_agent_env(cluster.topology, "node-a", tmp_path,
                            extra={"kvip_bgp_bfd": "true", "kvip_bgp_graceful_restart": "60"})
        cluster.start_agent("node-a", env=env)
        address = str(cluster.node("node-a").address)
        deadline = time.monotonic() + 15
        while True:
            bfd = await asyncio.to_thread(router.bird.birdc, "show", "bfd", "sessions")
            if any(address in line and " Up " in line for line in bfd.splitlines()):
                break
            assert time.monotonic() < deadline, bfd + cluster.agent_log("node-a")[-2000:]
            await asyncio.sleep(0.1)
        while "Established" not in (session := await asyncio.to_thread(router.bird.birdc, "show", "protocols",
                                                                        "all", "node0")):
            assert time.monotonic() < deadline, session
            await asyncio.sleep(0.1)
        # kvip's speaker advertised the graceful restart capability with its restart time.
        neighbor = session.split("Neighbor capabilities", 1)[1].split("Session:", 1)[0]
        assert "Graceful restart" in neighbor and "Restart time: 60" in neighbor, session
    finally:
        await cluster.stop()
        router.stop()


async def test_frr_router_learns_the_ecmp_set_and_attributes_and_follows_moves(tmp_path: Path) -> None:
    from kvip.lab.frr import FrrRouter

    cluster = LabCluster(NODES, workdir=tmp_path, resync_period=3.0)
    await cluster.start()
    assert cluster.topology is not None
    router = FrrRouter(cluster.topology, tmp_path, families=(4, 6))
    router.start()
    lab = BgpLab(cluster, router, (4, 6))
    try:
        web(lab, ["node-a", "node-b"], annotations={"kvip.io/bgp-communities": "65000:100",
                                                    "kvip.io/bgp-large-communities": "65000:1:2"})
        lab.start_agents()
        await lab.wait_nodes(PREFIX, {"node-a", "node-b"}, timeout=15)
        # FRR selected both paths (best + multipath): the ECMP set it would install.
        assert (await asyncio.to_thread(router.selected))[PREFIX] == {"node-a", "node-b"}
        path = (await asyncio.to_thread(router.rib))[PREFIX]["node-a"]
        assert path.communities == {"65000:100"} and path.large_communities == {"65000:1:2"}

        move_endpoints(lab, ["node-c"])
        assert await lab.wait_nodes(PREFIX, {"node-c"}, timeout=1.0) <= 1.0

        service = load_balancer_service("web6", vips=["fd00:96::20"], external_traffic_policy="Cluster")
        service["spec"]["ipFamilies"] = ["IPv6"]
        cluster.api.create(service)
        cluster.api.create(endpoint_slice("web6", [Endpoint("fd00:244::7", "node-a")], address_type="IPv6"))
        await lab.wait_nodes("fd00:96::20/128", set(NODES), family=6, timeout=5)
        assert (await asyncio.to_thread(router.selected, 6))["fd00:96::20/128"] == set(NODES)
    finally:
        await cluster.stop()
        router.stop()


async def test_with_an_election_sigterm_is_make_before_break_the_router_never_loses_the_vip(bgp: BgpLab) -> None:
    web(bgp, ["node-a", "node-b", "node-c"], policy="Cluster")
    bgp.start_agents(svc_election="true", vip_leaseduration="3", vip_renewdeadline="2", vip_retryperiod="0.5")
    await bgp.wait_router(lambda rib: len(rib.get(PREFIX, {})) == 1, timeout=15)
    leader = next(iter((await asyncio.to_thread(bgp.router.rib))[PREFIX]))

    samples: list[dict[str, RouterPath]] = []

    async def sample() -> None:
        while True:
            paths = (await asyncio.to_thread(bgp.router.rib)).get(PREFIX, {})
            samples.append(paths)
            if paths and leader not in paths:
                return
            await asyncio.sleep(0.02)

    sampler = asyncio.create_task(sample())
    await bgp.cluster.stop_agent(leader)
    await asyncio.wait_for(sampler, 15)
    assert all(samples), "the router had no path for the VIP at some instant"
    # The successor was already announcing while the old leader was still there (make-before-break), and the
    # old leader's last path carried GRACEFUL_SHUTDOWN (it drained rather than vanished).
    timeline = [{n: "65535:0" in p.communities for n, p in s.items()} for s in samples]
    assert any(leader in s and len(s) == 2 for s in samples), (leader, timeline)
    last = [s for s in samples if leader in s][-1]
    assert "65535:0" in last[leader].communities, (leader, timeline)


async def test_agent_started_on_an_already_cordoned_node_announces_nothing_not_even_draining(bgp: BgpLab) -> None:
    web(bgp, ["node-a", "node-b"])
    bgp.cluster.api.patch("nodes", "node-a", {"spec": {"unschedulable": True}})
    bgp.start_agents("node-a", "node-b")
    seen: set[str] = set()
    deadline = time.monotonic() + 6.0  # sessions up (~1 s) plus well over the drain time (1 s)
    while time.monotonic() < deadline:
        seen |= set((await asyncio.to_thread(bgp.router.rib)).get(PREFIX, {}))
        await asyncio.sleep(0.02)
    assert seen == {"node-b"}


async def test_bgp_sourceip_is_the_session_source_and_the_next_hop(tmp_path: Path) -> None:
    from kvip.lab.bird import BirdProcess, router_config

    cluster = LabCluster(NODES[:1], workdir=tmp_path, resync_period=3.0)
    await cluster.start()
    assert cluster.topology is not None
    source = "10.250.0.111"
    run_in_netns(cluster.node("node-a").netns, ["ip", "addr", "add", f"{source}/16", "dev", "eth0"])
    router = BirdProcess(cluster.topology.router_netns, tmp_path / "router",
                         router_config(router_id="10.250.0.1", asn=65000, peers=[(source, 65101)]))
    router.start()
    try:
        web(BgpLab(cluster, None, (4,)), ["node-a"])  # type: ignore[arg-type]
        cluster.start_agent("node-a", env=bgp_agent_env(cluster.topology, "node-a", tmp_path,
                                                        extra={"bgp_sourceip": source}))
        deadline = time.monotonic() + 15
        while not [p for p in await asyncio.to_thread(router.paths) if p.prefix == PREFIX]:
            assert time.monotonic() < deadline, cluster.agent_log("node-a")[-2000:]
            await asyncio.sleep(0.1)
        [path] = [p for p in router.paths() if p.prefix == PREFIX]
        assert path.next_hop == source
        assert router.established_peers() == {source}
    finally:
        await cluster.stop()
        router.stop()


async def test_kube_vip_daemonset_bgp_env_without_router_id_announces_from_every_node_with_endpoints(
        tmp_path: Path) -> None:
    """Issue #23: `kube-vip manifest daemonset --services --bgp --leaderElection`'s env without --bgpRouterID
    (bgp_as default 65000). It failed every pass reading the host's addresses on its own event loop."""
    cluster = LabCluster(NODES, workdir=tmp_path, resync_period=3.0)
    await cluster.start()
    assert cluster.topology is not None
    router = BirdRouter(cluster.topology, tmp_path, asn=64512, node_asn=65000)  # bgp_as unset: 65000
    router.start()
    try:
        lab = BgpLab(cluster, router, (4,))
        web(lab, ["node-a", "node-b"])
        for name in NODES:
            cluster.start_agent(name, env={
                "vip_arp": "false", "port": "6443", "svc_enable": "true", "svc_leasename": "plndr-svcs-lock",
                "vip_leaderelection": "true", "bgp_enable": "true", "bgp_routerid": "", "bgp_peeraddress": "",
                "bgp_peerpass": "", "bgp_peeras": "65000",
                "bgp_peers": f"{cluster.topology.router_address}:64512::false",
                "bgp_hold_time": "9", "bgp_keepalive_interval": "3",
                "vip_routingtable": "false", "kvip_bgp_rundir": str(tmp_path / f"bgp-{name}"),  # the lab's
            })
        # vip_leaderelection elects no single BGP speaker: both nodes with endpoints announce, as kube-vip.
        await lab.wait_nodes(PREFIX, {"node-a", "node-b"}, timeout=20)
        log, address = cluster.agent_log("node-a"), cluster.node("node-a").address
        assert f"router id {address} from the first IPv4 address of the host" in log, log[-2000:]
        assert "vip_leaderelection=true: in BGP mode every node announces" in log
    finally:
        await cluster.stop()
        router.stop()
