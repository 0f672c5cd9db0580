"""The agent's HTTP exposure against a real agent in the lab (kvip issue #17, rows 5, 6, 7).

Reproduced by a review, on every node's 0.0.0.0:2112: 1,037 unauthenticated POST /resync in 10 s made
~20 full LISTs per second per resource; /status listed everything to anyone; 1,100 half-open
requests made /healthz stop answering and BIRD's include write fail with EMFILE.
"""

from __future__ import annotations

import asyncio
import os
import socket
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from kvip.lab.cluster import LabCluster
from kvip.lab.objects import Endpoint, endpoint_slice, load_balancer_service
from kvip.runtime.netns import in_netns

pytestmark = pytest.mark.root

NODE = "node-a"
VIP = "10.96.0.70"
WINDOW = 4.0  # kvip_resync_min_interval


@pytest.fixture
async def lab(tmp_path: Path) -> AsyncIterator[LabCluster]:
    # A long resync period: every LIST counted below comes from POST /resync, none from the timer.
    env = {"kvip_resync_min_interval": str(WINDOW), "kvip_http_max_connections": "64"}
    async with LabCluster((NODE,), workdir=tmp_path, resync_period=120.0, agent_env=env) as cluster:
        cluster.api.create(load_balancer_service("web", vips=[VIP]))
        cluster.api.create(endpoint_slice("web", [Endpoint("10.244.1.1", NODE)]))
        cluster.start_agent(NODE)
        await cluster.wait_agents_ready()
        await cluster.wait_for({NODE: {f"{VIP}/32"}})
        yield cluster


def netns_sockets(lab: LabCluster, count: int) -> list[socket.socket]:
    """TCP sockets living in the node's namespace, so 127.0.0.1 is the agent's loopback."""
    return in_netns(lab.node(NODE).netns, lambda: [socket.socket() for _ in range(count)])


def get(path: str, method: str = "GET") -> bytes:
    return f"{method} {path} HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\nConnection: close\r\n\r\n".encode()


def public(lab: LabCluster, path: str, method: str = "GET", timeout: float = 1.0) -> bytes:
    sock = netns_sockets(lab, 1)[0]
    sock.settimeout(timeout)
    with sock:
        sock.connect(("127.0.0.1", 2112))
        sock.sendall(get(path, method))
        chunks = []
        while chunk := sock.recv(65536):
            chunks.append(chunk)
    return b"".join(chunks)


def local(lab: LabCluster, path: str, method: str = "GET") -> bytes:
    with socket.socket(socket.AF_UNIX) as sock:
        sock.settimeout(5)
        sock.connect(str(lab.status_socket(NODE)))
        sock.sendall(get(path, method))
        chunks = []
        while chunk := sock.recv(65536):
            chunks.append(chunk)
    return b"".join(chunks)


def service_lists(lab: LabCluster, after: int) -> list[float]:
    return [r.seq for r in lab.api.request_log(resource="services", verbs={"list"}, after=after)]


async def test_status_and_resync_are_only_on_the_local_socket(lab: LabCluster) -> None:
    assert (await asyncio.to_thread(public, lab, "/status")).startswith(b"HTTP/1.1 404")
    assert (await asyncio.to_thread(public, lab, "/resync", "POST")).startswith(b"HTTP/1.1 404")
    assert (await asyncio.to_thread(public, lab, "/healthz")).startswith(b"HTTP/1.1 200")
    status = await asyncio.to_thread(local, lab, "/status")
    assert status.startswith(b"HTTP/1.1 200") and b'"default/web"' in status
    assert oct(os.stat(lab.status_socket(NODE)).st_mode & 0o777) == "0o600"


async def test_a_burst_of_1000_resync_requests_makes_one_relist_per_window(lab: LabCluster) -> None:
    before = lab.api.requests_served
    began = time.monotonic()
    answers = [await asyncio.to_thread(local, lab, "/resync", "POST") for _ in range(1000)]
    burst = time.monotonic() - began
    assert all(a.startswith(b"HTTP/1.1 202") for a in answers)
    await asyncio.sleep(0.5)
    if burst < WINDOW - 0.5:  # the whole burst inside one window: one LIST so far, the coalesced one pending
        assert len(service_lists(lab, before)) == 1
    await asyncio.sleep(WINDOW + 1.0)
    lists = service_lists(lab, before)
    # One now, then at most one per window for the requests that came after it (plus the one pending).
    assert 1 < len(lists) <= 2 + int(burst / WINDOW), (len(lists), burst)
    await asyncio.sleep(WINDOW)
    assert len(service_lists(lab, before)) == len(lists)  # the requests are all served: nothing more


def open_fds(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


def hold_half_requests(lab: LabCluster, count: int) -> list[socket.socket]:
    held = []
    for sock in netns_sockets(lab, count):
        sock.settimeout(2)
        try:
            sock.connect(("127.0.0.1", 2112))
            sock.sendall(b"GET /heal")
        except OSError:
            sock.close()
            continue
        held.append(sock)
    return held


async def test_1100_half_open_requests_neither_stop_healthz_nor_grow_the_agents_open_files(lab: LabCluster) -> None:
    pid = lab.agents[NODE].process.pid
    baseline = open_fds(pid)
    flood = asyncio.create_task(asyncio.to_thread(hold_half_requests, lab, 1100))
    slowest, peak_fds = 0.0, baseline
    while not flood.done():
        began = time.monotonic()
        answer = await asyncio.to_thread(public, lab, "/healthz", "GET", 1.0)
        slowest = max(slowest, time.monotonic() - began)
        assert answer.startswith(b"HTTP/1.1 200"), answer
        peak_fds = max(peak_fds, open_fds(pid))
        await asyncio.sleep(0.05)
    held = await flood
    try:
        assert len(held) > 1000
        peak_fds = max(peak_fds, open_fds(pid))
        assert (await asyncio.to_thread(public, lab, "/healthz")).startswith(b"HTTP/1.1 200")
        assert peak_fds <= baseline + 2 * 64 + 8, (baseline, peak_fds)  # the cap, plus newcomers not yet read
        print(f"healthz slowest {slowest:.3f}s; agent fds {baseline} -> peak {peak_fds}")
    finally:
        for sock in held:
            sock.close()
    assert slowest < 1.0
