"""The lab's DHCP server: Debian's dnsmasq inside the router namespace, on the lab bridge, with its own
config, lease file and log under a work directory — never the system's dnsmasq service, no DNS (port 0).

dnsmasq raises any lease time under two minutes to two minutes (its documented minimum), so the lab sets
T1 and T2 (options 58 and 59) short instead: renewals come every few seconds, expiry takes 120 s.

With `first6`/`last6` it serves DHCPv6 too (stateful, IA_NA only: no router advertisements), on the
same bridge, whose address in that prefix (the topology's fd00:251::1/64) dnsmasq needs to serve it. Its
DHCPv6 T1/T2 are 1/2 and 7/8 of the lease; they cannot be set shorter.
"""

from __future__ import annotations

import ipaddress
import signal
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

MIN_LEASE = 120  # dnsmasq's floor (seconds)


class DnsmasqError(Exception):
    """dnsmasq did not start; the message carries its output."""


@dataclass(frozen=True)
class LeaseRow:
    expires: int  # epoch seconds
    mac: str
    address: ipaddress.IPv4Address
    hostname: str


@dataclass(frozen=True)
class Lease6Row:
    expires: int  # epoch seconds
    iaid: int
    address: ipaddress.IPv6Address
    hostname: str
    duid: str  # the client's DUID, colon-separated hex


class Dnsmasq:
    def __init__(self, netns: str, workdir: Path, *, interface: str = "br0", first: str = "10.250.200.10",
                 last: str = "10.250.200.50", lease: int = MIN_LEASE, t1: int | None = None,
                 t2: int | None = None, first6: str | None = None, last6: str | None = None) -> None:
        self.netns, self.workdir, self.interface = netns, workdir, interface
        self.first6, self.last6 = first6, last6
        self.first, self.last, self.lease, self.t1, self.t2 = first, last, lease, t1, t2
        self.lease_file = workdir / "dnsmasq.leases"
        self.log_file = workdir / "dnsmasq.log"
        self._process: subprocess.Popen[bytes] | None = None

    def command(self) -> list[str]:
        args = ["ip", "netns", "exec", self.netns, "dnsmasq", "--keep-in-foreground", "--conf-file=/dev/null",
                "--port=0", f"--interface={self.interface}", "--bind-interfaces", "--user=root", "--group=root",
                f"--dhcp-range={self.first},{self.last},255.255.0.0,{self.lease}", "--dhcp-authoritative",
                f"--dhcp-leasefile={self.lease_file}", "--log-dhcp", f"--log-facility={self.log_file}",
                f"--pid-file={self.workdir / 'dnsmasq.pid'}"]
        if self.first6 is not None and self.last6 is not None:
            args.append(f"--dhcp-range={self.first6},{self.last6},64,{self.lease}")
        if self.t1 is not None:
            args.append(f"--dhcp-option=option:T1,{self.t1}")
        if self.t2 is not None:
            args.append(f"--dhcp-option=option:T2,{self.t2}")
        return args

    def start(self) -> None:
        """Start (keeping the lease file: a restarted server remembers its leases, as a real one does)."""
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.lease_file.touch()
        self._process = subprocess.Popen(self.command(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        time.sleep(0.3)
        if self._process.poll() is not None:
            output = self._process.stdout.read().decode(errors="replace") if self._process.stdout else ""
            raise DnsmasqError(f"dnsmasq exited with {self._process.returncode}: {output.strip()}")

    def stop(self) -> None:
        if self._process is None:
            return
        self._process.send_signal(signal.SIGTERM)
        try:
            self._process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            self._process.kill()
            self._process.wait()
        self._process = None

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def leases(self) -> list[LeaseRow]:
        """The lease file: `<expiry> <mac> <address> <hostname> <client-id>` per line."""
        rows = []
        for line in self._lines()[0]:
            parts = line.split()
            if len(parts) >= 4:
                rows.append(LeaseRow(int(parts[0]), parts[1], ipaddress.IPv4Address(parts[2]), parts[3]))
        return rows

    def leases6(self) -> list[Lease6Row]:
        """The DHCPv6 part of the lease file, after its `duid <server DUID>` line:
        `<expiry> <iaid> <address> <hostname> <client DUID>` per line."""
        rows = []
        for line in self._lines()[1]:
            parts = line.split()
            if len(parts) >= 5:
                rows.append(Lease6Row(int(parts[0]), int(parts[1]), ipaddress.IPv6Address(parts[2]), parts[3],
                                      parts[4]))
        return rows

    def _lines(self) -> tuple[list[str], list[str]]:
        """The lease file's IPv4 lines and IPv6 lines."""
        lines = self.lease_file.read_text().splitlines() if self.lease_file.exists() else []
        split = next((i for i, line in enumerate(lines) if line.startswith("duid ")), len(lines))
        return lines[:split], lines[split + 1:]

    def log(self) -> str:
        return self.log_file.read_text(errors="replace") if self.log_file.exists() else ""
