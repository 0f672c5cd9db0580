"""BIRD 2 for the lab: a node exporter of kernel table 198 and a router that learns the ECMP set.

Each BIRD runs in the foreground inside a namespace with its own config, control socket and pid
file under a work directory — never as a system service — and is killed on stop.
"""

from __future__ import annotations

import re
import subprocess
import time
from collections.abc import Sequence
from pathlib import Path

from kvip.lab.bird_routes import RouterPath, parse_show_route
from kvip.lab.netns import popen_in_netns

BIRD = "/usr/sbin/bird"
BIRDC = "/usr/sbin/birdc"


class BirdError(Exception):
    """BIRD did not start or did not answer."""


# Timers short enough that a lab converges in about a second, and a session comes back at once.
_FAST_BGP = """
    hold time 9;
    keepalive time 3;
    connect retry time 1;
    connect delay time 1;
    error wait time 1, 5;
"""


def router_config(*, router_id: str, asn: int, peers: Sequence[tuple[str, int]],
                  extra: str = "", session_options: str = "") -> str:
    """Accept every node's routes and keep them all: one path per advertising node (the ECMP set).

    Peers may be IPv4 or IPv6 (each session carries its own family) and eBGP or iBGP (a peer in
    `asn`); `merge paths` makes the ECMP set visible as one multipath route in `show route`.
    """
    sessions = []
    for i, (address, peer_asn) in enumerate(peers):
        family = "ipv6" if ":" in address else "ipv4"
        # iBGP next hops resolve recursively by default; the nodes share the router's segment.
        direct = "direct; " if peer_asn == asn else ""
        sessions.append(f"protocol bgp node{i} from nodes {{ neighbor {address} as {peer_asn}; {direct}"
                        f"{family} {{ import all; export none; }}; }}")
    return f"""
router id {router_id};
protocol device {{ scan time 1; }}
{extra}
template bgp nodes {{
    local as {asn};
    {_FAST_BGP}
    {session_options}
}}
""" + "\n".join(sessions) + "\n"


def node_exporter_config(*, router_id: str, asn: int, router_address: str, router_asn: int,
                         table_id: int = 198) -> str:
    """What an operator runs next to kube-vip in routing-table mode: learn kernel table `table_id`
    (routes of any protocol, e.g. kvip's 248) and announce it to the router, next hop self."""
    return f"""
router id {router_id};
protocol device {{ scan time 1; }}
ipv4 table vips4;
ipv6 table vips6;
protocol kernel vips_v4 {{
    kernel table {table_id};
    scan time 1;
    learn;
    ipv4 {{ table vips4; import all; export none; }};
}}
protocol kernel vips_v6 {{
    kernel table {table_id};
    scan time 1;
    learn;
    ipv6 {{ table vips6; import all; export none; }};
}}
protocol bgp uplink {{
    local as {asn};
    neighbor {router_address} as {router_asn};
    {_FAST_BGP}
    ipv4 {{ table vips4; import none; export all; next hop self; }};
}}
"""


class BirdProcess:
    def __init__(self, netns: str, workdir: Path, config_text: str) -> None:
        self.netns = netns
        self.workdir = workdir
        self.config_path = workdir / "bird.conf"
        self.socket_path = workdir / "bird.ctl"
        self.pid_path = workdir / "bird.pid"
        self.log_path = workdir / "bird.log"
        self._config = config_text
        self._process: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 10.0) -> None:
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.config_path.write_text(self._config)
        check = subprocess.run([BIRD, "-p", "-c", str(self.config_path)], capture_output=True, text=True)
        if check.returncode != 0:
            raise BirdError(f"invalid BIRD config {self.config_path}: {check.stderr.strip()}")
        with open(self.log_path, "ab") as log:
            self._process = popen_in_netns(
                self.netns,
                [BIRD, "-f", "-c", str(self.config_path), "-s", str(self.socket_path), "-P", str(self.pid_path)],
                stdout=log, stderr=subprocess.STDOUT,
            )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                raise BirdError(f"BIRD exited with {self._process.returncode}: {self.log_path.read_text()[-2000:]}")
            if self.socket_path.exists():
                try:
                    self.birdc("show", "status")
                    return
                except BirdError:
                    pass
            time.sleep(0.05)
        self.stop()
        raise BirdError(f"BIRD in {self.netns} did not answer within {timeout}s")

    def stop(self) -> None:
        if self._process is None:
            return
        if self._process.poll() is None:
            self._process.terminate()
            try:
                self._process.wait(5)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait(5)
        self._process = None

    def birdc(self, *command: str) -> str:
        run = subprocess.run([BIRDC, "-s", str(self.socket_path), *command], capture_output=True, text=True,
                             timeout=10)
        if run.returncode != 0:
            raise BirdError(f"birdc {' '.join(command)}: {run.stdout.strip()} {run.stderr.strip()}")
        return run.stdout

    def routes(self, table: str = "master4") -> dict[str, frozenset[str]]:
        """prefix → every BGP next hop BIRD holds for it (one per advertising peer)."""
        found: dict[str, set[str]] = {}
        for path in self.paths(table):
            hops = found.setdefault(path.prefix, set())
            if path.next_hop:
                hops.add(path.next_hop)
        return {p: frozenset(hops) for p, hops in found.items()}

    def paths(self, table: str = "master4") -> list[RouterPath]:
        """Every path in `table` with its BGP attributes (communities, local-pref, next hop)."""
        return parse_show_route(self.birdc("show", "route", "table", table, "all"))

    def established_peers(self) -> set[str]:
        """Neighbor addresses of BGP sessions in state Established."""
        established = [
            cols[0] for line in self.birdc("show", "protocols").splitlines()
            if len(cols := line.split()) >= 6 and cols[1] == "BGP" and cols[5] == "Established"
        ]
        peers = set()
        for name in established:
            match = re.search(r"Neighbor address:\s+(\S+)", self.birdc("show", "protocols", "all", name))
            if match:
                peers.add(match.group(1))
        return peers
