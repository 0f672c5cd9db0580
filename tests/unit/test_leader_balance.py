"""Per-service leaders spread evenly over the nodes (issue #20): `spread_delay` and electors in a burst,
`takeover_delay` and electors after a failover."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from lightkube import AsyncClient, KubeConfig

from kvip.core.election_rules import (
    LeaseKey,
    LeaseRecord,
    LeaseTiming,
    Step,
    next_step,
    spread_delay,
    takeover_delay,
)
from kvip.core.model import ServiceKey
from kvip.kube.election import LeaseElector, service_lease_key
from kvip.lab.apiserver import StandIn, serving

TIMING = LeaseTiming(lease_duration=15.0, renew_deadline=10.0, retry_period=2.0)
KEYS = [LeaseKey("default", f"kubevip-svc-{i}") for i in range(200)]
NODES = [f"node-{i}" for i in range(10)]


def first_in_order(key: LeaseKey, nodes: list[str]) -> str:
    """The node whose alone-delay (2 x its score) is lowest: the rendezvous-hashing winner."""
    return min(nodes, key=lambda n: spread_delay(n, key, TIMING))


# -- the rule, with plain values -----------------------------------------------------------------


def test_alone_with_one_free_lease_the_delay_is_the_old_hashed_delay_within_two_periods() -> None:
    delays = [spread_delay(n, KEYS[0], TIMING, held=999, wanted=1000) for n in NODES]
    assert all(0 <= d < 2 * TIMING.retry_period for d in delays)
    assert delays == [spread_delay(n, KEYS[0], TIMING) for n in NODES]


def test_alone_in_a_burst_a_node_takes_a_small_random_part_in_the_first_period() -> None:
    """Nodes that start together must not all go for the same leases before they see each other."""
    ready = {n: {k for k in KEYS if spread_delay(n, k, TIMING, wanted=len(KEYS)) <= TIMING.retry_period}
             for n in NODES[:5]}
    assert all(1 <= len(keys) <= 20 for keys in ready.values())
    overlap = sum(len(ready[a] & ready[b]) for a in ready for b in ready if a < b)
    assert overlap <= 3


def test_alone_a_node_still_takes_a_whole_burst_within_six_periods() -> None:
    assert max(spread_delay("node-0", k, TIMING, wanted=1000) for k in KEYS) < 6 * TIMING.retry_period


def test_with_contenders_known_the_first_in_the_order_goes_within_a_period_the_rest_after_three() -> None:
    others = {n: 10 for n in NODES[1:]}
    for key in KEYS:
        first = first_in_order(key, NODES)
        for node in NODES:
            rest = {n: c for n, c in {**others, "node-0": 10}.items() if n != node}
            delay = spread_delay(node, key, TIMING, held=10, others=rest, wanted=200) / TIMING.retry_period
            assert (delay < 1) if node == first else (3 <= delay < 5)


def test_one_new_service_goes_by_the_hashed_delay_so_an_eligible_node_never_waits_for_the_first() -> None:
    """Not a burst (one lease free): the first in the order may well be ineligible for this Service."""
    for node in NODES:
        others = {n: 20 for n in NODES if n != node}
        delay = spread_delay(node, KEYS[0], TIMING, held=20, others=others, wanted=201)
        assert delay == spread_delay(node, KEYS[0], TIMING) < 2 * TIMING.retry_period


def test_the_first_in_the_order_is_each_node_about_equally_often() -> None:
    wins = [first_in_order(k, NODES[:5]) for k in KEYS]
    assert all(25 <= wins.count(n) <= 55 for n in NODES[:5])  # 40 each on average


def test_a_node_over_its_even_share_yields_to_one_that_is_not() -> None:
    key = next(k for k in KEYS if first_in_order(k, ["node-0", "node-1"]) == "node-0")
    # 200 leases over 2 nodes: an even share is 100. node-0 comes first for this lease...
    at_share = spread_delay("node-0", key, TIMING, held=100, others={"node-1": 99}, wanted=200)
    rival = spread_delay("node-1", key, TIMING, held=99, others={"node-0": 100}, wanted=200)
    assert at_share < rival
    # ...but holding 10 more than its share it waits until node-1 has had its turn.
    over = spread_delay("node-0", key, TIMING, held=110, others={"node-1": 89}, wanted=200)
    assert over > spread_delay("node-1", key, TIMING, held=89, others={"node-0": 110}, wanted=200)


@settings(max_examples=500)
@given(node=st.sampled_from(NODES), key=st.sampled_from(KEYS), held=st.integers(0, 5000),
       others=st.dictionaries(st.sampled_from(NODES[5:]), st.integers(1, 5000), max_size=5),
       wanted=st.integers(1, 10_000))
def test_the_delay_is_bounded_and_grows_with_the_load(node: str, key: LeaseKey, held: int,
                                                     others: dict[str, int], wanted: int) -> None:
    delay = spread_delay(node, key, TIMING, held=held, others=others, wanted=wanted)
    assert 0 <= delay < 10 * TIMING.retry_period
    free = wanted - held - sum(others.values())
    burst = free - 1 > len(others) + 1  # the same kind of order with one lease more (burst, or a few free)
    if others and (burst or free <= len(others) + 1):
        assert spread_delay(node, key, TIMING, held=held + 1, others=others, wanted=wanted) >= delay


# -- electors in a burst, against the stand-in -----------------------------------------------------


@pytest.fixture
async def api() -> AsyncIterator[StandIn]:
    async with serving(namespaces=("default",)) as standin:
        yield standin


async def test_five_electors_split_200_new_services_evenly(api: StandIn) -> None:
    """200 Services appear at once for 5 nodes: every node leads 40 +- 20% (the hashed delay alone
    gave 3..90: the node whose cycle ran first took almost half)."""
    timing = LeaseTiming(lease_duration=3.75, renew_deadline=2.5, retry_period=0.5)
    clients = [AsyncClient(config=KubeConfig.from_dict(api.kubeconfig())) for _ in range(5)]
    electors = [LeaseElector(c, identity=f"node-{i}", timing=timing, on_change=lambda: None)
                for i, c in enumerate(clients)]
    keys = [service_lease_key(ServiceKey("default", f"svc-{i:03d}")) for i in range(200)]
    for elector in electors:
        elector.want(keys)
    tasks = [asyncio.create_task(e.run()) for e in electors]
    try:
        async with asyncio.timeout(30):
            while sum(len(e.held()) for e in electors) < len(keys):
                await asyncio.sleep(0.05)
        counts = sorted(len(e.held()) for e in electors)
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        for client in clients:
            await client.close()
    assert counts[-1] / counts[0] <= 1.5, counts


# -- after a failover: taking over released or expired leases (takeover_delay) -----------------------


def test_a_node_within_its_even_share_takes_a_free_lease_at_once() -> None:
    # 9 live nodes, 1,000 leases: an even share is 111.1, so up to 112 each.
    others = {n: 100 for n in NODES[2:]}
    assert takeover_delay(TIMING, held=100, others=others, wanted=1000) == 0.0
    assert takeover_delay(TIMING, held=111, others=others, wanted=1000) == 0.0


def test_a_node_over_its_even_share_waits_past_its_next_cycle_so_the_others_go_first() -> None:
    others = {n: 100 for n in NODES[2:]}
    just_over = takeover_delay(TIMING, held=112, others=others, wanted=1000)
    far_over = takeover_delay(TIMING, held=300, others=others, wanted=1000)
    assert 1.1 * TIMING.retry_period <= just_over < far_over <= 1.9 * TIMING.retry_period


@settings(max_examples=500)
@given(held=st.integers(0, 5000), others=st.dictionaries(st.sampled_from(NODES), st.integers(1, 5000), max_size=10),
       wanted=st.integers(1, 10_000))
def test_the_takeover_delay_is_under_two_periods_and_grows_with_the_load(
        held: int, others: dict[str, int], wanted: int) -> None:
    delay = takeover_delay(TIMING, held=held, others=others, wanted=wanted)
    assert 0.0 <= delay <= 1.9 * TIMING.retry_period
    assert takeover_delay(TIMING, held=held + 1, others=others, wanted=wanted) >= delay
    assert (delay == 0.0) == (held + 1 <= max(1, -(-wanted // (len(others) + 1))))


def test_an_expired_lease_is_taken_over_after_its_duration_plus_the_takeover_delay() -> None:
    record = LeaseRecord(changed_at=100.0, exists=True, holder="node-dead", renew_time="t", lease_seconds=15)
    at = 100.0 + TIMING.lease_duration
    assert next_step(record, identity="node-1", timing=TIMING, now=at, spread=0.0) is Step.ACQUIRE
    assert next_step(record, identity="node-1", timing=TIMING, now=at, spread=0.0, takeover=2.0) is Step.WAIT
    assert next_step(record, identity="node-1", timing=TIMING, now=at + 2.0, spread=0.0, takeover=2.0) is Step.ACQUIRE


def test_a_released_lease_is_taken_over_after_the_takeover_delay() -> None:
    record = LeaseRecord(changed_at=100.0, exists=True, holder=None, renew_time="t", lease_seconds=1)
    assert next_step(record, identity="node-1", timing=TIMING, now=100.0, spread=0.0) is Step.ACQUIRE
    assert next_step(record, identity="node-1", timing=TIMING, now=101.9, spread=0.0, takeover=2.0) is Step.WAIT
    assert next_step(record, identity="node-1", timing=TIMING, now=102.0, spread=0.0, takeover=2.0) is Step.ACQUIRE


@pytest.mark.parametrize("clean", [False, True], ids=["crash", "clean-stop"])
async def test_after_a_node_stops_its_leases_spread_over_the_survivors(api: StandIn, clean: bool) -> None:
    """5 nodes lead 100 Services, node-0 stops (crashes: its 20 leases expire; or releases them): the
    4 survivors end with 25 each, give or take (taking over at once, the node whose cycle first saw
    them free took all 20: 40 vs 20)."""
    timing = LeaseTiming(lease_duration=1.875, renew_deadline=1.25, retry_period=0.25)
    clients = [AsyncClient(config=KubeConfig.from_dict(api.kubeconfig())) for _ in range(5)]
    electors = [LeaseElector(c, identity=f"node-{i}", timing=timing, on_change=lambda: None)
                for i, c in enumerate(clients)]
    keys = [service_lease_key(ServiceKey("default", f"svc-{i:03d}")) for i in range(100)]
    for elector in electors:
        elector.want(keys)
    tasks = [asyncio.create_task(e.run()) for e in electors]

    async def all_held(among: list[LeaseElector]) -> None:
        async with asyncio.timeout(30):
            while sum(len(e.held()) for e in among) < len(keys):
                await asyncio.sleep(0.02)
    try:
        await all_held(electors)
        await asyncio.sleep(2 * timing.retry_period)
        tasks[0].cancel()
        await asyncio.gather(tasks[0], return_exceptions=True)
        if clean:
            await electors[0].release_all()
        await all_held(electors[1:])
        counts = sorted(len(e.held()) for e in electors[1:])
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        for client in clients:
            await client.close()
    assert counts[-1] / counts[0] <= 1.45, counts


def test_ranking_among_a_thousand_contenders_hashes_only_this_node(monkeypatch: pytest.MonkeyPatch) -> None:
    # 10,000 new Services on 1,000 nodes: hashing every contender for every Lease cost seconds per cycle.
    import kvip.core.election_rules as rules

    calls: list[str] = []
    real = rules._score
    monkeypatch.setattr(rules, "_score", lambda identity, key: calls.append(identity) or real(identity, key))
    others = {f"node-{i:04d}": 10 for i in range(1000)}
    delay = rules.spread_delay("node-x", LeaseKey("default", "kubevip-web"), LeaseTiming(), held=10,
                               others=others, wanted=30_000)
    assert calls == ["node-x"]
    assert 0 <= delay <= (rules.RANK_START + rules.RANK_SPAN) * LeaseTiming().retry_period
