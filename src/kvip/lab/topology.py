"""Lab topologies: one router namespace with a bridge, one namespace per node, joined by veths.

Addresses come from 10.250.0.0/16 and exist only inside these namespaces. Names carry a run id
(`kvip-<run_id>-...`) so parallel runs never collide, and a marker file records the creator pid so
`cleanup_stale()` removes only namespaces whose creator is gone.
"""

from __future__ import annotations

import contextlib
import ipaddress
import os
import secrets
import signal
import subprocess
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from kvip.runtime.netns import NETNS_DIR

ROUTER_ADDRESS = ipaddress.IPv4Address("10.250.0.1")
PREFIX_LEN = 16
ROUTER_ADDRESS6 = ipaddress.IPv6Address("fd00:251::1")  # for IPv6 BGP sessions
PREFIX_LEN6 = 64
MARKERS = Path("/run/kvip-lab")


class TopologyError(Exception):
    """The topology could not be built."""


@dataclass(frozen=True)
class NodeNamespace:
    node_name: str
    netns: str
    address: ipaddress.IPv4Address
    ifname: str
    address6: ipaddress.IPv6Address | None = None


@dataclass(frozen=True)
class Topology:
    run_id: str
    router_netns: str
    router_address: ipaddress.IPv4Address
    nodes: tuple[NodeNamespace, ...]
    router_address6: ipaddress.IPv6Address = ROUTER_ADDRESS6

    def node(self, node_name: str) -> NodeNamespace:
        for node in self.nodes:
            if node.node_name == node_name:
                return node
        raise KeyError(node_name)

    @property
    def namespaces(self) -> tuple[str, ...]:
        return (self.router_netns, *(n.netns for n in self.nodes))


def _ip(*args: str) -> None:
    run = subprocess.run(["ip", *args], capture_output=True, text=True)
    if run.returncode != 0:
        raise TopologyError(f"ip {' '.join(args)}: {run.stderr.strip()}")


def create_topology(node_names: Sequence[str], *, run_id: str | None = None) -> Topology:
    run_id = run_id or f"{os.getpid():x}{secrets.token_hex(2)}"
    short = run_id[-6:]
    router = f"kvip-{run_id}-router"
    nodes = tuple(
        NodeNamespace(name, f"kvip-{run_id}-{name}", ROUTER_ADDRESS + 10 + i, "eth0", ROUTER_ADDRESS6 + 15 + i)
        for i, name in enumerate(node_names)
    )
    topology = Topology(run_id, router, ROUTER_ADDRESS, nodes)
    MARKERS.mkdir(parents=True, exist_ok=True)
    (MARKERS / run_id).write_text(str(os.getpid()))
    try:
        _ip("netns", "add", router)
        _ip("-n", router, "link", "set", "lo", "up")
        _ip("-n", router, "link", "add", "br0", "type", "bridge")
        _ip("-n", router, "addr", "add", f"{ROUTER_ADDRESS}/{PREFIX_LEN}", "dev", "br0")
        _ip("-n", router, "addr", "add", f"{ROUTER_ADDRESS6}/{PREFIX_LEN6}", "dev", "br0", "nodad")
        _ip("-n", router, "link", "set", "br0", "up")
        for i, node in enumerate(nodes):
            outside = f"kv{short}r{i}"  # <= 15 chars, unique per run
            _ip("netns", "add", node.netns)
            _ip("-n", node.netns, "link", "set", "lo", "up")
            _ip("link", "add", outside, "netns", router, "type", "veth", "peer", "name", node.ifname,
                "netns", node.netns)
            _ip("-n", router, "link", "set", outside, "master", "br0", "up")
            _ip("-n", node.netns, "addr", "add", f"{node.address}/{PREFIX_LEN}", "dev", node.ifname)
            _ip("-n", node.netns, "addr", "add", f"{node.address6}/{PREFIX_LEN6}", "dev", node.ifname, "nodad")
            _ip("-n", node.netns, "link", "set", node.ifname, "up")
    except BaseException:
        destroy_topology(topology)
        raise
    return topology


def _pids_in(netns: str) -> list[int]:
    run = subprocess.run(["ip", "netns", "pids", netns], capture_output=True, text=True)
    return [int(p) for p in run.stdout.split()] if run.returncode == 0 else []


def destroy_namespace(netns: str) -> None:
    for pid in _pids_in(netns):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    if os.path.exists(os.path.join(NETNS_DIR, netns)):
        subprocess.run(["ip", "netns", "del", netns], capture_output=True)


def destroy_topology(topology: Topology) -> None:
    """Idempotent; kills what still runs inside (agents, BIRD) and removes every namespace."""
    for netns in reversed(topology.namespaces):
        destroy_namespace(netns)
    with contextlib.suppress(FileNotFoundError):
        (MARKERS / topology.run_id).unlink()


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def cleanup_stale(prefix: str = "kvip-") -> list[str]:
    """Remove lab namespaces whose creating process is gone (a crashed or interrupted earlier run)."""
    if not os.path.isdir(NETNS_DIR):
        return []
    removed = []
    for netns in sorted(os.listdir(NETNS_DIR)):
        if not netns.startswith(prefix):
            continue
        run_id = netns[len(prefix):].split("-", 1)[0]
        marker = MARKERS / run_id
        try:
            creator = int(marker.read_text())
        except (FileNotFoundError, ValueError):
            creator = -1
        if creator > 0 and creator != os.getpid() and _alive(creator):
            continue
        if creator == os.getpid():
            continue
        destroy_namespace(netns)
        removed.append(netns)
        with contextlib.suppress(FileNotFoundError):
            marker.unlink()
    return removed


@contextlib.contextmanager
def topology(node_names: Sequence[str]) -> Iterator[Topology]:
    topo = create_topology(node_names)
    try:
        yield topo
    finally:
        destroy_topology(topo)
