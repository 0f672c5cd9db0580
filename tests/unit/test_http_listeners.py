"""The agent's two HTTP listeners (kvip issue #17, rows 5-7), served in-process on 127.0.0.1.

Public (the metrics address, on every node): /healthz, /readyz, /metrics only. Local (a 0600 unix
socket): /status and POST /resync as well. Both bounded in connections and in time.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import stat
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import pytest

from kvip.agent.http import AgentView, HttpLimits, serve_local, serve_public


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class FakeAgent:
    def __init__(self) -> None:
        self.relists = 0

    def view(self) -> AgentView:
        return AgentView(status=lambda: {"node": "n1", "services": {}}, alive=lambda: True, ready=lambda: True,
                         metrics=lambda: b"kvip_up 1\n", resync=self.count)

    def count(self) -> None:
        self.relists += 1


@contextlib.asynccontextmanager
async def running(serve: Awaitable[None]) -> AsyncIterator[None]:
    task = asyncio.create_task(serve)
    await asyncio.sleep(0.1)
    try:
        yield
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


Opener = Callable[[], Awaitable[tuple[asyncio.StreamReader, asyncio.StreamWriter]]]


async def request(open_connection: Opener, method: str, path: str, timeout: float = 1.0) -> tuple[int, bytes]:
    async def go() -> tuple[int, bytes]:
        reader, writer = await open_connection()
        writer.write(f"{method} {path} HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\nConnection: close\r\n\r\n".encode())
        data = await reader.read()
        writer.close()
        head, _, body = data.partition(b"\r\n\r\n")
        return int(head.split()[1]), body

    return await asyncio.wait_for(go(), timeout)


def tcp(port: int) -> Opener:
    return lambda: asyncio.open_connection("127.0.0.1", port)


async def test_status_and_resync_are_404_on_the_public_listener_and_health_is_served() -> None:
    agent, port = FakeAgent(), free_port()
    async with running(serve_public(agent.view(), f"127.0.0.1:{port}")):
        assert (await request(tcp(port), "GET", "/status"))[0] == 404
        assert (await request(tcp(port), "POST", "/resync"))[0] == 404
        assert await request(tcp(port), "GET", "/healthz") == (200, b"ok\n")
        assert await request(tcp(port), "GET", "/metrics") == (200, b"kvip_up 1\n")
    assert agent.relists == 0


async def test_the_local_socket_is_root_only_and_serves_status_and_coalesced_resync(tmp_path: Path) -> None:
    agent, path = FakeAgent(), str(tmp_path / "run" / "agent.sock")
    async with running(serve_local(agent.view(), socket_path=path, address="", min_interval=30.0)):
        mode = os.stat(path).st_mode
        assert stat.S_ISSOCK(mode) and stat.S_IMODE(mode) == 0o600
        unix: Opener = lambda: asyncio.open_unix_connection(path)
        status, body = await request(unix, "GET", "/status")
        assert status == 200 and b'"node": "n1"' in body
        answers = [await request(unix, "POST", "/resync") for _ in range(20)]
        assert [s for s, _ in answers] == [202] * 20
        assert b'"started"' in answers[0][1] and all(b'"coalesced"' in b for _, b in answers[1:])
        assert agent.relists == 1
    assert not os.path.exists(path)


async def test_a_leftover_socket_is_replaced_but_another_file_is_not(tmp_path: Path,
                                                                     caplog: pytest.LogCaptureFixture) -> None:
    stale = tmp_path / "agent.sock"
    with socket.socket(socket.AF_UNIX) as s:
        s.bind(str(stale))  # a previous run's socket, nobody listening
    agent = FakeAgent()
    async with running(serve_local(agent.view(), socket_path=str(stale), address="", min_interval=1.0)):
        assert (await request(lambda: asyncio.open_unix_connection(str(stale)), "GET", "/healthz"))[0] == 200
    regular = tmp_path / "precious"
    regular.write_text("keep me")
    with caplog.at_level(logging.WARNING):
        async with running(serve_local(agent.view(), socket_path=str(regular), address="", min_interval=1.0)):
            pass  # the agent runs on without the socket, and says so once
    assert "not a socket" in caplog.text
    assert regular.read_text() == "keep me"


async def open_half_requests(port: int, count: int) -> list[asyncio.StreamWriter]:
    """`count` connections that each send half a request line and then hold (slowloris)."""
    writers = []
    for _ in range(count):
        with contextlib.suppress(OSError):
            _, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.write(b"GET /heal")
            writers.append(writer)
    return writers


def still_open(writers: list[asyncio.StreamWriter]) -> int:
    return sum(_peek_open(w.get_extra_info("socket").fileno()) for w in writers)


def _peek_open(fd: int) -> bool:
    s = socket.socket(fileno=os.dup(fd))
    try:
        s.setblocking(False)
        return s.recv(1, socket.MSG_PEEK) != b""
    except BlockingIOError:
        return True  # nothing to read and not closed
    except OSError:
        return False
    finally:
        s.close()


async def test_1100_half_open_connections_do_not_stop_healthz_and_are_capped() -> None:
    agent, port = FakeAgent(), free_port()
    async with running(serve_public(agent.view(), f"127.0.0.1:{port}", HttpLimits(max_connections=64))):
        flood = asyncio.create_task(open_half_requests(port, 1100))
        slowest = 0.0
        while not flood.done():
            began = time.monotonic()
            assert await request(tcp(port), "GET", "/healthz", timeout=1.0) == (200, b"ok\n")
            slowest = max(slowest, time.monotonic() - began)
            await asyncio.sleep(0.02)
        writers = await flood
        await asyncio.sleep(0.2)
        assert len(writers) > 1000
        assert still_open(writers) <= 64  # the rest were closed at once, oldest first
        assert await request(tcp(port), "GET", "/healthz", timeout=1.0) == (200, b"ok\n")
        for writer in writers:
            writer.close()
    assert slowest < 1.0


async def test_a_request_head_must_arrive_in_time_and_idle_connections_are_closed() -> None:
    agent, port = FakeAgent(), free_port()
    limits = HttpLimits(header_timeout=0.3, idle_timeout=0.8)
    async with running(serve_public(agent.view(), f"127.0.0.1:{port}", limits)):
        half = await open_half_requests(port, 1)
        idle_reader, idle_writer = await asyncio.open_connection("127.0.0.1", port)
        await asyncio.sleep(0.5)
        assert still_open(half) == 0  # half a request line for 0.3 s: closed
        assert _peek_open(idle_writer.get_extra_info("socket").fileno())  # idle, within 0.8 s: kept
        await asyncio.sleep(0.5)
        assert await asyncio.wait_for(idle_reader.read(), 1) == b""  # idle past 0.8 s: closed
        # A client that keeps its connection and asks again within the idle time is served both times.
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        for _ in range(2):
            writer.write(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
            assert (await asyncio.wait_for(reader.readuntil(b"ok\n"), 1)).startswith(b"HTTP/1.1 200")
            await asyncio.sleep(0.5)
        writer.close()
