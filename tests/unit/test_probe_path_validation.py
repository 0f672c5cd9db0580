"""`kvip.io/probe: http:<path>` cannot smuggle a request (kvip issue #17, row 9).

The path is written into an HTTP request line from the host network; a tenant who can annotate a
Service must not be able to add headers or a second request (CR/LF), nor anything but a plain path.
"""

from __future__ import annotations

import asyncio
from types import MappingProxyType

import pytest
from hypothesis import given
from hypothesis import strategies as st

from kvip.agent.probes import (
    MAX_PROBE_PATH,
    ProbeScheduler,
    ProbeSpec,
    ProbeSpecError,
    ProbeTarget,
    parse_probe_spec,
    probe_plan,
)
from kvip.config.settings import ProbeSettings
from kvip.core.model import (
    ClusterSnapshot,
    EndpointView,
    PortView,
    ServiceKey,
    ServiceView,
)

SMUGGLING = "http:/healthz HTTP/1.1\r\nHost: x\r\n\r\nPOST /admin/delete"


@pytest.mark.parametrize("spec", [
    SMUGGLING,
    "http:/a\nb",
    "http:/a b",
    "http:healthz",  # not origin-form
    "http:/caf\u00e9",
    "http:/\x7f",
    "http:/" + "a" * MAX_PROBE_PATH,
    "gopher",
])
def test_a_hostile_or_malformed_probe_spec_is_refused(spec: str) -> None:
    with pytest.raises(ProbeSpecError):
        parse_probe_spec(spec)


@pytest.mark.parametrize("spec,parsed", [
    ("http:/Ready?full=1&x=%20", ProbeSpec("http", "/Ready?full=1&x=%20")),  # case kept, encoded space fine
    ("HTTP", ProbeSpec("http", "/")),
    (" tcp ", ProbeSpec("tcp")),
    ("off", ProbeSpec("off")),
    ("http:/" + "a" * (MAX_PROBE_PATH - 1), ProbeSpec("http", "/" + "a" * (MAX_PROBE_PATH - 1))),
])
def test_ordinary_probe_specs_are_accepted(spec: str, parsed: ProbeSpec) -> None:
    assert parse_probe_spec(spec) == parsed


@given(st.text(max_size=300))
def test_whatever_is_accepted_is_a_single_safe_request_line(text: str) -> None:
    try:
        spec = parse_probe_spec(f"http:{text}")
    except ProbeSpecError:
        return
    line = f"GET {spec.path} HTTP/1.0"
    assert line.isascii() and line.count(" ") == 2 and "\r" not in line and "\n" not in line


def snapshot_with(probe: str) -> ClusterSnapshot:
    ports = (PortView("p", 8080),)
    services = {ServiceKey("default", name): ServiceView(ServiceKey("default", name),
                                                         annotations=MappingProxyType(annotations))
                for name, annotations in (("evil", {"kvip.io/probe": probe}), ("good", {"kvip.io/probe": "http:/ok"}))}
    endpoints = {ServiceKey("default", "evil"): (EndpointView(("10.0.0.1",), "n1", ports=ports),),
                 ServiceKey("default", "good"): (EndpointView(("10.0.0.2",), "n1", ports=ports),)}
    return ClusterSnapshot(services, endpoints)


def test_a_service_with_a_smuggling_probe_is_not_probed_and_gets_a_problem() -> None:
    plan = probe_plan(snapshot_with(SMUGGLING), "n1")
    assert plan.targets == {ProbeTarget("10.0.0.2", 8080, "http", "/ok")}
    assert [(p.service, p.reason) for p in plan.problems] == [(ServiceKey("default", "evil"), "InvalidProbe")]
    assert "\r" not in plan.problems[0].message  # shown escaped: the problem itself cannot forge log lines


async def test_nothing_is_written_for_a_target_whose_path_was_never_validated() -> None:
    received: list[bytes] = []

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            received.append(await asyncio.wait_for(reader.read(4096), 0.3))
        except TimeoutError:
            received.append(b"")
        writer.write(b"HTTP/1.0 200 OK\r\n\r\n")
        writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        scheduler = ProbeScheduler(ProbeSettings(timeout=1.0, fall=1), on_change=lambda: None)
        scheduler.set_targets({ProbeTarget("127.0.0.1", port, "http", SMUGGLING[5:])})
        await scheduler.probe_all()
        assert scheduler.verdicts().failing == {"127.0.0.1"}
        await asyncio.sleep(0.4)
        assert b"POST" not in b"".join(received) and b"\r\nHost: x" not in b"".join(received)
    finally:
        server.close()
        await server.wait_closed()
