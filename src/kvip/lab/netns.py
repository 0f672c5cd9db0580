"""Running things inside network namespaces the lab created: processes, and listening sockets.

Never enters a namespace it was not given, and always returns the calling thread to the namespace
it started in.
"""

from __future__ import annotations

import socket
import subprocess
from collections.abc import Sequence
from typing import Any

from kvip.runtime.netns import in_netns


class NetnsError(Exception):
    """A namespace operation failed."""


def popen_in_netns(netns: str, argv: Sequence[str], **kwargs: Any) -> subprocess.Popen[Any]:
    """Start `argv` inside `netns` (`ip netns exec` execs, so the pid is the program's own)."""
    return subprocess.Popen(["ip", "netns", "exec", netns, *argv], **kwargs)


def run_in_netns(netns: str, argv: Sequence[str], check: bool = True, **kwargs: Any) -> subprocess.CompletedProcess[str]:
    kwargs.setdefault("capture_output", True)
    kwargs.setdefault("text", True)
    return subprocess.run(["ip", "netns", "exec", netns, *argv], check=check, **kwargs)


def socket_in_netns(netns: str, host: str, port: int, *, backlog: int = 512) -> socket.socket:
    """A listening TCP socket that lives in `netns`, usable by a server running in this process
    (the API stand-in serving agents in node namespaces at http://10.250.0.1:6443)."""

    def listen() -> socket.socket:
        sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
        sock.listen(backlog)
        sock.setblocking(False)
        return sock

    try:
        return in_netns(netns, listen)
    except OSError as exc:
        raise NetnsError(f"cannot listen on {host}:{port} in {netns}: {exc}") from exc


def stop_process(process: subprocess.Popen[Any] | None, timeout: float = 5.0) -> None:
    """Terminate, then kill if it does not exit in time; a no-op for None or an exited process."""
    if process is None or process.poll() is not None:
        return
    process.terminate()
    try:
        process.wait(timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(timeout)
