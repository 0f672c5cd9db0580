"""Running things inside network namespaces the lab created: processes, and listening sockets.

Never enters a namespace it was not given, and always returns the calling thread to the namespace
it started in.
"""

from __future__ import annotations

import ctypes
import os
import socket
import subprocess
import threading
from collections.abc import Sequence
from typing import Any

NETNS_DIR = "/run/netns"


class NetnsError(Exception):
    """A namespace operation failed."""


CLONE_NEWNET = 0x40000000


def _setns(fd: int) -> None:
    # os.setns only exists from Python 3.12; libc's is the same system call.
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.setns(fd, CLONE_NEWNET) != 0:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err))


def netns_path(netns: str) -> str:
    return os.path.join(NETNS_DIR, netns)


def popen_in_netns(netns: str, argv: Sequence[str], **kwargs: Any) -> subprocess.Popen[Any]:
    """Start `argv` inside `netns` (`ip netns exec` execs, so the pid is the program's own)."""
    return subprocess.Popen(["ip", "netns", "exec", netns, *argv], **kwargs)


def run_in_netns(netns: str, argv: Sequence[str], check: bool = True, **kwargs: Any) -> subprocess.CompletedProcess[str]:
    kwargs.setdefault("capture_output", True)
    kwargs.setdefault("text", True)
    return subprocess.run(["ip", "netns", "exec", netns, *argv], check=check, **kwargs)


def socket_in_netns(netns: str, host: str, port: int, *, backlog: int = 512) -> socket.socket:
    """A listening TCP socket that lives in `netns`, usable by a server running in this process.

    A socket belongs to the namespace it was created in, whatever thread later uses it. setns()
    affects only the calling thread, so a short-lived thread enters the namespace, creates the
    socket and exits; the rest of the process never leaves its own namespace.
    """
    result: dict[str, Any] = {}

    def create() -> None:
        try:
            with open(netns_path(netns)) as target:
                _setns(target.fileno())
            family = socket.AF_INET6 if ":" in host else socket.AF_INET
            sock = socket.socket(family, socket.SOCK_STREAM)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind((host, port))
            sock.listen(backlog)
            sock.setblocking(False)
            result["sock"] = sock
        except Exception as exc:  # reported to the caller below
            result["error"] = exc

    # The thread dies after creating the socket, so its namespace switch never leaks to other work.
    thread = threading.Thread(target=create, name=f"setns-{netns}")
    thread.start()
    thread.join()
    if "error" in result:
        raise NetnsError(f"cannot listen on {host}:{port} in {netns}: {result['error']}") from result["error"]
    return result["sock"]
