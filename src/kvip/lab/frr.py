"""FRR's bgpd as the lab's upstream router: the second, independent BGP implementation kvip's
speaker is checked against (BIRD being the first).

zebra and bgpd run in the router namespace in the foreground, with their own work directory — configs,
pid files, zserv and vty sockets, logs — never as a service. `vtysh --vty_socket DIR -d bgpd` reads
bgpd's JSON.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

from kvip.lab.bgp_router import NODE_ASN, ROUTER_ASN, RouterPath, _node_by_address, peer_addresses
from kvip.lab.netns import popen_in_netns, stop_process
from kvip.lab.topology import Topology

BGPD = "/usr/lib/frr/bgpd"
ZEBRA = "/usr/lib/frr/zebra"
VTYSH = "/usr/bin/vtysh"

_WELL_KNOWN = {"graceful-shutdown": "65535:0", "no-export": "65535:65281", "no-advertise": "65535:65282",
               "blackhole": "65535:666", "no-peer": "65535:65284", "accept-own": "65535:1",
               "local-AS": "65535:65283", "noExport": "65535:65281", "noAdvertise": "65535:65282"}


class FrrError(Exception):
    """bgpd did not start or did not answer."""


def frr_router_config(*, router_id: str, asn: int, peers: list[tuple[str, int]]) -> str:
    """Accept everything from the nodes, send nothing back, and use up to 8 paths per prefix."""
    lines = ["frr defaults datacenter", "hostname kvip-lab-router", f"router bgp {asn}",
             f" bgp router-id {router_id}", " no bgp ebgp-requires-policy", " no bgp default ipv4-unicast",
             " bgp bestpath as-path multipath-relax", " timers bgp 3 9"]
    for address, peer_asn in peers:
        lines += [f" neighbor {address} remote-as {peer_asn}", f" neighbor {address} timers connect 1"]
    for family in ("ipv4", "ipv6"):
        lines += [f" address-family {family} unicast", "  maximum-paths 8", "  maximum-paths ibgp 8"]
        lines += [f"  neighbor {a} activate" for a, _ in peers if (":" in a) == (family == "ipv6")]
        lines.append(" exit-address-family")
    return "\n".join(lines) + "\n"


class FrrRouter:
    """A `LabRouter` (see kvip.lab.bgp_router) backed by FRR bgpd."""

    def __init__(self, topology: Topology, workdir: Path, *, asn: int = ROUTER_ASN, node_asn: int = NODE_ASN,
                 families: tuple[int, ...] = (4,)) -> None:
        self.topology = topology
        self.logdir = workdir / "frr-router"
        # zebra drops to the frr user, which cannot traverse root-only test directories: its files live
        # in a directory of its own, and the logs are copied to `logdir` on stop.
        self.workdir = Path(tempfile.mkdtemp(prefix="kvip-frr-"))
        self.config = frr_router_config(router_id=str(topology.router_address), asn=asn,
                                        peers=[(a, node_asn) for a in peer_addresses(topology, families)])
        self._nodes = _node_by_address(topology)
        self._process: subprocess.Popen[bytes] | None = None
        self._zebra: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 15.0) -> None:
        self.workdir.chmod(0o755)
        shutil.chown(self.workdir, "frr", "frr")
        config = self.workdir / "bgpd.conf"
        config.write_text(self.config)
        (self.workdir / "zebra.conf").write_text("hostname kvip-lab-router\n")
        zserv = str(self.workdir / "zserv.api")
        log = open(self.workdir / "bgpd.out", "ab")
        # zebra gives bgpd the interfaces (IPv6 updates with a link-local next hop need them) and
        # installs the ECMP routes into the router namespace's kernel, as a real router would.
        self._zebra = popen_in_netns(
            self.topology.router_netns,
            [ZEBRA, "-f", str(self.workdir / "zebra.conf"), "-i", str(self.workdir / "zebra.pid"),
             "--vty_socket", str(self.workdir), "-z", zserv, "-u", "frr", "-g", "frr", "-P", "0",
             "--log", f"file:{self.workdir / 'zebra.log'}"],
            stdout=log, stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + timeout
        while not Path(zserv).exists():
            if self._zebra.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise FrrError(f"zebra did not start: {(self.workdir / 'bgpd.out').read_text()[-2000:]}")
            time.sleep(0.05)
        self._process = popen_in_netns(
            self.topology.router_netns,
            [BGPD, "-f", str(config), "-i", str(self.workdir / "bgpd.pid"), "--vty_socket", str(self.workdir),
             "-z", zserv, "-S", "-P", "0", "--log", f"file:{self.workdir / 'bgpd.log'}"],
            stdout=log, stderr=subprocess.STDOUT,
        )
        log.close()
        while True:
            if self._process.poll() is not None:
                raise FrrError(f"bgpd exited with {self._process.returncode}: "
                               f"{(self.workdir / 'bgpd.out').read_text()[-2000:]}")
            try:
                self.vtysh("show bgp summary json")
                return
            except FrrError:
                if time.monotonic() > deadline:
                    self.stop()
                    raise
                time.sleep(0.1)

    def stop(self) -> None:
        stop_process(self._process)
        stop_process(self._zebra)
        self._process = self._zebra = None
        if self.workdir.exists():
            self.logdir.mkdir(parents=True, exist_ok=True)
            for log in self.workdir.glob("*.log"):
                shutil.copy(log, self.logdir / log.name)
            shutil.rmtree(self.workdir, ignore_errors=True)

    def vtysh(self, command: str) -> str:
        run = subprocess.run([VTYSH, "--vty_socket", str(self.workdir), "-d", "bgpd", "-c", command],
                             capture_output=True, text=True, timeout=10)
        if run.returncode != 0 or not run.stdout.strip():
            raise FrrError(f"vtysh {command!r}: {run.stdout.strip()} {run.stderr.strip()}")
        return run.stdout

    def established(self) -> set[str]:
        summary = json.loads(self.vtysh("show bgp summary json"))
        found = set()
        for family in summary.values():
            for address, peer in family.get("peers", {}).items():
                if peer.get("state") == "Established":
                    found.add(self._nodes.get(address, address))
        return found

    def selected(self, family: int = 4) -> dict[str, frozenset[str]]:
        """prefix → nodes of the paths FRR uses (best or multipath): the ECMP set it would install."""
        out: dict[str, frozenset[str]] = {}
        for prefix, paths in self._routes(family).items():
            out[prefix] = frozenset(self._node(p) for p in paths if p.get("bestpath") or p.get("multipath"))
        return out

    def rib(self, family: int = 4) -> dict[str, dict[str, RouterPath]]:
        """Every path per prefix with its attributes (one detail query per prefix: FRR 8.4's table JSON
        has no communities)."""
        afi = "ipv4" if family == 4 else "ipv6"
        found: dict[str, dict[str, RouterPath]] = {}
        for prefix in self._routes(family):
            detail = json.loads(self.vtysh(f"show bgp {afi} unicast {prefix} json"))
            for path in detail.get("paths", []):
                node = self._node(path)
                found.setdefault(prefix, {})[node] = RouterPath(
                    node,
                    frozenset(_WELL_KNOWN.get(c, c) for c in path.get("community", {}).get("string", "").split()),
                    frozenset(path.get("largeCommunity", {}).get("string", "").split()),
                    path.get("locPrf"),
                )
        return found

    def _routes(self, family: int) -> dict[str, list[dict]]:  # type: ignore[type-arg]
        afi = "ipv4" if family == 4 else "ipv6"
        data = json.loads(self.vtysh(f"show bgp {afi} unicast json"))
        return data.get("routes", {})

    def _node(self, path: dict) -> str:  # type: ignore[type-arg]
        peer = path.get("peer", {}).get("peerId") or path.get("peerId")
        if not peer:
            hops = path.get("nexthops") or [{}]
            peer = hops[0].get("ip", "?")
        return self._nodes.get(peer, peer)
