"""Events are rate-limited and deduplicated (kvip issue #17, row 12: 500 creates in 0.21 s from one node).

A fake clock and a fake API client: every decision is checked on plain values, no sleeping.
"""

from __future__ import annotations

from typing import Any

from lightkube.core.exceptions import ApiError
from lightkube.models.meta_v1 import Status

from kvip.core.model import BadInput, ServiceKey
from kvip.kube.events import EventCorrelator, EventRecorder, RateLimits
from kvip.kube.resources import Event

LIMITS = RateLimits(per_key_burst=5, per_key_rate=1 / 60, global_burst=25, global_rate=1.0)
WEB = ServiceKey("default", "web")


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class FakeEventsApi:
    """Records creates and count updates; names Events like the server's generateName does."""

    def __init__(self) -> None:
        self.created: list[dict[str, Any]] = []
        self.patched: list[tuple[str, dict[str, Any]]] = []
        self.missing: set[str] = set()

    async def create(self, obj: Event, namespace: str) -> Event:
        body = obj.to_dict()
        body["metadata"]["name"] = f"{body['metadata']['generateName']}{len(self.created)}"
        self.created.append(body)
        return Event(body)

    async def patch(self, _: type, name: str, patch: dict[str, Any], *, namespace: str, patch_type: Any) -> None:
        if name in self.missing:
            raise ApiError(status=Status(code=404, reason="NotFound", message=f'events "{name}" not found'))
        self.patched.append((name, patch))


def recorder(clock: FakeClock, api: FakeEventsApi) -> EventRecorder:
    return EventRecorder(api, node_name="node-a", limits=LIMITS, clock=clock)  # type: ignore[arg-type]


async def test_five_hundred_bad_services_at_once_post_only_the_global_burst_then_one_a_second() -> None:
    clock, api = FakeClock(), FakeEventsApi()
    events = recorder(clock, api)
    for i in range(500):
        await events.send(BadInput(ServiceKey("default", f"svc-{i}"), "InvalidVIP", "x is not an IP"))
    assert len(api.created) == 25
    assert events.correlator.dropped == 475
    clock.now += 10
    for i in range(500, 600):
        await events.send(BadInput(ServiceKey("default", f"svc-{i}"), "InvalidVIP", "x is not an IP"))
    assert len(api.created) == 35


async def test_a_flapping_service_gets_its_burst_then_one_event_a_minute() -> None:
    clock, api = FakeClock(), FakeEventsApi()
    events = recorder(clock, api)
    for i in range(20):  # different messages: no dedupe, only the (object, reason) bucket
        await events.send(BadInput(WEB, "InvalidVIP", f"10.0.0.{i}00 is not an IP"))
    assert len(api.created) == 5
    clock.now += 30
    await events.send(BadInput(WEB, "InvalidVIP", "again"))
    assert len(api.created) == 5
    clock.now += 30
    await events.send(BadInput(WEB, "InvalidVIP", "once more"))
    assert len(api.created) == 6
    # another reason on the same Service has its own bucket
    await events.send(BadInput(WEB, "VIPConflict", "10.0.0.1 is also used"))
    assert len(api.created) == 7


async def test_an_identical_event_raises_the_count_of_the_first_instead_of_creating_another() -> None:
    clock, api = FakeClock(), FakeEventsApi()
    events = recorder(clock, api)
    problem = BadInput(WEB, "InvalidVIP", "10.96.0.300 is not an IP")
    await events.send(problem)
    clock.now += 1
    await events.send(problem)
    await events.send(problem)
    assert len(api.created) == 1 and api.created[0]["count"] == 1
    name = api.created[0]["metadata"]["name"]
    assert [(n, p["count"]) for n, p in api.patched] == [(name, 2), (name, 3)]


async def test_the_count_keeps_rising_while_rate_limited_so_the_next_update_is_true() -> None:
    clock, api = FakeClock(), FakeEventsApi()
    events = recorder(clock, api)
    problem = BadInput(WEB, "InvalidVIP", "10.96.0.300 is not an IP")
    for _ in range(10):
        await events.send(problem)
    assert len(api.created) == 1 and [p["count"] for _, p in api.patched] == [2, 3, 4, 5]
    clock.now += 60
    await events.send(problem)
    assert api.patched[-1][1]["count"] == 11


async def test_an_event_expired_on_the_server_is_created_again() -> None:
    clock, api = FakeClock(), FakeEventsApi()
    events = recorder(clock, api)
    problem = BadInput(WEB, "InvalidVIP", "10.96.0.300 is not an IP")
    await events.send(problem)
    api.missing.add(api.created[0]["metadata"]["name"])
    await events.send(problem)
    assert len(api.created) == 2


def test_an_identical_event_after_the_dedupe_window_is_a_new_event() -> None:
    clock = FakeClock()
    correlator = EventCorrelator(LIMITS, clock)
    problem = BadInput(WEB, "InvalidVIP", "bad")
    first = correlator.admit(problem)
    assert first is not None and first.name is None
    correlator.posted(problem, "web.kvip-1")
    clock.now += 60
    assert (post := correlator.admit(problem)) is not None and post.name == "web.kvip-1"
    clock.now += LIMITS.dedupe_window + 1
    assert (post := correlator.admit(problem)) is not None and post.name is None and post.count == 1


def test_memory_stays_bounded_under_churn_of_many_objects() -> None:
    clock = FakeClock()
    correlator = EventCorrelator(RateLimits(remembered=100, global_burst=10**6), clock)
    for i in range(10_000):
        clock.now += 1000  # every bucket refilled by the time the table is full
        correlator.admit(BadInput(ServiceKey("default", f"s{i}"), "InvalidVIP", "bad"))
    assert len(correlator._seen) <= 100 and len(correlator._buckets) <= 101
