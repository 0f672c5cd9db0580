"""The control-plane lab: three control-plane nodes, each with its own API server, behind one VIP.

Built on `LabCluster` (stand-in + node namespaces + real agents). What it adds:
- each node's "own kube-apiserver": the one stand-in store served by a listener on 0.0.0.0:6443 inside
  that node's namespace (TLS with a lab CA by default), stoppable and startable alone, its /livez
  healthy or not; each agent's kubeconfig points at https://127.0.0.1:6443, as kube-vip's static Pod
  reaches its local API server;
- a client namespace on the router's segment, from which `ClientProbe` asks https://VIP:6443/livez;
- the path from the client to the VIP in each mode: ARP (VIP on the holder's eth0, same segment),
  table (table 198 exported by BIRD on each node to a BIRD router that installs the ECMP route) and
  BGP (each agent's own speaker peering with the BIRD router); in table and BGP modes every node
  accepts the VIP locally (a `local` route, as an operator's loopback address would), so whoever
  the router sends a connection to answers it;
- `holders()`: who advertises the VIP by each node's own truth (address on eth0, route in table 198,
  the speaker's announcement), and `HolderChecker`, which reads it every 50 ms in the background.
Never touches anything outside the namespaces it created.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from kvip.lab.api_probe import ClientProbe
from kvip.lab.bgp_router import BirdRouter, bgp_agent_env
from kvip.lab.bird import BIRDC, BirdProcess, node_exporter_config, router_config
from kvip.lab.cluster import AgentProcess, LabCluster, LabError, owned_routes
from kvip.lab.fabric import ROUTER_ASN, node_asn
from kvip.lab.netns import socket_in_netns
from kvip.lab.pki import LabPki, create_pki
from kvip.lab.topology import PREFIX_LEN, ROUTER_ADDRESS, destroy_namespace

NODES = ("node-a", "node-b", "node-c")
CP_PORT = 6443
MODES = ("arp", "table", "bgp")
CLIENT_ADDRESS = "10.250.0.5"
FIB_TABLE = 100  # the router namespace's table holding what its BIRD learned
# Short Lease timing (duration/renew/retry) and a fast local health check, so a failover takes seconds.
FAST_TIMING = {"vip_leaseduration": "3", "vip_renewdeadline": "2", "vip_retryperiod": "1"}
FAST_HEALTH = {"control_plane_health_check_period_seconds": "1", "control_plane_health_check_timeout_seconds": "1",
               "control_plane_health_check_failure_threshold": "2"}


@dataclass(frozen=True)
class CpMode:
    name: str  # arp | table | bgp
    election: bool = True  # vip_leaderelection: one holder; False: every healthy node (table and BGP only)

    @property
    def vip(self) -> str:
        # ARP: on the nodes' segment; routed modes: a prefix only the router's routes lead to.
        return "10.250.100.10" if self.name == "arp" else "10.200.0.10"

    @property
    def prefix(self) -> str:
        return f"{self.vip}/32"

    def env(self) -> dict[str, str]:
        """kube-vip's variables for the control-plane VIP in this mode (BGP peers are per node)."""
        env = {"cp_enable": "true", "svc_enable": "false", "address": self.vip, "port": str(CP_PORT),
               "cp_namespace": "kube-system", "vip_leaderelection": "true" if self.election else "false"}
        if self.name == "arp":
            env.update({"vip_routingtable": "false", "vip_arp": "true", "vip_interface": "eth0", "vip_arpRate": "500"})
        elif self.name == "table":
            env.update({"vip_routingtable": "true", "vip_interface": "lo"})
        return env


@dataclass
class _Fabric:
    """The routed modes' BIRDs: a router installing the ECMP route in FIB_TABLE, and, in table mode, an
    exporter of table 198 on every node (in BGP mode the agents run their own speakers)."""

    router: BirdProcess
    exporters: list[BirdProcess] = field(default_factory=list)

    def stop(self) -> None:
        for bird in (*self.exporters, self.router):
            bird.stop()


