"""Probe scheduler on 127.0.0.1: hysteresis, HTTP status, targets from the snapshot, one verdict set."""

from __future__ import annotations

import asyncio
from types import MappingProxyType

from kvip.agent.probes import (
    ProbeScheduler,
    ProbeSettings,
    ProbeTarget,
    targets_for_node,
)
from kvip.core.model import (
    ClusterSnapshot,
    EndpointView,
    PortView,
    ServiceKey,
    ServiceView,
)

SETTINGS = ProbeSettings(interval=0.05, timeout=0.3, rise=2, fall=2)


async def serve(status: bytes = b"200 OK") -> tuple[asyncio.Server, int]:
    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readline()
        writer.write(b"HTTP/1.0 " + status + b"\r\n\r\n")
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    return server, server.sockets[0].getsockname()[1]


async def test_endpoint_goes_down_only_after_fall_failures_and_up_after_rise_successes() -> None:
    server, port = await serve()
    changes: list[frozenset[str]] = []
    scheduler = ProbeScheduler(SETTINGS, on_change=lambda: changes.append(scheduler.verdicts().failing))
    scheduler.set_targets({ProbeTarget("127.0.0.1", port)})
    await scheduler.probe_all()
    assert scheduler.verdicts().failing == frozenset()
    server.close()
    await server.wait_closed()
    await scheduler.probe_all()
    assert scheduler.verdicts().failing == frozenset()  # one failure is not enough
    await scheduler.probe_all()
    assert scheduler.verdicts().failing == {"127.0.0.1"}
    again = await asyncio.start_server(lambda r, w: w.close(), "127.0.0.1", port)
    await scheduler.probe_all()
    assert scheduler.verdicts().failing == {"127.0.0.1"}
    await scheduler.probe_all()
    assert scheduler.verdicts().failing == frozenset()
    assert changes == [frozenset({"127.0.0.1"}), frozenset()]
    again.close()


async def test_http_probe_needs_a_2xx_answer() -> None:
    server, port = await serve(b"503 Service Unavailable")
    scheduler = ProbeScheduler(SETTINGS, on_change=lambda: None)
    scheduler.set_targets({ProbeTarget("127.0.0.1", port, "http", "/healthz")})
    for _ in range(2):
        await scheduler.probe_all()
    assert scheduler.verdicts().failing == {"127.0.0.1"}
    server.close()


async def serve_silence() -> tuple[asyncio.Server, list[int]]:
    """An HTTP endpoint that accepts every connection and never answers: each probe of it lasts the
    full timeout (a refused connection would fail at once and prove nothing about concurrency)."""
    accepted = [0]

    async def hang(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        accepted[0] += 1
        await reader.read()  # until the prober gives up and closes
        writer.close()

    server = await asyncio.start_server(hang, "127.0.0.1", 0, backlog=1024)
    return server, accepted


async def test_one_scheduler_probes_a_thousand_slow_targets_in_one_round() -> None:
    server, accepted = await serve_silence()
    port = server.sockets[0].getsockname()[1]
    scheduler = ProbeScheduler(SETTINGS, on_change=lambda: None)
    # One silent listener; a thousand distinct targets (the path is part of a target).
    scheduler.set_targets({ProbeTarget("127.0.0.1", port, "http", f"/pod-{i}") for i in range(1000)})
    sequential = 1000 * SETTINGS.timeout  # 300 s: every probe waits out its timeout
    loop = asyncio.get_running_loop()
    start = loop.time()
    await scheduler.probe_all()
    took = loop.time() - start
    server.close()
    assert accepted[0] == 1000  # every target was really probed, and each one hung
    assert took >= SETTINGS.timeout  # the probes did wait for an answer ...
    assert took < sequential / 10, took  # ... side by side: 4 waves of CONCURRENCY take about 1.2 s


def test_targets_are_this_nodes_ready_endpoints_unless_the_service_opts_out() -> None:
    def service(name: str, probe: str | None = None) -> ServiceView:
        annotations = {"kvip.io/probe": probe} if probe else {}
        return ServiceView(ServiceKey("default", name), annotations=MappingProxyType(annotations))

    ports = (PortView("p", 8080),)
    snapshot = ClusterSnapshot(
        {s.key: s for s in (service("a"), service("b", "off"), service("c", "http:/ready"))},
        {
            ServiceKey("default", "a"): (EndpointView(("10.0.0.1",), "n1", ports=ports),
                                         EndpointView(("10.0.0.2",), "n2", ports=ports),
                                         EndpointView(("10.0.0.3",), "n1", ready=False, ports=ports)),
            ServiceKey("default", "b"): (EndpointView(("10.0.0.4",), "n1", ports=ports),),
            ServiceKey("default", "c"): (EndpointView(("10.0.0.5",), "n1", ports=ports),),
        },
    )
    assert targets_for_node(snapshot, "n1") == {ProbeTarget("10.0.0.1", 8080),
                                                ProbeTarget("10.0.0.5", 8080, "http", "/ready")}
