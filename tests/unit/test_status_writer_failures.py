"""The status writer's best effort: a failed write is logged once per outage and retried on a later pass,
the write goes to the status subresource, every write is counted, and one service skipped in a pass
does not stop the others from being written."""

from __future__ import annotations

import asyncio
import ipaddress
import logging
from typing import Any

import pytest

from kvip.core.model import DesiredState, ServiceDecision, ServiceKey, ServiceView
from kvip.kube.resources import Service
from kvip.kube.status_writer import ECHO_WAIT, ServiceStatusWriter

WEB, API = ServiceKey("default", "web"), ServiceKey("default", "api")


class FlakyStatusApi:
    """Fails while `down`; records what each PATCH was sent to."""

    def __init__(self) -> None:
        self.down = False
        self.sent: list[tuple[Any, ServiceKey, tuple[str, ...]]] = []

    async def patch(self, resource: Any, name: str, obj: dict[str, Any], *, namespace: str) -> dict[str, Any]:
        if self.down:
            raise ConnectionError("api unreachable")
        ips = tuple(entry["ip"] for entry in obj["status"]["loadBalancer"]["ingress"])
        self.sent.append((resource, ServiceKey(namespace, name), ips))
        return {}


def decision(key: ServiceKey, vip: str, advertised: bool = True) -> ServiceDecision:
    return ServiceDecision(key, (ipaddress.ip_address(vip),), eligible=advertised, advertised=advertised,
                           reason="advertised" if advertised else "not-leader")


def state(*decisions: ServiceDecision) -> DesiredState:
    return DesiredState(advertisements={}, decisions={d.service: d for d in decisions})


async def settle() -> None:
    for _ in range(20):
        await asyncio.sleep(0)


async def passes(api: FlakyStatusApi, writer: ServiceStatusWriter, *rounds: tuple[bool, DesiredState],
                 clock: list[float] | None = None, step: float = 0.0) -> None:
    """One report per round; the cache never shows our writes (the watch is slow), and `clock[0]`
    moves on by `step` seconds after each round."""
    services = {WEB: ServiceView(WEB), API: ServiceView(API, ingress_ips=("10.96.0.2",))}
    task = asyncio.create_task(writer.run())
    try:
        for down, desired in rounds:
            if clock is not None:
                clock[0] += step
            api.down = down
            writer.report(desired, services)
            await settle()
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


async def test_a_failed_write_is_retried_on_a_later_pass_and_sent_to_the_status_subresource() -> None:
    api = FlakyStatusApi()
    writer = ServiceStatusWriter(api)  # type: ignore[arg-type]
    await passes(api, writer, (True, state(decision(WEB, "10.96.0.1"))), (False, state(decision(WEB, "10.96.0.1"))))
    assert api.sent == [(Service.Status, WEB, ("10.96.0.1",))]
    assert writer.writes == 1


async def test_every_successful_write_is_counted() -> None:
    api = FlakyStatusApi()
    writer = ServiceStatusWriter(api)  # type: ignore[arg-type]
    assert writer.writes == 0
    await passes(api, writer, (False, state(decision(WEB, "10.96.0.1"))), (False, state(decision(WEB, "10.96.0.3"))),
                 (False, state(decision(WEB, "10.96.0.4"))))
    assert writer.writes == 3


async def test_failures_are_logged_once_per_outage(caplog: pytest.LogCaptureFixture) -> None:
    api = FlakyStatusApi()
    writer = ServiceStatusWriter(api)  # type: ignore[arg-type]
    with caplog.at_level(logging.WARNING, logger="kvip.status"):
        await passes(api, writer, (True, state(decision(WEB, "10.96.0.1"))), (True, state(decision(WEB, "10.96.0.3"))),
                     (False, state(decision(WEB, "10.96.0.4"))), (True, state(decision(WEB, "10.96.0.5"))))
    warnings = [r.getMessage() for r in caplog.records if r.name == "kvip.status"]
    assert warnings == ["cannot write status of default/web (ConnectionError: api unreachable); routes are unaffected"] * 2


async def test_a_service_skipped_in_a_pass_does_not_stop_the_next_one_from_being_written() -> None:
    api = FlakyStatusApi()
    writer = ServiceStatusWriter(api)  # type: ignore[arg-type]
    not_here = decision(API, "10.96.0.9", advertised=False)  # skipped: not advertised by this node
    already = decision(API, "10.96.0.2")  # skipped: its status already says so
    just_written = decision(WEB, "10.96.0.7")  # skipped: written a moment ago, the watch has not shown it yet
    await passes(api, writer, (False, state(not_here, decision(WEB, "10.96.0.1"))),
                 (False, state(already, decision(WEB, "10.96.0.7"))),
                 (False, state(just_written, decision(API, "10.96.0.8"))))
    assert [ips for _, _, ips in api.sent] == [("10.96.0.1",), ("10.96.0.7",), ("10.96.0.8",)]


async def test_a_status_just_written_is_written_again_only_after_the_echo_wait() -> None:
    """Our own write's watch event may lag: within ECHO_WAIT the same write is not repeated; after it,
    a status still not showing our VIPs (someone reverted it, or the event was lost) is written again."""
    clock = [1000.0]
    api = FlakyStatusApi()
    writer = ServiceStatusWriter(api, clock=lambda: clock[0])  # type: ignore[arg-type]
    web = state(decision(WEB, "10.96.0.1"))
    await passes(api, writer, (False, web), (False, web), (False, web), clock=clock, step=ECHO_WAIT / 2 - 0.1)
    assert len(api.sent) == 1
    await passes(api, writer, (False, web), clock=clock, step=1.0)
    assert len(api.sent) == 2
