"""Each pass, the status writer compares only the Services that may have changed (kvip issue #21): those
whose decision or cached view is not the very object of the previous pass, plus those still unsettled.
Its writes must be the ones comparing every Service would make."""

from __future__ import annotations

import asyncio
import ipaddress
from typing import Any

from kvip.core.model import DesiredState, ServiceDecision, ServiceKey, ServiceView
from kvip.kube.status_writer import ServiceStatusWriter

KEYS = [ServiceKey("default", f"svc-{i}") for i in range(1000)]


def vip(i: int) -> str:
    return f"10.96.{i // 256}.{i % 256}"


def decision(key: ServiceKey, address: str, advertised: bool = True) -> ServiceDecision:
    return ServiceDecision(key, (ipaddress.ip_address(address),), eligible=True, advertised=advertised,
                           reason="advertised" if advertised else "no local endpoint")


class Api:
    def __init__(self) -> None:
        self.writes: list[tuple[str, tuple[str, ...]]] = []

    async def patch(self, resource: Any, name: str, obj: dict[str, Any], *, namespace: str) -> None:
        self.writes.append((name, tuple(e["ip"] for e in obj["status"]["loadBalancer"]["ingress"])))


async def settle() -> None:
    for _ in range(20):
        await asyncio.sleep(0)


async def test_one_changed_service_among_a_thousand_settled_ones_is_the_only_one_compared() -> None:
    api = Api()
    writer = ServiceStatusWriter(api)  # type: ignore[arg-type]
    task = asyncio.create_task(writer.run())
    try:
        decisions = {k: decision(k, vip(i)) for i, k in enumerate(KEYS)}
        services = {k: ServiceView(k, ingress_ips=(vip(i),)) for i, k in enumerate(KEYS)}
        writer.report(DesiredState({}, decisions), services)
        assert writer.compared == 1000 and api.writes == []
        # The next pass: one decision changed (new VIP); every other object is the same one.
        decisions = {**decisions, KEYS[5]: decision(KEYS[5], "10.97.0.5")}
        writer.report(DesiredState({}, decisions), dict(services))
        await settle()
        assert writer.compared == 1 and api.writes == [("svc-5", ("10.97.0.5",))]
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


async def test_a_status_somebody_else_overwrote_is_written_again_though_the_decision_is_unchanged() -> None:
    api = Api()
    writer = ServiceStatusWriter(api)  # type: ignore[arg-type]
    task = asyncio.create_task(writer.run())
    try:
        decisions = {k: decision(k, vip(i)) for i, k in enumerate(KEYS[:3])}
        services = {k: ServiceView(k, ingress_ips=(vip(i),)) for i, k in enumerate(KEYS[:3])}
        state = DesiredState({}, decisions)
        writer.report(state, services)
        # The same decisions (the same objects: decide() had nothing new to say), but the cache now
        # shows another controller's address in svc-1's status.
        writer.report(state, {**services, KEYS[1]: ServiceView(KEYS[1], ingress_ips=("192.0.2.1",))})
        await settle()
        assert api.writes == [("svc-1", (vip(1),))]
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


async def test_a_service_advertised_again_is_compared_again() -> None:
    api = Api()
    writer = ServiceStatusWriter(api)  # type: ignore[arg-type]
    task = asyncio.create_task(writer.run())
    try:
        services = {KEYS[0]: ServiceView(KEYS[0])}  # no status yet
        writer.report(DesiredState({}, {KEYS[0]: decision(KEYS[0], vip(0), advertised=False)}), services)
        writer.report(DesiredState({}, {KEYS[0]: decision(KEYS[0], vip(0))}), services)
        await settle()
        assert api.writes == [("svc-0", (vip(0),))]
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


async def test_the_reconcilers_changed_decisions_are_used_without_comparing_the_decisions_again(
        monkeypatch: Any) -> None:
    import kvip.kube.status_writer as module

    compared_maps: list[int] = []
    real = module.changed_keys
    monkeypatch.setattr(module, "changed_keys", lambda old, new: compared_maps.append(id(new)) or real(old, new))
    api = Api()
    writer = ServiceStatusWriter(api)  # type: ignore[arg-type]
    task = asyncio.create_task(writer.run())
    try:
        decisions = {k: decision(k, vip(i)) for i, k in enumerate(KEYS)}
        services = {k: ServiceView(k, ingress_ips=(vip(i),)) for i, k in enumerate(KEYS)}
        writer.report(DesiredState({}, decisions), services)
        # Every decision is a new (equal) object, but the reconciler says only svc-5 changed: one comparison.
        rebuilt = {k: decision(k, vip(i)) for i, k in enumerate(KEYS)} | {KEYS[5]: decision(KEYS[5], "10.97.0.5")}
        compared_maps.clear()
        writer.report(DesiredState({}, rebuilt), services, changed=frozenset({KEYS[5]}))
        await settle()
        assert writer.compared == 1 and api.writes == [("svc-5", ("10.97.0.5",))]
        assert compared_maps == [id(services)]  # the views only: the decisions were compared by the reconciler
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


async def test_a_burst_of_writes_leaves_nothing_behind_once_their_echo_wait_has_passed(monkeypatch: Any) -> None:
    """kvip issue #21: after a first sync the echoes are quiet (no pass runs), and each write was kept with
    its ingress until the next pass; one the echo wait no longer counts is forgotten, with the same result."""
    import kvip.kube.status_writer as module

    monkeypatch.setattr(module, "ECHO_WAIT", 0.05)
    api = Api()
    writer = ServiceStatusWriter(api)  # type: ignore[arg-type]
    task = asyncio.create_task(writer.run())
    try:
        state = DesiredState({}, {k: decision(k, vip(i)) for i, k in enumerate(KEYS)})
        services = {k: ServiceView(k) for k in KEYS}
        writer.report(state, services)
        await settle()
        assert len(api.writes) == 1000 and len(writer._written) == 1000
        await asyncio.sleep(0.2)
        assert writer._written == {}
        writer.report(state, services)  # the cache never showed them: each is written again, as before
        await settle()
        assert len(api.writes) == 2000
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
