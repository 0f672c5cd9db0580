"""Announce/withdraw latency of the candidate BGP speakers, as seen in a real BIRD 2 router's RIB.

What it measures: for each of N /32 VIPs (10.96.x.y), one at a time, the wall time from "tell the
speaker to announce" until the prefix is in the router's `master4` table, then from "tell it to
withdraw" until the prefix is gone. Reported as p50/p99 (nearest rank) in ms, one JSON line per
speaker on stdout; side figures (e.g. how long the GoBGP CLI itself takes) go to stderr.

Why: the agent needs a BGP speaker it can drive per VIP. The candidates are driven the way the
agent would drive them, so the numbers include the control path, not just BGP propagation:

* bird:   kvip's choice: its own BIRD 2 with kvip's generated config; each change is the include file
  rewritten and `configure` sent on the control socket (what the BGP backend does, minus its read-back).
* gobgp:  `gobgpd` in the node namespace; each change is one `ip netns exec <node> gobgp -p PORT
  global rib add|del ...` invocation (process start + gRPC call), timed from spawn.
* exabgp: `exabgp` in the node namespace with an API `process` that relays lines from a FIFO;
  each change is one `announce|withdraw route ... next-hop self` line written into the FIFO.

The router is BIRD 2 (kvip.lab.bird.router_config) in the lab router namespace, its control socket
polled every ~2 ms (--poll-ms 0 busy-polls for sub-ms resolution). One untimed warm-up pair. As root:

    python3 bench/bgp_candidates.py [--vips 100] [--only bird|gobgp|exabgp] [--poll-ms 2]
"""

from __future__ import annotations

import argparse
import ipaddress
import json
import math
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from kvip.config.bgp import BgpPeer, BgpSettings  # noqa: E402
from kvip.dataplane.bird.config import (  # noqa: E402
    Announcement,
    routes_file,
    routes_path,
    speaker_config,
)
from kvip.dataplane.bird.control import reply_text  # noqa: E402
from kvip.lab.bird import BirdProcess, router_config  # noqa: E402
from kvip.lab.netns import popen_in_netns, stop_process  # noqa: E402
from kvip.lab.topology import topology  # noqa: E402

SPEAKERS = ("bird", "gobgp", "exabgp")
ROUTER_ASN = 65000
NODE_ASN = 65101
POLL_S = 0.002
ROUTE_TIMEOUT_S = 10.0
SESSION_TIMEOUT_S = 30.0
WARMUP_PREFIX = "10.95.255.255/32"
_REPLY_END = re.compile(r"^\d{4}( |$)")
_PREFIX = re.compile(r"^([0-9a-fA-F.:]+/\d+)\s")


class BirdSocket:
    """One persistent connection to BIRD's control socket (no birdc process per poll)."""

    def __init__(self, path: Path) -> None:
        self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self._sock.settimeout(5.0)
        self._sock.connect(str(path))
        self._buffer = b""
        if not (greeting := self._line()).startswith("0001"):
            raise RuntimeError(f"unexpected BIRD greeting {greeting!r}")

    def _line(self) -> str:
        while b"\n" not in self._buffer:
            chunk = self._sock.recv(65536)
            if not chunk:
                raise RuntimeError("BIRD closed its control socket")
            self._buffer += chunk
        line, self._buffer = self._buffer.split(b"\n", 1)
        return line.decode()

    def query(self, command: str) -> list[str]:
        """The reply's text lines, codes stripped, continuation lines (leading space) included."""
        self._sock.sendall(command.encode() + b"\n")
        raw: list[str] = []
        while True:
            raw.append(self._line())
            if _REPLY_END.match(raw[-1]):
                return reply_text(raw)

    def prefixes(self, table: str = "master4") -> set[str]:
        return {m.group(1) for line in self.query(f"show route table {table}") if (m := _PREFIX.match(line))}

    def established(self) -> bool:
        return any(len(cols := line.split()) >= 6 and cols[1] == "BGP" and "Established" in cols[5:]
                   for line in self.query("show protocols"))

    def close(self) -> None:
        self._sock.close()


def wait_until(predicate: Callable[[], bool], timeout: float, what: str, poll_s: float = POLL_S) -> float:
    """Poll every `poll_s`; the perf_counter() at which `predicate` was first seen true."""
    deadline = time.perf_counter() + timeout
    while True:
        if predicate():
            return time.perf_counter()
        if time.perf_counter() > deadline:
            raise TimeoutError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(poll_s)


