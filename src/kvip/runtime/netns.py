"""Sockets that live in a named network namespace, made without moving the calling thread.

A socket belongs to the namespace it was created in, whichever thread uses it later. setns() only
affects the calling thread, so a short-lived thread enters the namespace, builds the socket and
exits. Used by backends driven from another namespace (tests, the lab) and by the lab's API stand-in.
"""

from __future__ import annotations

import ctypes
import os
import socket
import threading
from collections.abc import Callable
from typing import TypeVar

CLONE_NEWNET = 0x40000000
NETNS_DIR = "/run/netns"
T = TypeVar("T")


def in_netns(netns: str | None, build: Callable[[], T]) -> T:
    """Run `build` inside `netns` (None: here) on a throwaway thread and return what it made."""
    if netns is None:
        return build()
    made: dict[str, object] = {}

    def run() -> None:
        try:
            libc = ctypes.CDLL(None, use_errno=True)
            with open(os.path.join(NETNS_DIR, netns)) as target:
                if libc.setns(target.fileno(), CLONE_NEWNET) != 0:
                    err = ctypes.get_errno()
                    raise OSError(err, os.strerror(err))
            made["value"] = build()
        except Exception as exc:  # handed to the caller
            made["error"] = exc

    thread = threading.Thread(target=run, name=f"setns-{netns}")
    thread.start()
    thread.join()
    if "error" in made:
        raise made["error"]  # type: ignore[misc]
    return made["value"]  # type: ignore[return-value]


def socket_in(netns: str | None, family: int, kind: int, proto: int = 0) -> socket.socket:
    return in_netns(netns, lambda: socket.socket(family, kind, proto))