class ControlPlaneLab:
    def __init__(self, mode: CpMode, workdir: Path, *, tls: bool = True, nodes: tuple[str, ...] = NODES,
                 timing: Mapping[str, str] | None = None, env: Mapping[str, str] | None = None,
                 resync_period: float = 5.0) -> None:
        self.mode, self.workdir, self.tls = mode, workdir, tls
        base = {**mode.env(), **FAST_HEALTH, **(timing if timing is not None else FAST_TIMING), **(env or {})}
        self.cluster = LabCluster(nodes, workdir=workdir, resync_period=resync_period, agent_env=base)
        self.api = self.cluster.api
        self.nodes = nodes
        self.pki: LabPki | None = None
        self.client_netns = ""
        self._fabric: _Fabric | None = None
        self._bgp_router: BirdRouter | None = None
        self.cut: set[str] = set()

    # -- lifecycle ---------------------------------------------------------------------------

    async def start(self) -> None:
        await self.cluster.start()
        try:
            await self._build()
        except BaseException:
            await self.stop()
            raise

    async def _build(self) -> None:
        topo = self.cluster.topology
        assert topo is not None
        if self.tls:
            self.pki = create_pki(self.workdir / "pki", [self.mode.vip, str(ROUTER_ADDRESS),
                                                         *(str(n.address) for n in topo.nodes)])
        scheme = "https" if self.tls else "http"
        for node in topo.nodes:
            opener = functools.partial(socket_in_netns, node.netns, "0.0.0.0", CP_PORT)
            await self.api.add_listener(node.node_name, opener, self.pki.server_context() if self.pki else None)
            # Its local API server, as kube-vip's static Pod reaches it (kubernetes → 127.0.0.1).
            self.api.write_kubeconfig(self.cluster.kubeconfig_path(node.node_name),
                                      token=self.cluster.token(node.node_name),
                                      server=f"{scheme}://127.0.0.1:{CP_PORT}",
                                      ca_pem=self.pki.ca_pem if self.pki else None)
        self.api.write_kubeconfig(self.workdir / "client.kubeconfig", server=self.url, token="lab-admin",
                                  ca_pem=self.pki.ca_pem if self.pki else None)
        self.client_netns = f"kvip-{topo.run_id}-client"
        _ip("netns", "add", self.client_netns)
        _ip("-n", self.client_netns, "link", "set", "lo", "up")
        outside = f"kv{topo.run_id[-6:]}cl"
        _ip("link", "add", outside, "netns", topo.router_netns, "type", "veth", "peer", "name", "eth0",
            "netns", self.client_netns)
        _ip("-n", topo.router_netns, "link", "set", outside, "master", "br0", "up")
        _ip("-n", self.client_netns, "addr", "add", f"{CLIENT_ADDRESS}/{PREFIX_LEN}", "dev", "eth0")
        _ip("-n", self.client_netns, "link", "set", "eth0", "up")
        _ip("-n", self.client_netns, "route", "add", "default", "via", str(ROUTER_ADDRESS))
        if self.mode.name != "arp":
            await asyncio.to_thread(self._routed_path)

    def _routed_path(self) -> None:
        topo = self.cluster.topology
        assert topo is not None
        # The router forwards the client's packets out of the port they came in by: no ICMP redirects,
        # or the client would cache a path straight to one node and never follow a failover.
        subprocess.run(["ip", "netns", "exec", topo.router_netns, "sysctl", "-qw", "net.ipv4.ip_forward=1",
                        "net.ipv4.conf.all.send_redirects=0", "net.ipv4.conf.br0.send_redirects=0"], check=True)
        _ip("-n", topo.router_netns, "rule", "add", "pref", "100", "lookup", str(FIB_TABLE))
        for node in topo.nodes:
            _ip("-n", node.netns, "route", "add", "local", self.mode.prefix, "dev", "lo", "table", "local")
        if self.mode.name == "bgp":
            self._bgp_router = BirdRouter(topo, self.workdir)
            self._bgp_router.start()
            return
        fib = (f"protocol kernel fib4 {{ kernel table {FIB_TABLE}; merge paths on limit 16; "
               "ipv4 { import none; export all; }; }")
        router = BirdProcess(topo.router_netns, self.workdir / "bird-router", router_config(
            router_id=str(topo.router_address), asn=ROUTER_ASN,
            peers=[(str(n.address), node_asn(i)) for i, n in enumerate(topo.nodes)], extra=fib))
        self._fabric = _Fabric(router)
        router.start()
        for i, node in enumerate(topo.nodes):
            bird = BirdProcess(node.netns, self.workdir / f"bird-{node.node_name}", node_exporter_config(
                router_id=str(node.address), asn=node_asn(i), router_address=str(topo.router_address),
                router_asn=ROUTER_ASN))
            self._fabric.exporters.append(bird)
            bird.start()

    async def stop(self) -> None:
        for name in list(self.cluster.agents):
            await self.cluster.stop_agent(name, timeout=5)
        if self._fabric is not None:
            await asyncio.to_thread(self._fabric.stop)
            self._fabric = None
        if self._bgp_router is not None:
            await asyncio.to_thread(self._bgp_router.stop)
            self._bgp_router = None
        if self.client_netns:
            destroy_namespace(self.client_netns)
        await self.cluster.stop()

    async def __aenter__(self) -> ControlPlaneLab:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    # -- agents ------------------------------------------------------------------------------

    @property
    def url(self) -> str:
        return f"{'https' if self.tls else 'http'}://{self.mode.vip}:{CP_PORT}"

    def agent_env(self, node_name: str) -> dict[str, str]:
        env: dict[str, str] = {}
        if not self.tls:  # kvip's default check is https://127.0.0.1:<port>/livez
            env["control_plane_health_check_address"] = f"http://127.0.0.1:{CP_PORT}/livez"
        if self.mode.name == "bgp":
            assert self.cluster.topology is not None
            env.update(bgp_agent_env(self.cluster.topology, node_name, self.workdir, drain_time=0.0,
                                     extra={"bgp_holdtime": "3", "bgp_keepalivetime": "1"}))
        return env

    def start_agent(self, node_name: str, env: Mapping[str, str] | None = None) -> AgentProcess:
        return self.cluster.start_agent(node_name, env={**self.agent_env(node_name), **(env or {})})

    async def start_agents(self, env: Mapping[str, str] | None = None, timeout: float = 30.0) -> None:
        for name in self.nodes:
            self.start_agent(name, env)
        await self.cluster.wait_agents_ready(timeout)

    async def kill_agent(self, node_name: str, sig: int = signal.SIGKILL) -> None:
        await self.cluster.stop_agent(node_name, sig=sig)

    # -- faults ------------------------------------------------------------------------------

    async def kill_api(self, node_name: str) -> None:
        """That node's kube-apiserver dies: connections refused, its open connections and watches end."""
        await self.api.stop_listener(node_name)

    async def restore_api(self, node_name: str) -> None:
        await self.api.start_listener(node_name)
        self.api.set_listener_health(node_name, "ok")

    def cut_link(self, node_name: str) -> None:
        """The node loses its network: eth0 down, and its API server loses etcd (no quorum on its side),
        so its agent can no longer renew — it must drop the VIP when its lease lapses."""
        _ip("-n", self.cluster.node(node_name).netns, "link", "set", "eth0", "down")
        self.api.set_listener_health(node_name, "no-quorum")
        self.cut.add(node_name)

    def restore_link(self, node_name: str) -> None:
        _ip("-n", self.cluster.node(node_name).netns, "link", "set", "eth0", "up")
        self.api.set_listener_health(node_name, "ok")
        self.cut.discard(node_name)

    # -- observing ---------------------------------------------------------------------------

    def holds(self, node_name: str) -> bool:
        """Whether the node advertises the VIP, by its own truth (not the router's, which lags)."""
        netns = self.cluster.node(node_name).netns
        if self.mode.name == "arp":
            run = subprocess.run(["ip", "-n", netns, "-4", "addr", "show", "dev", "eth0"], capture_output=True,
                                 text=True, check=False)
            return f"inet {self.mode.prefix} " in run.stdout
        if self.mode.name == "table":
            return self.mode.prefix in owned_routes(netns)
        ctl = self.workdir / f"bgp-{node_name}" / "bird.ctl"
        if not ctl.exists():
            return False
        run = subprocess.run([BIRDC, "-r", "-s", str(ctl), "show", "route", "protocol", "kvip4"],
                             capture_output=True, text=True, timeout=5, check=False)
        return run.returncode == 0 and self.mode.prefix in run.stdout

    def holders(self) -> set[str]:
        return {n for n in self.nodes if self.holds(n)}

    def router_paths(self) -> set[str]:
        """The nodes the router would send the VIP's traffic to (routed modes)."""
        if self._bgp_router is not None:
            return set(self._bgp_router.rib(4).get(self.mode.prefix, {}))
        if self._fabric is not None:
            by_address = {str(n.address): n.node_name for n in self.cluster.topology.nodes}  # type: ignore[union-attr]
            return {by_address.get(h, h) for h in self._fabric.router.routes("master4").get(self.mode.prefix, ())}
        return set()

    async def wait_holders(self, check: Callable[[set[str]], bool], *, timeout: float = 20.0,
                           what: str = "holders") -> tuple[set[str], float]:
        start = time.monotonic()
        while True:
            current = await asyncio.to_thread(self.holders)
            if check(current):
                return current, time.monotonic() - start
            if time.monotonic() - start > timeout:
                logs = "\n".join(f"--- {n} ---\n{self.cluster.agent_log(n)[-2500:]}" for n in self.nodes)
                raise LabError(f"{what}: not reached after {timeout}s (holders {sorted(current)})\n{logs}")
            await asyncio.sleep(0.05)

    async def single_holder(self, *, not_on: frozenset[str] = frozenset(), timeout: float = 20.0) -> tuple[str, float]:
        held, took = await self.wait_holders(lambda h: len(h) == 1 and not (h & not_on), timeout=timeout,
                                             what=f"one holder, not on {sorted(not_on)}")
        return next(iter(held)), took

    def probe(self, kind: str = "http", **kwargs: float) -> ClientProbe:
        return ClientProbe(self.client_netns, self.mode.vip, CP_PORT, ca_path=self.pki.ca_path if self.pki else None,
                           kind=kind, kubeconfig=self.workdir / "client.kubeconfig", **kwargs)  # type: ignore[arg-type]


