"""kvip.io/preferred-nodes handovers made visible (kvip issue #20): kvip_lease_handovers_total by direction,
the pending requests and last handover per Lease in /status, and `kvip status`'s lines for them."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from lightkube import AsyncClient, KubeConfig
from prometheus_client import CollectorRegistry, generate_latest
from rich.console import Console

from kvip.agent.metrics import HandoverCollector
from kvip.agent.status_doc import StatusLimits, handover_sections
from kvip.cli.status_handovers import print_handovers
from kvip.core.preference import Rank
from kvip.kube.election import LeaseElector, LeaseKey, LeaseTiming
from kvip.lab.apiserver import StandIn, serving

FAST = LeaseTiming(lease_duration=1.5, renew_deadline=1.0, retry_period=0.2)
HOLDDOWN = 0.6
KEY = LeaseKey("default", "kubevip-web")
PREFERRED, PLAIN = Rank(100, 100), Rank(0, 100)


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
async def api() -> AsyncIterator[StandIn]:
    async with serving(namespaces=("default",)) as standin:
        yield standin


@pytest.fixture
async def pair(api: StandIn) -> AsyncIterator[tuple[Clock, LeaseElector, LeaseElector]]:
    """node-a (preferred) and node-b (holding the Lease), on one clock the test moves."""
    clock = Clock()
    clients = [AsyncClient(config=KubeConfig.from_dict(api.kubeconfig())) for _ in range(2)]
    a, b = (LeaseElector(c, identity=n, timing=FAST, on_change=lambda: None, clock=clock, holddown=HOLDDOWN)
            for c, n in zip(clients, ("node-a", "node-b"), strict=True))
    b.want([KEY], {KEY: PLAIN})
    for _ in range(4):
        clock.now += FAST.retry_period
        await b.cycle()
    assert b.held() == {KEY}
    yield clock, a, b
    for client in clients:
        await client.close()


async def periods(clock: Clock, electors: list[LeaseElector], count: int) -> None:
    for _ in range(count):
        clock.now += FAST.retry_period
        for elector in electors:
            await elector.cycle()


def scrape(elector: LeaseElector) -> str:
    registry = CollectorRegistry()
    registry.register(HandoverCollector(elector.handovers.report))
    return generate_latest(registry).decode()


async def test_a_granted_handover_is_counted_on_both_sides_and_shown_as_the_last_handover(
        pair: tuple[Clock, LeaseElector, LeaseElector]) -> None:
    clock, a, b = pair
    a.want([KEY], {KEY: PREFERRED})
    await periods(clock, [a, b], 3 + round(HOLDDOWN / FAST.retry_period))
    assert a.held() == {KEY}
    assert 'kvip_lease_handovers_total{direction="asked"} 1.0' in scrape(a)
    assert 'kvip_lease_handovers_total{direction="received"} 1.0' in scrape(a)
    assert 'kvip_lease_handovers_total{direction="granted"} 1.0' in scrape(b)
    assert 'kvip_lease_handovers_total{direction="refused"} 0.0' in scrape(b)
    given = handover_sections(b)["handovers"]
    assert given["granted"] == 1 and given["pending"] == []
    assert [(r["lease"], r["outcome"], r["to"]) for r in given["last"]] == [("default/kubevip-web", "granted", "node-a")]
    taken = handover_sections(a)["handovers"]
    assert [(r["outcome"], r["to"]) for r in taken["last"]] == [("received", None)]
    console = Console(record=True, width=200)
    print_handovers(console, handover_sections(b))
    shown = console.export_text()
    assert "granted 1" in shown and "default/kubevip-web" in shown and "node-a" in shown


async def test_a_request_is_pending_until_the_holder_answers_and_refused_when_it_never_does(
        pair: tuple[Clock, LeaseElector, LeaseElector]) -> None:
    clock, a, _ = pair
    a.want([KEY], {KEY: PREFERRED})
    await periods(clock, [a], 1 + round(HOLDDOWN / FAST.retry_period))  # b does not look meanwhile
    pending = handover_sections(a)["handovers"]["pending"]
    assert [r["lease"] for r in pending] == ["default/kubevip-web"]
    assert "kvip_lease_handover_requests_pending 1.0" in scrape(a)
    await periods(clock, [a], 4)  # three periods of patience, unanswered
    section = handover_sections(a)["handovers"]
    assert section["pending"] == [] and section["refused"] == 1
    assert [r["outcome"] for r in section["last"]] == ["refused"]


async def test_the_section_is_bounded_and_absent_without_an_elector(
        pair: tuple[Clock, LeaseElector, LeaseElector]) -> None:
    assert handover_sections(None) == {}
    clock, a, b = pair
    other = LeaseKey("default", "kubevip-api")
    b.want([KEY, other], {KEY: PLAIN, other: PLAIN})
    await periods(clock, [b], 4)
    a.want([KEY, other], {KEY: PREFERRED, other: PREFERRED})
    await periods(clock, [a], 1 + round(HOLDDOWN / FAST.retry_period))
    cut = handover_sections(a, StatusLimits(items=1))
    assert len(cut["handovers"]["pending"]) == 1 and cut["truncated"] == {"handoverPending": 1}
    assert len(handover_sections(a)["handovers"]["pending"]) == 2
