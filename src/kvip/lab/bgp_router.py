"""The lab's upstream router for BGP mode: a BIRD 2 (or FRR) in the router namespace that kvip does
not manage, peering with every node's agent, plus the environment that points agents at it.

`rib()` is the router's view per prefix and per advertising node — what a client of the VIP would
follow — and `fib()` (BIRD) the ECMP route it installed in its own namespace's kernel table.
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from kvip.lab.bird import BirdProcess, router_config
from kvip.lab.topology import Topology

ROUTER_ASN = 65000
NODE_ASN = 65101  # one AS for every node, as kube-vip deployments usually do: eBGP multipath applies
FIB_TABLE = 100  # in the router namespace only


@dataclass(frozen=True)
class RouterPath:
    node: str
    communities: frozenset[str] = frozenset()
    large_communities: frozenset[str] = frozenset()
    local_pref: int | None = None


class LabRouter(Protocol):
    def start(self) -> None: ...
    def stop(self) -> None: ...
    def established(self) -> set[str]: ...
    def rib(self, family: int = 4) -> dict[str, dict[str, RouterPath]]: ...


def _node_by_address(topology: Topology) -> dict[str, str]:
    found = {str(n.address): n.node_name for n in topology.nodes}
    found.update({str(n.address6): n.node_name for n in topology.nodes if n.address6 is not None})
    return found


def peer_addresses(topology: Topology, families: tuple[int, ...]) -> list[str]:
    out = []
    for node in topology.nodes:
        if 4 in families:
            out.append(str(node.address))
        if 6 in families and node.address6 is not None:
            out.append(str(node.address6))
    return out


class BirdRouter:
    def __init__(self, topology: Topology, workdir: Path, *, asn: int = ROUTER_ASN, node_asn: int = NODE_ASN,
                 families: tuple[int, ...] = (4,), bfd: bool = False) -> None:
        self.topology = topology
        # ECMP as a router forwards it: all paths merged into one multipath kernel route.
        fib = "\n".join(
            f"protocol kernel fib{v} {{ kernel table {FIB_TABLE}; merge paths on limit 16; "
            f"ipv{v} {{ import none; export all; }}; }}" for v in (4, 6)
        )
        if bfd:
            fib += "\nprotocol bfd { }"
        config = router_config(router_id=str(topology.router_address), asn=asn,
                               peers=[(a, node_asn) for a in peer_addresses(topology, families)], extra=fib,
                               session_options="bfd on;" if bfd else "")
        self.bird = BirdProcess(topology.router_netns, workdir / "bgp-router", config)
        self._nodes = _node_by_address(topology)

    def start(self) -> None:
        self.bird.start()

    def stop(self) -> None:
        self.bird.stop()

    def established(self) -> set[str]:
        return {self._nodes.get(p, p) for p in self.bird.established_peers()}

    def rib(self, family: int = 4) -> dict[str, dict[str, RouterPath]]:
        found: dict[str, dict[str, RouterPath]] = {}
        for path in self.bird.paths("master4" if family == 4 else "master6"):
            if path.next_hop is None:
                continue
            node = self._nodes.get(path.next_hop, path.next_hop)
            found.setdefault(path.prefix, {})[node] = RouterPath(node, path.communities, path.large_communities,
                                                                 path.local_pref)
        return found

    def fib(self, family: int = 4) -> dict[str, frozenset[str]]:
        """prefix → nodes of the next hops the router's kernel forwards to (the installed ECMP set)."""
        run = subprocess.run(["ip", f"-{family}", "-n", self.topology.router_netns, "-j", "route", "show",
                              "table", str(FIB_TABLE)], capture_output=True, text=True, check=True)
        found: dict[str, frozenset[str]] = {}
        for route in json.loads(run.stdout or "[]"):
            dst = route["dst"] if "/" in route["dst"] else f"{route['dst']}/{32 if family == 4 else 128}"
            hops = [h["gateway"] for h in route.get("nexthops", [])] or [route.get("gateway")]
            found[dst] = frozenset(self._nodes.get(h, h) for h in hops if h)
        return found


def bgp_agent_env(topology: Topology, node_name: str, workdir: Path, *, families: tuple[int, ...] = (4,),
                  router_asn: int = ROUTER_ASN, node_asn: int = NODE_ASN, drain_time: float = 1.0,
                  extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """kube-vip's variable names, as an operator would set them in the DaemonSet."""
    node = topology.node(node_name)
    peers = []
    if 4 in families:
        peers.append(f"{topology.router_address}:{router_asn}")
    if 6 in families:
        peers.append(f"[{topology.router_address6}]:{router_asn}")
    env = {
        "vip_routingtable": "false",
        "bgp_enable": "true",
        "bgp_routerid": str(node.address),
        "bgp_as": str(node_asn),
        "bgp_peers": ",".join(peers),
        "bgp_holdtime": "9",
        "bgp_keepalivetime": "3",
        "kvip_bgp_drain_time": str(drain_time),
        "kvip_bgp_rundir": str(workdir / f"bgp-{node_name}"),
    }
    env.update(extra or {})
    return env


class BgpModeFabric:
    """`kvip lab --mode bgp`: the agents speak BGP themselves; only the router runs a daemon."""

    def __init__(self, topology: Topology, workdir: Path, drain_time: float = 2.0) -> None:
        self.topology = topology
        self.workdir = workdir
        self.drain_time = drain_time
        self.router = BirdRouter(topology, workdir)

    def start(self) -> None:
        self.router.start()

    def stop(self) -> None:
        self.router.stop()

    def agent_env(self, node_name: str) -> dict[str, str]:
        return bgp_agent_env(self.topology, node_name, self.workdir, drain_time=self.drain_time)

    def established(self) -> set[str]:
        return self.router.established()

    def ecmp(self) -> dict[str, frozenset[str]]:
        return {prefix: frozenset(paths) for prefix, paths in self.router.rib(4).items()}