class HolderChecker:
    """Reads every node's holders every `interval` in a thread; `max_holders` is the most seen at once.

    A round reads the nodes in parallel, then waits `interval`; `period` is the measured time per round.
    `ignore` names nodes whose state is known stale (an agent killed with -9 leaves its VIP behind until
    it restarts, as kube-vip's does); they are left out while listed."""

    def __init__(self, lab: ControlPlaneLab, interval: float = 0.05) -> None:
        self.lab, self.interval = lab, interval
        self.ignore: set[str] = set()
        self.max_holders = 0
        self.samples = 0
        self.violations: list[tuple[float, frozenset[str]]] = []
        self.period = 0.0  # measured seconds per round, once stopped
        self._started = 0.0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="holder-checker", daemon=True)

    def _run(self) -> None:
        self._started = time.monotonic()
        # One reader per node, so a round costs one `ip` call, not three.
        with ThreadPoolExecutor(len(self.lab.nodes)) as pool:
            while not self._stop.is_set():
                with contextlib.suppress(Exception):  # a namespace being torn down
                    nodes = [n for n in self.lab.nodes if n not in self.ignore]
                    held = {n for n, holds in zip(nodes, pool.map(self.lab.holds, nodes), strict=True) if holds}
                    self.samples += 1
                    self.max_holders = max(self.max_holders, len(held))
                    if len(held) > 1:
                        self.violations.append((time.monotonic(), frozenset(held)))
                self._stop.wait(self.interval)
        self.period = (time.monotonic() - self._started) / max(1, self.samples)

    def __enter__(self) -> HolderChecker:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(5)


def _ip(*args: str) -> None:
    run = subprocess.run(["ip", *args], capture_output=True, text=True, check=False)
    if run.returncode != 0:
        raise LabError(f"ip {' '.join(args)}: {run.stderr.strip()}")
