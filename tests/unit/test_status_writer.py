"""Service status is written only when it differs: against a fake API that flags every rewrite.

A rewrite of an identical status changes no resourceVersion (the real server makes a no-op write a
no-op), so only counting the writes shows it: the fake counts them, and records any write of the
status it already holds.
"""

from __future__ import annotations

import asyncio
import ipaddress
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from kvip.core.model import DesiredState, ServiceDecision, ServiceKey, ServiceView
from kvip.kube.status_writer import ECHO_WAIT, ServiceStatusWriter, wanted_ingress

WEB = ServiceKey("default", "web")
VIP = "10.96.0.7"


class FakeStatusApi:
    """Holds each service's status ingress; counts PATCHes, and keeps those that changed nothing."""

    def __init__(self, ingress: dict[ServiceKey, tuple[str, ...]]) -> None:
        self.ingress = dict(ingress)
        self.writes: list[tuple[ServiceKey, tuple[str, ...]]] = []
        self.rewrites: list[tuple[ServiceKey, tuple[str, ...]]] = []

    async def patch(self, resource: Any, name: str, obj: dict[str, Any], *, namespace: str) -> dict[str, Any]:
        key = ServiceKey(namespace, name)
        ips = tuple(entry["ip"] for entry in obj["status"]["loadBalancer"]["ingress"])
        self.writes.append((key, ips))
        if self.ingress.get(key) == ips:
            self.rewrites.append((key, ips))
        self.ingress[key] = ips
        return {"metadata": {"name": name, "namespace": namespace}, "status": obj["status"]}

    def view(self, key: ServiceKey) -> ServiceView:
        """The service as the agent's cache has it once the watch delivered the latest write."""
        return ServiceView(key, ingress_ips=self.ingress.get(key, ()))


def advertised(key: ServiceKey, *vips: str) -> DesiredState:
    decision = ServiceDecision(key, tuple(ipaddress.ip_address(v) for v in vips), eligible=True, advertised=True,
                               reason="advertised")
    return DesiredState(advertisements={}, decisions={key: decision})


async def settle() -> None:
    """Let the writer drain its queue: the fake API answers without ever blocking."""
    for _ in range(20):
        await asyncio.sleep(0)


@asynccontextmanager
async def writing(api: FakeStatusApi) -> AsyncIterator[ServiceStatusWriter]:
    writer = ServiceStatusWriter(api)  # type: ignore[arg-type]
    task = asyncio.create_task(writer.run())
    try:
        yield writer
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


async def test_a_status_that_already_says_our_vips_is_never_written() -> None:
    api = FakeStatusApi({WEB: (VIP,)})
    async with writing(api) as writer:
        for _ in range(10):  # every reconcile pass: events, relists, resyncs
            writer.report(advertised(WEB, VIP), {WEB: api.view(WEB)})
            await settle()
    assert api.writes == [] and api.rewrites == []


async def test_a_missing_status_is_written_once_and_then_left_alone() -> None:
    api = FakeStatusApi({})
    async with writing(api) as writer:
        for _ in range(10):
            writer.report(advertised(WEB, VIP), {WEB: api.view(WEB)})
            await settle()
    assert api.writes == [(WEB, (VIP,))] and api.rewrites == []


async def test_passes_before_the_write_is_sent_queue_it_once() -> None:
    api = FakeStatusApi({})
    stale = api.view(WEB)
    async with writing(api) as writer:
        for _ in range(5):  # five passes in one burst, before the writer runs
            writer.report(advertised(WEB, VIP), {WEB: stale})
        await settle()
    assert api.writes == [(WEB, (VIP,))]


async def test_a_changed_vip_is_written_once_more() -> None:
    api = FakeStatusApi({WEB: (VIP,)})
    async with writing(api) as writer:
        for _ in range(3):
            writer.report(advertised(WEB, "10.96.0.8"), {WEB: api.view(WEB)})
            await settle()
    assert api.writes == [(WEB, ("10.96.0.8",))] and api.rewrites == []


async def test_services_not_advertised_here_are_not_written() -> None:
    api = FakeStatusApi({})
    decision = ServiceDecision(WEB, (ipaddress.ip_address(VIP),), eligible=True, advertised=False,
                               reason="no local endpoint")
    async with writing(api) as writer:
        writer.report(DesiredState(advertisements={}, decisions={WEB: decision}), {WEB: api.view(WEB)})
        await settle()
    assert api.writes == []


@given(st.lists(st.sampled_from(["10.96.0.1", "10.96.0.2", "fd00::1"]), max_size=3, unique=True),
       st.lists(st.sampled_from(["10.96.0.1", "10.96.0.2", "fd00::1"]), max_size=3, unique=True))
