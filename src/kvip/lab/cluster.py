"""A whole lab cluster on one machine: API stand-in + node namespaces + one real agent per node.

Used by the end-to-end tests, the benchmarks and `kvip lab`, so all three exercise exactly the same
parts: the stand-in listens *inside* the router namespace (10.250.0.1:6443) and each agent is a real
`kvip agent` process started with `ip netns exec` in its node namespace, with its own bearer token
(so RBAC can be revoked for one node only) and kube-vip environment variables.
Never touches anything outside the namespaces it created.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from kvip.lab import objects
from kvip.lab.apiserver import StandIn
from kvip.lab.netns import popen_in_netns, socket_in_netns
from kvip.lab.topology import NodeNamespace, Topology, create_topology, destroy_topology

API_PORT = 6443


class LabError(Exception):
    """The lab could not be built or did not converge in time."""


@dataclass
class AgentProcess:
    node: NodeNamespace
    process: subprocess.Popen[bytes]
    log_path: Path

    @property
    def running(self) -> bool:
        return self.process.poll() is None


def owned_routes(netns: str, *, table: int = 198, protocol: int = 248) -> set[str]:
    """The routes in `table` with our protocol inside `netns`, as 'prefix' strings (v4 and v6)."""
    found: set[str] = set()
    for family in ("-4", "-6"):
        run = subprocess.run(
            ["ip", "-n", netns, "-j", family, "route", "show", "table", str(table), "proto", str(protocol)],
            capture_output=True, text=True,
        )
        if run.returncode != 0:
            if "table does not exist" in run.stderr:
                continue  # the kernel creates a family's table with its first route
            raise LabError(f"cannot read routes in {netns}: {run.stderr.strip()}")
        out = run.stdout
        for route in json.loads(out or "[]"):
            dst = route["dst"]
            found.add(dst if "/" in dst else f"{dst}/{32 if family == '-4' else 128}")
    return found


class LabCluster:
    def __init__(
        self,
        node_names: Sequence[str] = ("node-a", "node-b", "node-c"),
        *,
        workdir: Path,
        resync_period: float = 5.0,
        agent_env: Mapping[str, str] | None = None,
    ) -> None:
        self.node_names = tuple(node_names)
        self.workdir = workdir
        self.resync_period = resync_period
        self.agent_env = dict(agent_env or {})
        # Agents authenticate with per-node tokens (so RBAC can be revoked for one node); kubectl sends no
        # token over plain HTTP, so tokenless requests are the lab's admin.
        self.api = StandIn(tokens={self.token(n): n for n in self.node_names} | {"lab-admin": "admin"},
                           anonymous="admin")
        self.topology: Topology | None = None
        self.agents: dict[str, AgentProcess] = {}

    @staticmethod
    def token(node_name: str) -> str:
        return f"token-{node_name}"

    # -- lifecycle ---------------------------------------------------------------------------

    async def start(self) -> None:
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.topology = create_topology(self.node_names)
        try:
            sock = socket_in_netns(self.topology.router_netns, str(self.topology.router_address), API_PORT)
            await self.api.start(sock=sock)
            self.api.create(objects.namespace("default"))
            self.api.create(objects.namespace("kube-system"))
            for node in self.topology.nodes:
                self.api.create(objects.node(node.node_name, address=str(node.address)))
                self.api.write_kubeconfig(
                    self.kubeconfig_path(node.node_name), token=self.token(node.node_name), server=self.server_url
                )
            self.api.write_kubeconfig(self.workdir / "admin.kubeconfig", token="lab-admin")
        except BaseException:
            await self.stop()
            raise

    async def stop(self) -> None:
        for name in list(self.agents):
            await self.stop_agent(name, timeout=5)
        await self.api.close()
        if self.topology is not None:
            destroy_topology(self.topology)
            self.topology = None

    async def __aenter__(self) -> LabCluster:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    # -- agents ------------------------------------------------------------------------------

    @property
    def server_url(self) -> str:
        assert self.topology is not None
        return f"http://{self.topology.router_address}:{API_PORT}"

    def kubeconfig_path(self, node_name: str) -> Path:
        return self.workdir / f"{node_name}.kubeconfig"

    def status_socket(self, node_name: str) -> Path:
        return self.workdir / f"{node_name}.sock"

    def node(self, node_name: str) -> NodeNamespace:
        if self.topology is None:
            raise LabError("lab not started")
        return self.topology.node(node_name)

    def agent_environment(self, node_name: str, extra: Mapping[str, str] | None = None, *,
                          only: bool = False) -> dict[str, str]:
        """The lab's defaults, `agent_env`, then `extra`; with `only`, `extra` alone beside what the lab
        must place (kubeconfig path, status socket), e.g. a kube-vip manifest's env applied unchanged."""
        env = {k: v for k, v in os.environ.items() if k in ("PATH", "PYTHONPATH", "HOME", "LANG")}
        if only:
            return {**env, "k8s_config_file": str(self.kubeconfig_path(node_name)),
                    "kvip_status_socket": str(self.status_socket(node_name)), **(extra or {})}
        env.update(
            {
                "vip_nodename": node_name,
                "vip_routingtable": "true",
                "vip_interface": "lo",
                "k8s_config_file": str(self.kubeconfig_path(node_name)),
                "kvip_resync_period": str(self.resync_period),
                "prometheus_server": ":2112",
                "kvip_status_socket": str(self.status_socket(node_name)),  # one per agent: they share /run
                "vip_loglevel": "debug",
            }
        )
        env.update(self.agent_env)
        env.update(extra or {})
        return env

    def start_agent(self, node_name: str, *, env: Mapping[str, str] | None = None,
                    args: Iterable[str] = (), env_only: bool = False) -> AgentProcess:
        node = self.node(node_name)
        if node_name in self.agents and self.agents[node_name].running:
            raise LabError(f"agent on {node_name} already running")
        log_path = self.workdir / f"agent-{node_name}.log"
        log = open(log_path, "ab")
        process = popen_in_netns(
            node.netns, [sys.executable, "-m", "kvip", "agent", *args],
            env=self.agent_environment(node_name, env, only=env_only), stdout=log, stderr=subprocess.STDOUT,
        )
        log.close()
        agent = AgentProcess(node, process, log_path)
        self.agents[node_name] = agent
        return agent

    async def stop_agent(self, node_name: str, *, sig: int = signal.SIGTERM, timeout: float = 10.0) -> int | None:
        """Signal the agent and wait for it without blocking the loop: the stand-in serves from this
        loop, and an agent's clean shutdown talks to it (releasing its Leases)."""
        agent = self.agents.pop(node_name, None)
        if agent is None or not agent.running:
            return None if agent is None else agent.process.returncode
        agent.process.send_signal(sig)
        deadline = time.monotonic() + timeout
        while agent.process.poll() is None:
            if time.monotonic() > deadline:
                agent.process.kill()
                return await asyncio.to_thread(agent.process.wait, 5)
            await asyncio.sleep(0.02)
        return agent.process.returncode

    def agent_log(self, node_name: str) -> str:
        path = self.workdir / f"agent-{node_name}.log"
        return path.read_text(errors="replace") if path.exists() else ""

    # -- observing ---------------------------------------------------------------------------

    def routes(self, node_name: str) -> set[str]:
        return owned_routes(self.node(node_name).netns)

    def all_routes(self) -> dict[str, set[str]]:
        return {name: self.routes(name) for name in self.node_names}

    async def wait_for(self, expected: Mapping[str, set[str]], *, timeout: float = 10.0,
                       interval: float = 0.02) -> float:
        """Wait until each named node holds exactly the expected prefixes; returns seconds taken."""
        start = time.monotonic()
        while True:
            current = {name: self.routes(name) for name in expected}
            if current == {k: set(v) for k, v in expected.items()}:
                return time.monotonic() - start
            if time.monotonic() - start > timeout:
                logs = "\n".join(f"--- {n} ---\n{self.agent_log(n)[-3000:]}" for n in expected)
                raise LabError(f"not converged after {timeout}s: want {dict(expected)}, have {current}\n{logs}")
            await asyncio.sleep(interval)

    async def wait_agents_ready(self, timeout: float = 15.0) -> None:
        """Until each running agent has done its first pass (its log says so)."""
        deadline = time.monotonic() + timeout
        for name, agent in self.agents.items():
            while "cache synced" not in self.agent_log(name):
                if not agent.running:
                    raise LabError(f"agent on {name} exited:\n{self.agent_log(name)[-3000:]}")
                if time.monotonic() > deadline:
                    raise LabError(f"agent on {name} not ready:\n{self.agent_log(name)[-3000:]}")
                await asyncio.sleep(0.05)
