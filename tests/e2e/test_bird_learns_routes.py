"""The lab's BIRD pieces: a route put in kernel table 198 on a node is learned by the router over BGP."""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

import pytest

from kvip.lab.fabric import BgpFabric
from kvip.lab.topology import topology

pytestmark = pytest.mark.root


def wait_until(predicate, timeout: float = 15.0) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "condition not reached in time"
        time.sleep(0.1)


def test_route_in_table_198_reaches_router_as_ecmp_set_and_leaves_when_deleted(tmp_path: Path) -> None:
    with topology(["node-a", "node-b"]) as topo:
        fabric = BgpFabric(topo, tmp_path)
        fabric.start()
        try:
            wait_until(lambda: fabric.established() == {"node-a", "node-b"})
            add = ["route", "add", "10.96.0.10/32", "dev", "lo", "table", "198", "proto", "248"]
            subprocess.run(["ip", "-n", topo.node("node-a").netns, *add], check=True)
            wait_until(lambda: fabric.ecmp().get("10.96.0.10/32") == {"node-a"})
            subprocess.run(["ip", "-n", topo.node("node-b").netns, *add], check=True)
            wait_until(lambda: fabric.ecmp().get("10.96.0.10/32") == {"node-a", "node-b"})
            subprocess.run(["ip", "-n", topo.node("node-a").netns, "route", "del", "10.96.0.10/32", "table", "198"],
                           check=True)
            wait_until(lambda: fabric.ecmp().get("10.96.0.10/32") == {"node-b"})
        finally:
            fabric.stop()
