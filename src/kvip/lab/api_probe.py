"""A client of the control-plane VIP, in its own namespace: what a kubectl user sees during a failover.

`ClientProbe` asks `GET /livez` through the VIP in a loop, a fresh connection each time (so it follows
the VIP wherever it moves), and records when each attempt started and ended and whether it succeeded.
Two kinds: `kubectl --server https://VIP:6443 get --raw /livez` (what an operator would run), or an
in-process HTTPS client (same request, finer resolution: no process start per attempt).
`client_downtime` turns the record into the number a step reports.
"""

from __future__ import annotations

import asyncio
import socket
import ssl
import subprocess
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from kvip.runtime.netns import in_netns


@dataclass(frozen=True)
class Attempt:
    started: float  # time.monotonic()
    ended: float
    ok: bool


def client_downtime(attempts: Sequence[Attempt], since: float, until: float | None = None) -> float:
    """Seconds the client went without an answer after `since`: the longest span between two successful
    attempts (end to end) that had a failed one between them; 0 when no attempt failed.

    A request that failed is counted from the last success before it, so the figure includes the time
    the client spent waiting on a dead connection, and its resolution is one attempt's period."""
    window = [a for a in sorted(attempts, key=lambda a: a.started) if a.ended >= since
              and (until is None or a.started <= until)]
    before = [a for a in attempts if a.ok and a.ended < since]
    last_ok = max((a.ended for a in before), default=since)
    worst, failed = 0.0, False
    for attempt in window:
        if not attempt.ok:
            failed = True
            continue
        if failed:
            worst = max(worst, attempt.ended - max(last_ok, since))
            failed = False
        last_ok = attempt.ended
    if failed:  # still down at the end of the window
        worst = max(worst, (until or window[-1].ended) - max(last_ok, since))
    return worst


def _https_livez(netns: str, host: str, port: int, context: ssl.SSLContext | None, timeout: float) -> bool:
    sock = in_netns(netns, lambda: socket.create_connection((host, port), timeout=timeout))
    try:
        sock.settimeout(timeout)
        stream = context.wrap_socket(sock, server_hostname=host) if context is not None else sock
        stream.sendall(f"GET /livez HTTP/1.1\r\nHost: {host}:{port}\r\nConnection: close\r\n\r\n".encode())
        head = stream.recv(64)
        return head.startswith((b"HTTP/1.1 200", b"HTTP/1.0 200"))
    finally:
        sock.close()


class ClientProbe:
    """Runs in a daemon thread until stop(); `attempts` grows by one per request."""

    def __init__(self, netns: str, host: str, port: int = 6443, *, ca_path: Path | None = None,
                 kind: str = "http", interval: float = 0.05, timeout: float = 1.0,
                 kubeconfig: Path | None = None) -> None:
        if kind not in ("http", "kubectl"):
            raise ValueError(f"probe kind {kind!r}: http or kubectl")
        self.netns, self.host, self.port, self.kind = netns, host, port, kind
        self.interval, self.timeout = interval, timeout
        self.ca_path, self.kubeconfig = ca_path, kubeconfig
        self._context = ssl.create_default_context(cafile=str(ca_path)) if ca_path is not None else None
        self.attempts: list[Attempt] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"probe-{host}", daemon=True)

    @property
    def url(self) -> str:
        return f"{'https' if self.ca_path is not None else 'http'}://{self.host}:{self.port}"

    def kubectl_argv(self) -> list[str]:
        argv = ["ip", "netns", "exec", self.netns, "kubectl", "--server", self.url,
                f"--request-timeout={max(1, round(self.timeout))}s", "get", "--raw", "/livez"]
        if self.kubeconfig is not None:
            argv[5:5] = ["--kubeconfig", str(self.kubeconfig)]
        if self.ca_path is not None:
            argv[5:5] = ["--certificate-authority", str(self.ca_path)]
        return argv

    def once(self) -> bool:
        if self.kind == "http":
            try:
                return _https_livez(self.netns, self.host, self.port, self._context, self.timeout)
            except (OSError, ssl.SSLError):
                return False
        try:
            run = subprocess.run(self.kubectl_argv(), capture_output=True, text=True, timeout=self.timeout + 5,
                                 check=False)
        except subprocess.TimeoutExpired:
            return False
        return run.returncode == 0 and run.stdout.strip() == "ok"

    def _run(self) -> None:
        while not self._stop.is_set():
            started = time.monotonic()
            ok = self.once()
            self.attempts.append(Attempt(started, time.monotonic(), ok))
            self._stop.wait(self.interval)

    def start(self) -> ClientProbe:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(self.timeout + 6)

    def downtime(self, since: float, until: float | None = None) -> float:
        return client_downtime(list(self.attempts), since, until)

    def last_ok(self) -> float | None:
        return next((a.ended for a in reversed(self.attempts) if a.ok), None)

    async def wait_ok_after(self, since: float, timeout: float) -> float:
        """Until an attempt that started after `since` succeeded; returns its end time."""

        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            done = [a for a in list(self.attempts) if a.ok and a.started >= since]
            if done:
                return done[0].ended
            await asyncio.sleep(0.02)
        raise TimeoutError(f"the client got no answer from {self.url} within {timeout}s")