def wait_route(control: BirdSocket, prefix: str, present: bool, poll_s: float) -> float:
    """When `prefix` was first seen in (present) or missing from (not present) the router's RIB."""
    return wait_until(lambda: (prefix in control.prefixes()) == present, ROUTE_TIMEOUT_S,
                      f"{prefix} {'in' if present else 'gone from'} the router RIB", poll_s)


class Speaker(Protocol):
    def start(self) -> None: ...
    def announce(self, prefix: str) -> None: ...
    def withdraw(self, prefix: str) -> None: ...
    def settle(self) -> None: ...
    def stop(self) -> None: ...


def _stop(process: subprocess.Popen[Any] | None) -> None:
    stop_process(process)


class GoBgp:
    """gobgpd with a TOML config; routes added/removed by one `gobgp` CLI run each."""

    def __init__(self, netns: str, workdir: Path, address: str, router: str) -> None:
        self.netns, self.workdir, self.address, self.router = netns, workdir, address, router
        self.port = 50051 + os.getpid() % 10000  # unique to the run (and the namespace is private anyway)
        self.command_ms: list[float] = []  # spawn → CLI exit
        self._daemon: subprocess.Popen[bytes] | None = None
        self._cli: subprocess.Popen[bytes] | None = None
        self._cli_waiter: threading.Thread | None = None
        self._cli_exit = 0.0

    def start(self) -> None:
        config = self.workdir / "gobgpd.toml"
        config.write_text(f"""
[global.config]
  as = {NODE_ASN}
  router-id = "{self.address}"
  local-address-list = ["{self.address}"]
[[neighbors]]
  [neighbors.config]
    neighbor-address = "{self.router}"
    peer-as = {ROUTER_ASN}
  [neighbors.timers.config]
    connect-retry = 1
    hold-time = 9
    keepalive-interval = 3
""")
        with open(self.workdir / "gobgpd.log", "ab") as log:
            self._daemon = popen_in_netns(
                self.netns, ["/usr/bin/gobgpd", "-f", str(config), "-t", "toml", "--log-plain",
                             f"--api-hosts=127.0.0.1:{self.port}", "--pprof-disable"],
                stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT)

    def _run(self, *args: str) -> None:
        argv = ["/usr/bin/gobgp", "-p", str(self.port), "global", "rib", *args, "-a", "ipv4"]
        started = time.perf_counter()
        cli = self._cli = popen_in_netns(self.netns, argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                         stderr=subprocess.STDOUT)

        def note_exit() -> None:  # in a thread, while the main thread polls the router
            cli.wait()
            self._cli_exit = time.perf_counter() - started

        self._cli_waiter = threading.Thread(target=note_exit, daemon=True)
        self._cli_waiter.start()

    def announce(self, prefix: str) -> None:
        self._run("add", prefix, "nexthop", self.address)

    def withdraw(self, prefix: str) -> None:
        self._run("del", prefix)

    def settle(self) -> None:  # wait for the CLI that made the last change; fail if it failed
        if self._cli is None or self._cli_waiter is None:
            return
        self._cli_waiter.join(ROUTE_TIMEOUT_S)
        output, _ = self._cli.communicate(timeout=ROUTE_TIMEOUT_S)
        if self._cli.returncode != 0:
            raise RuntimeError(f"gobgp CLI failed ({self._cli.returncode}): {output.decode().strip()}")
        self.command_ms.append(self._cli_exit * 1000)
        self._cli = None

    def stop(self) -> None:
        _stop(self._cli)
        _stop(self._daemon)


_RELAY = """import os, sys
fd = os.open(sys.argv[1], os.O_RDONLY)
while True:
    data = os.read(fd, 65536)
    if not data:  # every writer closed: wait for the next one
        os.close(fd)
        fd = os.open(sys.argv[1], os.O_RDONLY)
        continue
    os.write(1, data)  # unbuffered: ExaBGP sees each command as soon as it is written
"""


