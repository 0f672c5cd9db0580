"""FRR's bgpd as a lab router: the second, independent BGP implementation kvip is checked against
(BIRD being the first).

bgpd, and a zebra that only feeds it the namespace's interfaces, run in the foreground inside a
namespace — never as a service — with configs, pid files, zserv and vty sockets (`WORKDIR/bgpd.vty`)
and logs in their own work directory, and are killed on stop. Both stay root (bgpd `-S`, zebra
`-u root -g frrvty`), so a root-only work directory is fine; bgpd `-n` installs nothing in the
namespace's kernel. `vtysh --vty_socket WORKDIR -d bgpd` reads bgpd's JSON.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from kvip.lab.bgp_router import (
    NODE_ASN,
    ROUTER_ASN,
    RouterPath,
    _node_by_address,
    peer_addresses,
)
from kvip.lab.netns import popen_in_netns, stop_process
from kvip.lab.topology import Topology

BGPD = "/usr/lib/frr/bgpd"
ZEBRA = "/usr/lib/frr/zebra"
VTYSH = "/usr/bin/vtysh"
AFIS = ("ipv4", "ipv6")

# FRR prints well-known communities by name (community.c); everything else as "ASN:VALUE".
WELL_KNOWN_COMMUNITIES = {
    "internet": "0:0", "graceful-shutdown": "65535:0", "accept-own": "65535:1", "route-filter-translated-v4": "65535:2",
    "route-filter-v4": "65535:3", "route-filter-translated-v6": "65535:4", "route-filter-v6": "65535:5",
    "llgr-stale": "65535:6", "no-llgr": "65535:7", "accept-own-nexthop": "65535:8", "blackhole": "65535:666",
    "no-export": "65535:65281", "no-advertise": "65535:65282", "local-AS": "65535:65283", "no-peer": "65535:65284",
}


class FrrError(Exception):
    """zebra or bgpd did not start, or vtysh did not answer."""


@dataclass(frozen=True)
class FrrPath:
    """One path FRR holds for a prefix, as its JSON describes it."""

    next_hop: str
    peer: str
    multipath: bool
    best: bool
    communities: frozenset[str] = frozenset()
    large_communities: frozenset[str] = frozenset()
    local_pref: int | None = None
    valid: bool = True

    @property
    def selected(self) -> bool:
        """FRR uses this path for forwarding: the best path or one of its multipath siblings."""
        return self.best or self.multipath


def frr_router_config(*, router_id: str, asn: int, peers: Sequence[tuple[str, int]]) -> str:
    """Accept everything from every peer, send nothing back, and keep up to 8 paths per prefix.
    Peers may be IPv4 or IPv6 addresses; each is activated in its own address family only."""
    lines = [f"router bgp {asn}", f" bgp router-id {router_id}", " no bgp ebgp-requires-policy",
             " no bgp default ipv4-unicast", " bgp bestpath as-path multipath-relax", " timers bgp 3 9"]
    for address, peer_asn in peers:
        lines += [f" neighbor {address} remote-as {peer_asn}", f" neighbor {address} timers connect 1"]
    for afi in AFIS:
        lines += [f" address-family {afi} unicast", "  maximum-paths 8", "  maximum-paths ibgp 8"]
        for address, _ in peers:
            if (":" in address) == (afi == "ipv6"):
                # Without a policy, `no bgp ebgp-requires-policy` would also advertise every route back.
                lines += [f"  neighbor {address} activate", f"  neighbor {address} route-map KVIP-LAB-NONE out"]
        lines.append(" exit-address-family")
    lines += ["exit", "route-map KVIP-LAB-NONE deny 10", "exit"]
    return "\n".join(lines) + "\n"


def _path(raw: dict[str, Any]) -> FrrPath:
    """A path from `show bgp AFI unicast json detail` or `... PREFIX json` (the plain table JSON has
    no communities, and says `"bestpath": true` where the detailed one says `{"overall": true}`)."""
    best = raw.get("bestpath", False)
    hops = raw.get("nexthops") or [{}]
    hop = next((h for h in hops if h.get("scope", "global") == "global"), hops[0])
    peer = raw.get("peer", {}).get("peerId") or raw.get("peerId") or hop.get("ip", "")
    return FrrPath(
        next_hop=hop.get("ip", ""), peer=peer, multipath=bool(raw.get("multipath", False)),
        best=bool(best.get("overall")) if isinstance(best, dict) else bool(best),
        communities=frozenset(WELL_KNOWN_COMMUNITIES.get(c, c)
                              for c in raw.get("community", {}).get("string", "").split()),
        large_communities=frozenset(raw.get("largeCommunity", {}).get("string", "").split()),
        local_pref=raw.get("locPrf"), valid=bool(raw.get("valid", True)),
    )


def _drop_tmpdir(name: str, pid: int) -> None:
    """Every FRR process keeps log buffers in /var/tmp/frr/NAME.PID and leaves that behind on exit."""
    shutil.rmtree(f"/var/tmp/frr/{name}.{pid}", ignore_errors=True)


def _afi(afi: str | int) -> str:
    if (name := f"ipv{afi}" if isinstance(afi, int) else afi) not in AFIS:
        raise FrrError(f"unknown address family {afi!r}; use 'ipv4' or 'ipv6'")
    return name


class FrrRouter:
    """bgpd in `netns` running `config_text` (see `frr_router_config`).
    `FrrRouter(topology, workdir, families=(4, 6))` builds the lab's upstream router instead — AS
    `ROUTER_ASN` peering with every node in `NODE_ASN` — and adds the `LabRouter` view keyed by node
    name (`established`, `selected`, `rib`, see kvip.lab.bgp_router).
    """

    def __init__(self, netns: str | Topology, workdir: Path, config_text: str | None = None, *,
                 families: tuple[int, ...] = (4,)) -> None:
        self._nodes: dict[str, str] = {}
        if isinstance(netns, Topology):
            topology, workdir = netns, workdir / "frr-router"
            netns, self._nodes = topology.router_netns, _node_by_address(topology)
            config_text = config_text or frr_router_config(
                router_id=str(topology.router_address), asn=ROUTER_ASN,
                peers=[(a, NODE_ASN) for a in peer_addresses(topology, families)])
        if config_text is None:
            raise FrrError("FrrRouter needs config_text (see frr_router_config)")
        self.netns = netns
        self.workdir = workdir
        self.config_path = workdir / "bgpd.conf"
        self.socket_path = workdir / "bgpd.vty"  # bgpd names it after itself inside --vty_socket
        self._config = config_text
        self._daemons: dict[str, subprocess.Popen[bytes]] = {}

    def start(self, timeout: float = 15.0) -> None:
        self.workdir.mkdir(parents=True, exist_ok=True)
        if len(str(self.workdir / "zserv.api")) > 100:
            raise FrrError(f"work directory too long for unix sockets: {self.workdir}")
        self.config_path.write_text(self._config)
        (self.workdir / "zebra.conf").write_text("")
        check = subprocess.Popen([BGPD, "-C", "-Z", "-S", "-f", str(self.config_path)], stdout=subprocess.PIPE,
                                 stderr=subprocess.STDOUT, text=True)
        output = check.communicate(timeout=30)[0]
        _drop_tmpdir("bgpd", check.pid)
        if check.returncode != 0 or "[EC " in output:  # -C exits 0 after "No such command on config line"
            raise FrrError(f"invalid FRR config {self.config_path}: {output.strip()}")
        deadline = time.monotonic() + timeout
        # zebra reports an IPv6 address once its DAD is over; until the interface has a link-local one,
        # bgpd resets IPv6 sessions ("nexthop_set failed") and a BIRD peer then waits before retrying.
        self._wait(None, "IPv6 DAD", self._dad_done, deadline)
        # zebra feeds bgpd the interfaces, nothing else: without them bgpd withdraws every IPv6 update
        # with a link-local next hop ("no peer interface information"). Root must be in the vty group.
        self._spawn(ZEBRA, "-u", "root", "-g", "frrvty", "-f", str(self.workdir / "zebra.conf"))
        self._wait(self._daemons["zebra"], "zebra", (self.workdir / "zserv.api").exists, deadline)
        self._spawn(BGPD, "-S", "-n", "-f", str(self.config_path))  # -S: stay root; -n: install nothing
        self._wait(self._daemons["bgpd"], "bgpd", self._answers, deadline)

    def _spawn(self, daemon: str, *args: str) -> None:
        name = Path(daemon).name
        with open(self.workdir / f"{name}.out", "ab") as out:
            self._daemons[name] = popen_in_netns(
                self.netns,
                [daemon, *args, "-i", str(self.workdir / f"{name}.pid"), "-z", str(self.workdir / "zserv.api"),
                 "--vty_socket", str(self.workdir), "-P", "0", "--log", f"file:{self.workdir / name}.log"],
                stdout=out, stderr=subprocess.STDOUT,
            )

    def _wait(self, process: subprocess.Popen[bytes] | None, name: str, ready: Callable[[], bool],
              deadline: float) -> None:
        while not ready():
            if (process is not None and process.poll() is not None) or time.monotonic() > deadline:
                self.stop()
                logs = [p for p in sorted(self.workdir.glob(f"{name}.*")) if p.suffix in (".out", ".log")]
                raise FrrError(f"{name} in {self.netns} not ready (exit {process and process.returncode}): "
                               + "".join(p.read_text()[-1500:] for p in logs))
            time.sleep(0.05)

    def _dad_done(self) -> bool:
        run = subprocess.run(["ip", "-n", self.netns, "-6", "addr", "show", "tentative"], capture_output=True,
                             text=True, timeout=10)
        return run.returncode == 0 and not run.stdout.strip()

    def _answers(self) -> bool:
        try:
            return self.socket_path.exists() and bool(self.vtysh("show bgp summary json"))
        except FrrError:
            return False

    def stop(self) -> None:
        """bgpd, then zebra: terminate, and kill if need be."""
        for name, process in reversed(self._daemons.items()):
            stop_process(process)
            _drop_tmpdir(name, process.pid)  # `ip netns exec` execs: this is the daemon's own pid
        self._daemons.clear()

    def vtysh(self, *commands: str) -> str:
        """Run `commands` against this bgpd (one `-c` each) and return what they print."""
        argv = [VTYSH, "--vty_socket", str(self.workdir), "-d", "bgpd", *(a for c in commands for a in ("-c", c))]
        run = subprocess.run(argv, capture_output=True, text=True, timeout=10)
        if run.returncode != 0 or run.stdout.lstrip().startswith("%") or not run.stdout.strip():
            raise FrrError(f"vtysh {' ; '.join(commands)}: {run.stdout.strip()} {run.stderr.strip()}")
        return run.stdout

    def established_peers(self) -> set[str]:
        """Neighbor addresses of sessions in state Established (any address family)."""
        neighbors = json.loads(self.vtysh("show bgp neighbors json"))
        return {address for address, peer in neighbors.items()
                if isinstance(peer, dict) and peer.get("bgpState") == "Established"}

    def paths(self, afi: str | int = "ipv4") -> dict[str, tuple[FrrPath, ...]]:
        """prefix → every path with its attributes, from one `show bgp AFI unicast json detail` (the
        plain table JSON has no communities; `... detail json` is not a command in FRR 8.4)."""
        routes = json.loads(self.vtysh(f"show bgp {_afi(afi)} unicast json detail"))["routes"]
        found: dict[str, tuple[FrrPath, ...]] = {}
        for prefix, entry in routes.items():
            # FRR 8.4 lists [{"prefix", "version"}, path, path, ...]; {"paths": [...]} is read as well.
            raws = entry.get("paths", []) if isinstance(entry, dict) else entry
            found[prefix] = tuple(_path(raw) for raw in raws if "nexthops" in raw)
        return found

    def ecmp(self, afi: str | int = "ipv4") -> dict[str, frozenset[str]]:
        """prefix → next hops of the paths FRR selected (best or multipath): the set it would install."""
        return {prefix: frozenset(p.next_hop for p in paths if p.selected)
                for prefix, paths in self._settled(afi).items()}

    def _settled(self, afi: str | int) -> dict[str, tuple[FrrPath, ...]]:
        """`paths()`, read again for up to 0.5 s while a valid path is neither best nor multipath: a new
        path is in the table some ms before FRR's best-path run marks it (all lab paths are equal)."""
        deadline = time.monotonic() + 0.5
        while True:
            found = self.paths(afi)
            if time.monotonic() > deadline or all(p.selected or not p.valid for ps in found.values() for p in ps):
                return found
            time.sleep(0.02)

    # The LabRouter view (kvip.lab.bgp_router): peers and paths named by node.
    def established(self) -> set[str]:
        return {self._nodes.get(a, a) for a in self.established_peers()}

    def selected(self, family: int = 4) -> dict[str, frozenset[str]]:
        return {prefix: frozenset(self._nodes.get(p.peer, p.peer) for p in paths if p.selected)
                for prefix, paths in self._settled(family).items()}

    def rib(self, family: int = 4) -> dict[str, dict[str, RouterPath]]:
        found: dict[str, dict[str, RouterPath]] = {}
        for prefix, paths in self.paths(family).items():
            for p in paths:
                node = self._nodes.get(p.peer, p.peer)
                found.setdefault(prefix, {})[node] = RouterPath(node, p.communities, p.large_communities, p.local_pref)
        return found
