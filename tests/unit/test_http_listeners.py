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


async def exchange(port: int, data: bytes, timeout: float = 2.0) -> bytes:
    """Send raw bytes, read until the server closes (within `timeout`, else the test fails)."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(data)
        async with asyncio.timeout(timeout):
            return await reader.read()
    finally:
        writer.close()


async def test_methods_paths_content_types_and_keep_alive_are_as_before() -> None:
    agent, port = FakeAgent(), free_port()
    async with running(serve_local(agent.view(), socket_path="", address=f"127.0.0.1:{port}", min_interval=30.0)):
        def ask(method: str, path: str) -> bytes:
            return f"{method} {path} HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\nConnection: close\r\n\r\n".encode()

        metrics = await exchange(port, ask("GET", "/metrics"))
        assert metrics.startswith(b"HTTP/1.1 200 OK\r\n") and metrics.endswith(b"\r\n\r\nkvip_up 1\n")
        assert b"\r\nContent-Type: text/plain; charset=utf-8\r\n" in metrics  # as Prometheus expects
        status = await exchange(port, ask("GET", "/status?x=1"))
        assert b"\r\nContent-Type: application/json; charset=utf-8\r\n" in status and b'"node": "n1"' in status
        resync = await exchange(port, ask("POST", "/resync"))
        assert resync.startswith(b"HTTP/1.1 202") and b"application/json" in resync and b'"started"' in resync
        head = await exchange(port, ask("HEAD", "/healthz"))
        assert head.startswith(b"HTTP/1.1 200") and b"Content-Length: 3\r\n" in head and head.endswith(b"\r\n\r\n")
        for method, path, allow in (("POST", "/healthz", b"GET,HEAD"), ("GET", "/resync", b"POST"),
                                    ("PUT", "/status", b"GET,HEAD"), ("DELETE", "/metrics", b"GET,HEAD")):
            answer = await exchange(port, ask(method, path))
            assert answer.startswith(b"HTTP/1.1 405") and b"\r\nAllow: " + allow + b"\r\n" in answer, (method, path)
            assert answer.endswith(b"405: Method Not Allowed")
        for method, path in (("GET", "/nope"), ("POST", "/nope"), ("GET", "/healthz/"), ("GET", "//healthz")):
            answer = await exchange(port, ask(method, path))
            assert answer.startswith(b"HTTP/1.1 404") and answer.endswith(b"404: Not Found"), (method, path)
        # Keep-alive, pipelined: two requests in one write, two answers in order on one connection.
        both = await exchange(port, b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n"
                                    b"GET /readyz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        assert both.count(b"HTTP/1.1 200 OK") == 2 and both.index(b"ok\n") < both.index(b"ready\n")
    assert agent.relists == 1


HOSTILE = {
    "not HTTP": b"garbage\r\n\r\n",
    "unknown version": b"GET /healthz HTTP/9.9\r\nHost: x\r\n\r\n",
    "HTTP/2 preface": b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n",
    "no Host": b"GET /healthz HTTP/1.1\r\n\r\n",
    "header without colon": b"GET /healthz HTTP/1.1\r\nHost x\r\n\r\n",
    "space before colon": b"GET /healthz HTTP/1.1\r\nHost : x\r\n\r\n",
    "NUL in target": b"GET /heal\x00thz HTTP/1.1\r\nHost: x\r\n\r\n",
    "Content-Length and Transfer-Encoding": b"POST /resync HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n"
                                            b"Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
    "two Content-Lengths": b"POST /resync HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\nhello!",
    "negative Content-Length": b"POST /resync HTTP/1.1\r\nHost: x\r\nContent-Length: -1\r\n\r\n",
    "5,000-digit Content-Length": b"POST /resync HTTP/1.1\r\nHost: x\r\nContent-Length: " + b"9" * 5000 + b"\r\n\r\n",
    "unknown Transfer-Encoding": b"POST /resync HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip\r\n\r\n",
    "bad chunk size": b"POST /resync HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
    "10 KB target in one read": b"GET /" + b"a" * 10000 + b" HTTP/1.1\r\nHost: x\r\n\r\n",
    "2,000 headers in one read": b"GET /healthz HTTP/1.1\r\nHost: x\r\n" + b"X: y\r\n" * 2000 + b"\r\n",
}


async def test_hostile_requests_get_400_or_413_and_a_close_and_the_listener_serves_on(
        caplog: pytest.LogCaptureFixture) -> None:
    agent, port = FakeAgent(), free_port()
    async with running(serve_local(agent.view(), socket_path="", address=f"127.0.0.1:{port}", min_interval=30.0)):
        with caplog.at_level(logging.INFO):
            for name, data in HOSTILE.items():
                answer = await exchange(port, data)
                assert answer.startswith(b"HTTP/1.1 400 Bad Request\r\n"), (name, answer[:80])
                assert b"\r\nConnection: close\r\n" in answer and answer.endswith(b"400: Bad Request"), name
            # A body above 4,096 bytes: declared, or sent in chunks.
            big = b"POST /resync HTTP/1.1\r\nHost: x\r\nContent-Length: 4097\r\n\r\n" + b"a" * 4097
            assert (await exchange(port, big)).startswith(b"HTTP/1.1 413")
            chunked = b"POST /resync HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
            assert (await exchange(port, chunked + (b"400\r\n" + b"a" * 1024 + b"\r\n") * 5)).startswith(b"HTTP/1.1 413")
            # A head growing past the bound a piece at a time is refused without waiting for its end.
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.write(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")
            for _ in range(20):
                writer.write(b"X-Filler: " + b"y" * 1000 + b"\r\n")
                await asyncio.sleep(0.01)
            async with asyncio.timeout(2):
                assert (await reader.read()).startswith(b"HTTP/1.1 400")
            writer.close()
        assert not [r for r in caplog.records if r.levelno >= logging.WARNING], caplog.text  # no traceback per request
        assert await request(tcp(port), "GET", "/healthz") == (200, b"ok\n")
    assert agent.relists == 0  # no refused request reached a handler


async def test_a_head_dribbled_a_byte_at_a_time_is_closed_at_the_header_timeout_and_a_body_at_the_body_timeout(
        ) -> None:
    agent, port = FakeAgent(), free_port()
    limits = HttpLimits(header_timeout=0.5, body_timeout=0.5, idle_timeout=5.0)
    async with running(serve_public(agent.view(), f"127.0.0.1:{port}", limits)):
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        began = time.monotonic()
        with contextlib.suppress(ConnectionError):
            for byte in b"GET /healthz HTTP/1.1\r\nHost: xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx\r\n":
                writer.write(bytes([byte]))
                await writer.drain()
                await asyncio.sleep(0.05)
                if reader.at_eof() or _peek_open(writer.get_extra_info("socket").fileno()) is False:
                    break
        async with asyncio.timeout(2):
            assert await reader.read() == b""  # closed, no answer: its time ran from the first byte
        assert 0.4 < time.monotonic() - began < 1.5
        writer.close()
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"POST /healthz HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\nabc")
        began = time.monotonic()
        async with asyncio.timeout(2):
            assert await reader.read() == b""
        assert 0.4 < time.monotonic() - began < 1.5
        writer.close()


async def test_an_answer_being_sent_is_never_the_one_closed_for_a_newcomer() -> None:
    big = b"kvip_filler 1\n" * 1_000_000  # 14 MB: more than the socket buffers take, so it is still being sent
    agent, port = FakeAgent(), free_port()
    view = AgentView(status=dict, alive=lambda: True, ready=lambda: True, metrics=lambda: big, resync=agent.count)
    async with running(serve_public(view, f"127.0.0.1:{port}", HttpLimits(max_connections=8, idle_timeout=5.0))):
        reader, writer = await asyncio.open_connection("127.0.0.1", port)  # reads 128 KiB, then waits
        writer.write(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")  # keep-alive: it stays after its answer
        await asyncio.sleep(0.3)  # the answer is written and waits for this client to read it
        flood = []  # idle newcomers: each needs an older one closed, and this client's is the oldest
        for _ in range(100):
            flood.append((await asyncio.open_connection("127.0.0.1", port))[1])
        await asyncio.sleep(0.3)
        assert still_open(flood) <= 8
        async with asyncio.timeout(5):
            head = await reader.readuntil(b"\r\n\r\n")
            answer = await reader.readexactly(len(big))
        assert head.startswith(b"HTTP/1.1 200") and answer == big
        for w in flood + [writer]:
            w.close()


async def test_shutdown_closes_keep_alive_connections_and_the_listening_socket() -> None:
    agent, port = FakeAgent(), free_port()
    task = asyncio.create_task(serve_public(agent.view(), f"127.0.0.1:{port}"))
    await asyncio.sleep(0.1)
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
    async with asyncio.timeout(1):
        assert (await reader.readuntil(b"ok\n")).startswith(b"HTTP/1.1 200")
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
    async with asyncio.timeout(1):
        assert await reader.read() == b""  # the idle keep-alive connection was closed, not left open
    writer.close()
    with pytest.raises(ConnectionRefusedError):
        await asyncio.open_connection("127.0.0.1", port)