def test_the_rule_asks_for_a_write_exactly_when_the_status_differs(status: list[str], vips: list[str]) -> None:
    want = wanted_ingress(ServiceView(WEB, ingress_ips=tuple(status)), tuple(vips))
    if not vips or status == vips:
        assert want is None
    else:
        assert want == tuple(vips)


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


async def test_passes_between_a_write_and_its_watch_event_do_not_write_it_again() -> None:
    api, clock = FakeStatusApi({}), Clock()
    writer = ServiceStatusWriter(api, clock=clock)  # type: ignore[arg-type]
    task = asyncio.create_task(writer.run())
    try:
        writer.report(advertised(WEB, VIP), {WEB: ServiceView(WEB)})
        await settle()
        for _ in range(5):  # the cache still shows no status: the write's event is on its way
            clock.now += 1.0
            writer.report(advertised(WEB, VIP), {WEB: ServiceView(WEB)})
            await settle()
        assert api.writes == [(WEB, (VIP,))]
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


async def test_a_written_status_the_cache_never_shows_is_written_again_after_the_echo_wait() -> None:
    api, clock = FakeStatusApi({}), Clock()
    writer = ServiceStatusWriter(api, clock=clock)  # type: ignore[arg-type]
    task = asyncio.create_task(writer.run())
    try:
        writer.report(advertised(WEB, VIP), {WEB: ServiceView(WEB)})
        await settle()
        clock.now += ECHO_WAIT  # somebody overwrote it meanwhile, or its event was lost with a watch
        writer.report(advertised(WEB, VIP), {WEB: ServiceView(WEB)})
        await settle()
        assert api.writes == [(WEB, (VIP,)), (WEB, (VIP,))]
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


async def test_a_status_the_cache_has_shown_is_written_again_at_once_when_somebody_clears_it() -> None:
    api, clock = FakeStatusApi({}), Clock()
    writer = ServiceStatusWriter(api, clock=clock)  # type: ignore[arg-type]
    task = asyncio.create_task(writer.run())
    try:
        writer.report(advertised(WEB, VIP), {WEB: ServiceView(WEB)})
        await settle()
        writer.report(advertised(WEB, VIP), {WEB: api.view(WEB)})  # the echo has arrived
        writer.report(advertised(WEB, VIP), {WEB: ServiceView(WEB)})  # then somebody cleared the status
        await settle()
        assert api.writes == [(WEB, (VIP,)), (WEB, (VIP,))]
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


class SlowFirstApi(FakeStatusApi):
    """The first PATCH takes longer than the next: concurrent writes of one Service would land swapped."""

    def __init__(self, ingress: dict[ServiceKey, tuple[str, ...]]) -> None:
        super().__init__(ingress)
        self.calls = 0

    async def patch(self, resource: Any, name: str, obj: dict[str, Any], *, namespace: str) -> dict[str, Any]:
        self.calls += 1
        await asyncio.sleep(0.05 if self.calls == 1 else 0)
        return await super().patch(resource, name, obj, namespace=namespace)


async def test_many_services_are_written_concurrently_but_one_service_in_order() -> None:
    api = SlowFirstApi({})
    others = [ServiceKey("default", f"svc-{i}") for i in range(20)]
    async with writing(api) as writer:
        writer.report(advertised(WEB, VIP), {WEB: ServiceView(WEB)})
        writer.report(advertised(WEB, "10.96.0.8"), {WEB: ServiceView(WEB)})  # changed before the first landed
        for key in others:
            writer.report(advertised(key, VIP), {key: ServiceView(key)})
        await asyncio.sleep(0.01)
        assert len(api.writes) >= 10  # the others did not wait behind the slow write
        await asyncio.sleep(0.1)
    assert [ips for key, ips in api.writes if key == WEB] == [(VIP,), ("10.96.0.8",)]
    assert api.ingress[WEB] == ("10.96.0.8",)


async def test_a_service_whose_status_is_right_or_already_queued_does_not_hold_up_the_next() -> None:
    done, pending, missing = (ServiceKey("default", name) for name in ("a-done", "b-pending", "c-missing"))
    api = FakeStatusApi({done: (VIP,)})
    decisions = {key: ServiceDecision(key, (ipaddress.ip_address(VIP),), eligible=True, advertised=True,
                                      reason="advertised") for key in (done, pending, missing)}
    state = DesiredState(advertisements={}, decisions=decisions)
    async with writing(api) as writer:
        writer.report(advertised(pending, VIP), {pending: api.view(pending)})  # queued, not yet sent
        writer.report(state, {key: api.view(key) for key in decisions})
        await settle()
    assert sorted(api.writes) == [(pending, (VIP,)), (missing, (VIP,))]