class KvipBird:
    """kvip's choice, driven the way `BgpSpeaker.apply` drives it (minus the read-back): its own BIRD with
    kvip's generated config; a change = the include file rewritten + `configure` on the control socket."""

    def __init__(self, netns: str, workdir: Path, address: str, router: str) -> None:
        self.netns = netns
        self.settings = BgpSettings(asn=NODE_ASN, peers=(BgpPeer(ipaddress.ip_address(router), ROUTER_ASN),),
                                    router_id=address, run_dir=str(workdir / "speaker"))
        self.run_dir = Path(self.settings.run_dir)
        self._announced: set[str] = set()
        self._daemon: subprocess.Popen[Any] | None = None
        self._control: BirdSocket | None = None

    def start(self) -> None:
        self.run_dir.mkdir(parents=True)
        self._write()
        config, socket_path = self.run_dir / "bird.conf", self.run_dir / "bird.ctl"
        config.write_text(speaker_config(self.settings, router_id=str(self.settings.router_id), run_dir=self.run_dir))
        with open(self.run_dir / "bird.out", "ab") as out:
            self._daemon = popen_in_netns(self.netns, [self.settings.bird_path, "-f", "-c", str(config), "-s",
                                                       str(socket_path), "-P", str(self.run_dir / "bird.pid")],
                                          stdout=out, stderr=subprocess.STDOUT)
        wait_until(socket_path.exists, SESSION_TIMEOUT_S, "kvip's BIRD control socket")
        self._control = BirdSocket(socket_path)

    def _write(self) -> None:
        announcements = frozenset(Announcement(ipaddress.ip_network(p)) for p in self._announced)
        for version in (4, 6):
            routes_path(self.run_dir, version).write_text(routes_file(announcements, version))

    def _change(self) -> None:
        assert self._control is not None
        self._write()
        if not any("Reconfigured" in line for line in self._control.query("configure")):
            raise RuntimeError("kvip's BIRD did not reconfigure")

    def announce(self, prefix: str) -> None:
        self._announced.add(prefix)
        self._change()

    def withdraw(self, prefix: str) -> None:
        self._announced.discard(prefix)
        self._change()

    def settle(self) -> None:  # `configure` already returned
        if self._daemon is not None and self._daemon.poll() is not None:
            raise RuntimeError(f"bird exited with {self._daemon.returncode}")

    def stop(self) -> None:
        self._control.close() if self._control is not None else None
        _stop(self._daemon)


class ExaBgp:
    """exabgp in the foreground; its API process relays lines the bench writes into a FIFO."""

    def __init__(self, netns: str, workdir: Path, address: str, router: str) -> None:
        self.netns, self.workdir, self.address, self.router = netns, workdir, address, router
        self._daemon: subprocess.Popen[bytes] | None = None
        self._fifo_fd = -1

    def start(self) -> None:
        relay, fifo, config = self.workdir / "relay.py", self.workdir / "commands.fifo", self.workdir / "exabgp.conf"
        relay.write_text(_RELAY)
        os.mkfifo(fifo)
        config.write_text(f"""
process relay {{
    run {sys.executable} {relay} {fifo};
    encoder text;
}}
neighbor {self.router} {{
    router-id {self.address};
    local-address {self.address};
    local-as {NODE_ASN};
    peer-as {ROUTER_ASN};
    hold-time 9;
    family {{ ipv4 unicast; }}
    api {{ processes [ relay ]; }}
}}
""")
        env = {**os.environ, "exabgp.daemon.user": "root", "exabgp.daemon.daemonize": "false",
               "exabgp.log.destination": str(self.workdir / "exabgp.log"), "exabgp.api.cli": "false",
               "exabgp.api.ack": "false"}
        with open(self.workdir / "exabgp.out", "ab") as out:
            self._daemon = popen_in_netns(self.netns, ["/usr/sbin/exabgp", str(config)], env=env,
                                          stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + SESSION_TIMEOUT_S
        while self._fifo_fd < 0:  # ENXIO until the relay has opened its end
            if self._daemon.poll() is not None:
                raise RuntimeError(f"exabgp exited with {self._daemon.returncode}; see {self.workdir}")
            try:
                self._fifo_fd = os.open(fifo, os.O_WRONLY | os.O_NONBLOCK)
            except OSError:
                if time.monotonic() > deadline:
                    raise TimeoutError("exabgp's relay never opened the FIFO") from None
                time.sleep(0.05)
        os.set_blocking(self._fifo_fd, True)

    def announce(self, prefix: str) -> None:
        os.write(self._fifo_fd, f"announce route {prefix} next-hop self\n".encode())

    def withdraw(self, prefix: str) -> None:
        os.write(self._fifo_fd, f"withdraw route {prefix} next-hop self\n".encode())

    def settle(self) -> None:  # nothing to wait for: the FIFO write already returned
        if self._daemon is not None and self._daemon.poll() is not None:
            raise RuntimeError(f"exabgp exited with {self._daemon.returncode}")

    def stop(self) -> None:
        if self._fifo_fd >= 0:
            os.close(self._fifo_fd)
        self._fifo_fd = -1
        _stop(self._daemon)


def percentile(samples: list[float], p: float) -> float:  # nearest rank
    ordered = sorted(samples)
    return ordered[max(0, math.ceil(p / 100 * len(ordered)) - 1)]


def vip(i: int) -> str:
    return f"10.{96 + (i + 1) // 65536}.{((i + 1) // 256) % 256}.{(i + 1) % 256}/32"


def measure(speaker: str, vips: int = 100, poll_s: float = POLL_S) -> dict[str, Any]:
    """Announce then withdraw `vips` /32s one at a time through `speaker`; latencies to BIRD's RIB."""
    if speaker not in SPEAKERS:
        raise ValueError(f"unknown speaker {speaker!r}; expected one of {SPEAKERS}")
    workdir = Path(tempfile.mkdtemp(prefix=f"kvip-bgpbench-{speaker}-"))
    samples: dict[str, list[float]] = {"announce": [], "withdraw": []}
    ok = False  # keep the logs of a failed run
    with topology(["node-a"]) as topo:
        node = topo.nodes[0]
        bird = BirdProcess(topo.router_netns, workdir / "bird", router_config(
            router_id=str(topo.router_address), asn=ROUTER_ASN, peers=[(str(node.address), NODE_ASN)]))
        cls = {"bird": KvipBird, "gobgp": GoBgp, "exabgp": ExaBgp}[speaker]
        driver: Speaker = cls(node.netns, workdir, str(node.address), str(topo.router_address))
        control: BirdSocket | None = None
        try:
            bird.start()
            control = BirdSocket(bird.socket_path)
            driver.start()
            wait_until(control.established, SESSION_TIMEOUT_S, f"{speaker} session Established")
            for i in range(-1, vips):  # -1: warm-up, not timed
                prefix = WARMUP_PREFIX if i < 0 else vip(i)
                t0 = time.perf_counter()
                driver.announce(prefix)
                seen = wait_route(control, prefix, True, poll_s)
                driver.settle()
                t1 = time.perf_counter()
                driver.withdraw(prefix)
                gone = wait_route(control, prefix, False, poll_s)
                driver.settle()
                if i >= 0:
                    samples["announce"].append((seen - t0) * 1000)
                    samples["withdraw"].append((gone - t1) * 1000)
            ok = True
        finally:
            driver.stop()
            control.close() if control is not None else None
            bird.stop()
            if ok:
                shutil.rmtree(workdir, ignore_errors=True)
            else:
                print(f"{speaker}: logs kept in {workdir}", file=sys.stderr)
    command_ms = getattr(driver, "command_ms", [])[2:]  # drop the warm-up pair
    if command_ms:
        print(json.dumps({"speaker": speaker, "cli_exit_p50_ms": round(percentile(command_ms, 50), 2),
                          "cli_exit_p99_ms": round(percentile(command_ms, 99), 2)}), file=sys.stderr)
    return {"speaker": speaker, "vips": vips, **{f"{kind}_p{p}_ms": round(percentile(ms, p), 2)
                                                 for kind, ms in samples.items() for p in (50, 99)}}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--vips", type=int, default=100)
    parser.add_argument("--only", choices=SPEAKERS)
    parser.add_argument("--poll-ms", type=float, default=POLL_S * 1000, help="router RIB poll interval")
    args = parser.parse_args()
    for sig in (signal.SIGTERM, signal.SIGHUP):  # unwind like ^C: every `finally` cleans up
        signal.signal(sig, lambda signum, _frame: sys.exit(128 + signum))
    for speaker in [args.only] if args.only else SPEAKERS:
        print(json.dumps(measure(speaker, args.vips, args.poll_ms / 1000)), flush=True)


if __name__ == "__main__":
    main()
