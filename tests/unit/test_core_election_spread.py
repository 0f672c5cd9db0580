"""Leader spread and failover balance as pure rules (issue #20, docs/decisions.md D19): `spread_delay`,
`takeover_delay`, `lease_order`, `is_expired`, and what `LeaseRecord.observe` keeps of a Lease's annotations.

Every expected value comes from the documented rule (the functions' docstrings, D19), in retry periods. A
node's hashed score for a lease is read off its documented one-free-lease delay when alone: 2 x score periods.
The default retry period (2 s) is kept so that a delay scaled the wrong way shows.
"""

from __future__ import annotations

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kvip.core.election_rules import (
    LeaseKey,
    LeaseRecord,
    LeaseTiming,
    Step,
    is_expired,
    lease_order,
    next_step,
    spread_delay,
    takeover_delay,
)

TIMING = LeaseTiming()  # 15 / 10 / 2 s
P = TIMING.retry_period
KEYS = [LeaseKey("shop", f"kubevip-web-{i}") for i in range(40)]
NODES = [f"node-{i}" for i in range(5)]


def score(node: str, key: LeaseKey) -> float:
    """The (node, lease) hashed score in [0, 1): alone, with one free lease, a node waits 2 x score periods."""
    return spread_delay(node, key, TIMING) / (2 * P)


def periods(delay: float) -> float:
    return delay / P


def check_burst(key: LeaseKey, nodes: list[str], delays: dict[str, float]) -> None:
    """Rendezvous hashing in a burst: the lowest-scoring contender waits its score (< 1 period), every other
    one waits in [3, 5) periods, later the more contenders score below it."""
    by_score = sorted(nodes, key=lambda n: score(n, key))
    first, rest = by_score[0], by_score[1:]
    assert periods(delays[first]) == pytest.approx(score(first, key), rel=1e-9)
    waits = [periods(delays[n]) for n in rest]
    assert all(3.0 <= w < 5.0 for w in waits), (key, waits)
    assert waits == sorted(waits) and len(set(waits)) == len(waits)


# -- spread_delay: alone (no contender seen yet) ---------------------------------------------------


def test_alone_with_one_free_lease_a_node_waits_under_two_periods_by_a_score_that_differs_per_lease() -> None:
    for node in NODES:
        delays = [periods(spread_delay(node, key, TIMING)) for key in KEYS]
        assert all(0.0 <= d < 2.0 for d in delays)
        assert len(set(delays)) == len(KEYS)  # a score per (node, lease), not one per node


@pytest.mark.parametrize("held", [0, 7, 400])
def test_alone_in_a_burst_a_node_waits_the_larger_of_twice_its_score_and_log8_of_its_scored_part_of_the_free(
        held: int) -> None:
    free = 1000 - held
    ramp_won = 0
    for node in NODES[:2]:
        for key in KEYS:
            s = score(node, key)
            ramp = math.log(1 + s * (free - 1)) / math.log(8)
            ramp_won += ramp > 2 * s
            expected = max(2 * s, ramp)
            assert periods(spread_delay(node, key, TIMING, held=held, wanted=1000)) == pytest.approx(expected, rel=1e-9)
    assert ramp_won > 10  # the burst rule, not the one-lease rule, decided most of these


def test_alone_a_node_that_holds_no_lease_need_not_say_so() -> None:
    for key in KEYS:
        assert spread_delay("node-0", key, TIMING, wanted=1000) == spread_delay("node-0", key, TIMING, held=0,
                                                                                 wanted=1000)


def test_alone_a_node_holding_all_it_wants_waits_as_for_a_single_free_lease() -> None:
    for key in KEYS:
        one = spread_delay("node-1", key, TIMING)
        assert spread_delay("node-1", key, TIMING, held=500, wanted=500) == pytest.approx(one, rel=1e-12)
        assert spread_delay("node-1", key, TIMING, held=499, wanted=500) == pytest.approx(one, rel=1e-12)


@pytest.mark.parametrize("wanted", [10, 1000, 10_000])
def test_alone_a_node_never_waits_longer_than_two_periods_or_log8_of_the_leases_it_wants(wanted: int) -> None:
    bound = max(2.0, math.log(wanted) / math.log(8))
    assert max(periods(spread_delay(n, k, TIMING, wanted=wanted)) for n in NODES for k in KEYS) <= bound


# -- spread_delay: with contenders known -----------------------------------------------------------


def test_with_as_many_free_leases_as_contenders_a_node_within_its_share_waits_twice_its_score_as_alone() -> None:
    # 3 contenders, 6 wanted, 3 held between them: 3 free, not a burst; even share 2, this node holds 1.
    for key in KEYS:
        for node in NODES[:3]:
            others = {n: 1 for n in NODES[:3] if n != node}
            delay = spread_delay(node, key, TIMING, held=1, others=others, wanted=6)
            assert periods(delay) == pytest.approx(2 * score(node, key), rel=1e-9)


def test_one_free_lease_more_than_contenders_is_a_burst_taken_first_by_the_lowest_score_and_the_rest_by_rank(
        ) -> None:
    # 3 contenders, 7 wanted, 3 held: 4 free, a burst; even share 7/3, each holds 1.
    for key in KEYS:
        nodes = NODES[:3]
        check_burst(key, nodes, {n: spread_delay(n, key, TIMING, held=1, others={o: 1 for o in nodes if o != n},
                                                 wanted=7) for n in nodes})


def test_in_a_burst_every_contender_of_six_has_its_own_place_by_rendezvous_hash() -> None:
    nodes = [f"node-{i}" for i in range(6)]
    for key in KEYS:
        check_burst(key, nodes, {n: spread_delay(n, key, TIMING, others={o: 2 for o in nodes if o != n},
                                                 wanted=600) for n in nodes})


def test_a_contending_node_that_holds_no_lease_need_not_say_so() -> None:
    # 3 contenders holding 1 each seen by a node holding none: 6 wanted leaves 4 free, a burst.
    nodes = NODES[:3]
    for key in KEYS:
        delays = {n: spread_delay(n, key, TIMING, others={o: 1 for o in nodes if o != n}, wanted=6) for n in nodes}
        assert delays == {n: spread_delay(n, key, TIMING, held=0, others={o: 1 for o in nodes if o != n}, wanted=6)
                          for n in nodes}
        check_burst(key, nodes, delays)


def test_a_node_over_its_even_share_waits_one_more_period_per_percent_over() -> None:
    # 3 contenders, 300 wanted: even share 100. One free lease, not a burst.
    others = {"node-1": 100, "node-2": 98}
    for key in KEYS:
        base = 2 * score("node-0", key)
        at_share = spread_delay("node-0", key, TIMING, held=100, others=others, wanted=300)
        assert periods(at_share) == pytest.approx(base, rel=1e-9)
        one_percent = spread_delay("node-0", key, TIMING, held=101, others={"node-1": 100, "node-2": 97},
                                   wanted=300)
        assert periods(one_percent) == pytest.approx(base + 1.0, rel=1e-9)


def test_a_node_far_over_its_share_waits_two_more_periods_for_one_new_service_never_over_four() -> None:
    for key in KEYS:
        delay = spread_delay("node-0", key, TIMING, held=180, others={"node-1": 60, "node-2": 59}, wanted=300)
        assert periods(delay) == pytest.approx(2 * score("node-0", key) + 2.0, rel=1e-9)
        assert periods(delay) < 4.0


def test_holding_two_of_five_leases_among_three_contenders_is_over_the_share() -> None:
    # even share 5/3: holding 2 is 20 % over, so the full two extra periods of a non-burst.
    for key in KEYS:
        delay = spread_delay("node-0", key, TIMING, held=2, others={"node-1": 1, "node-2": 1}, wanted=5)
        assert periods(delay) == pytest.approx(2 * score("node-0", key) + 2.0, rel=1e-9)


def test_the_even_share_is_never_below_one_lease() -> None:
    # one lease wanted by three: holding one is within a share of one, not three times over a third.
    for key in KEYS:
        delay = spread_delay("node-0", key, TIMING, held=1, others={"node-1": 0, "node-2": 0}, wanted=1)
        assert periods(delay) == pytest.approx(2 * score("node-0", key), rel=1e-9)


def test_in_a_burst_a_node_over_its_share_waits_past_the_others_window_five_more_periods() -> None:
    # 3 contenders, 3000 wanted (share 1000), 980 free: a burst. Holding 2000 is 100 % over.
    nodes = NODES[:3]
    for key in KEYS:
        for node in nodes:
            others = {o: 10 for o in nodes if o != node}
            within = spread_delay(node, key, TIMING, held=10, others=others, wanted=3000)
            over = spread_delay(node, key, TIMING, held=2000, others=others, wanted=3000)
            assert periods(over) == pytest.approx(periods(within) + 5.0, rel=1e-9)
            assert periods(over) < 10.0


def test_up_to_sixty_four_contenders_exactly_one_the_lowest_scoring_takes_a_new_lease_first() -> None:
    nodes = [f"node-{i}" for i in range(65)]  # each sees 64 others: ranked exactly
    for key in KEYS[:8]:
        delays = {n: spread_delay(n, key, TIMING, held=1, others={o: 1 for o in nodes if o != n}, wanted=100_000)
                  for n in nodes}
        check_burst(key, nodes, delays)


def test_beyond_sixty_four_contenders_a_node_places_itself_by_the_expected_rank_of_its_score() -> None:
    nodes = [f"node-{i}" for i in range(100)]  # each sees 99 others: expected rank, score x 99
    for key in KEYS[:8]:
        waits = {}
        for n in nodes:
            s = score(n, key)
            w = periods(spread_delay(n, key, TIMING, held=1, others={o: 1 for o in nodes if o != n}, wanted=100_000))
            if s < 0.5 / 99:
                assert w == pytest.approx(s, rel=1e-9)
            elif s >= 1 / 99:
                assert 3.0 <= w < 5.0
                waits[s] = w
        assert len(waits) > 80
        assert [waits[s] for s in sorted(waits)] == sorted(waits.values())


@settings(max_examples=200, deadline=None)
@given(held=st.integers(0, 5000), counts=st.lists(st.integers(0, 500), max_size=12),
       wanted=st.integers(1, 10_000), i=st.integers(0, len(KEYS) - 1))
def test_with_contenders_a_node_never_waits_ten_periods(held: int, counts: list[int], wanted: int, i: int) -> None:
    others = {f"peer-{j}": c for j, c in enumerate(counts)}
    delay = periods(spread_delay("node-0", KEYS[i], TIMING, held=held, others=others, wanted=wanted))
    assert 0.0 <= delay < (10.0 if others else max(2.0, math.log(wanted) / math.log(8)) + 1e-9)


# -- takeover_delay: a released or expired lease --------------------------------------------------


@pytest.mark.parametrize("held", [0, 1, 2, 3, 4])
def test_a_node_whose_next_lease_keeps_it_within_its_even_share_takes_a_free_lease_at_once(held: int) -> None:
    # 10 wanted, 2 live contenders: share 5; up to 4 held, the next one is within it.
    assert takeover_delay(TIMING, held=held, others={"node-1": 5}, wanted=10) == 0.0


def test_with_a_share_of_one_a_node_holding_nothing_takes_a_free_lease_at_once() -> None:
    assert takeover_delay(TIMING, held=0, others={"node-1": 1}, wanted=2) == 0.0


def test_two_nodes_two_leases_a_node_already_holding_one_waits_before_taking_the_second() -> None:
    assert periods(takeover_delay(TIMING, held=1, others={"node-1": 0}, wanted=2)) == pytest.approx(1.9)


def test_the_even_share_for_a_takeover_is_rounded_up() -> None:
    # 3 wanted by 2 nodes: share 1.5, rounded up 2. The second lease is within it, the third is not.
    assert takeover_delay(TIMING, held=1, others={"node-1": 1}, wanted=3) == 0.0
    assert takeover_delay(TIMING, held=2, others={"node-1": 0}, wanted=3) > 0.0


def test_one_lease_over_a_share_of_a_hundred_waits_one_point_one_periods_plus_eight_per_share_over() -> None:
    # 200 wanted, 2 nodes: share 100. Holding 100, the next lease is 1/100 of a share over.
    delay = takeover_delay(TIMING, held=100, others={"node-1": 99}, wanted=200)
    assert periods(delay) == pytest.approx(1.1 + 8 * 0.01)


def test_far_over_its_share_a_node_waits_at_most_one_point_nine_periods() -> None:
    delay = takeover_delay(TIMING, held=500, others={"node-1": 10, "node-2": 10}, wanted=300)
    assert periods(delay) == pytest.approx(1.9)


@settings(max_examples=300, deadline=None)
@given(held=st.integers(-3, 600), counts=st.lists(st.integers(0, 300), max_size=10), wanted=st.integers(1, 3000))
def test_a_takeover_waits_not_at_all_within_the_share_and_1_1_to_1_9_periods_over_it_more_the_more_it_holds(
        held: int, counts: list[int], wanted: int) -> None:
    others = {f"peer-{j}": c for j, c in enumerate(counts)}
    delay = periods(takeover_delay(TIMING, held=held, others=others, wanted=wanted))
    share = math.ceil(max(1.0, wanted / (len(others) + 1)))
    if max(0, held) + 1 <= share:
        assert delay == 0.0
    else:
        assert 1.1 - 1e-9 <= delay <= 1.9 + 1e-9
    assert periods(takeover_delay(TIMING, held=held + 1, others=others, wanted=wanted)) >= delay


# -- lease_order: the order a node goes through its leases in a cycle -----------------------------


def test_a_node_considers_new_leases_first_by_name_then_existing_ones_by_its_own_score() -> None:
    exists = {key: i % 3 != 0 for i, key in enumerate(KEYS)}
    for node in NODES:
        order = sorted(KEYS, key=lambda k: lease_order(node, k, exists[k]))
        new = sorted(k for k in KEYS if not exists[k])
        old = sorted((k for k in KEYS if exists[k]), key=lambda k: score(node, k))
        assert order == new + old


def test_nodes_go_through_the_same_existing_leases_in_different_orders() -> None:
    orders = {tuple(sorted(KEYS, key=lambda k: lease_order(n, k, True))) for n in NODES}
    assert len(orders) == len(NODES)
    assert tuple(sorted(KEYS)) not in orders


# -- is_expired -------------------------------------------------------------------------------------


def held_by(holder: str | None, at: float, seconds: int | None = 15) -> LeaseRecord:
    record = LeaseRecord(changed_at=0.0)
    spec: dict[str, object] = {"renewTime": "2026-11-30T10:00:00.000000Z"}
    if holder is not None:
        spec["holderIdentity"] = holder
    if seconds is not None:
        spec["leaseDurationSeconds"] = seconds
    record.observe({"metadata": {"resourceVersion": "7"}, "spec": spec}, at)
    return record


def test_a_released_lease_is_free_at_once() -> None:
    assert is_expired(held_by(None, 1000.0), TIMING, 1000.0)


def test_a_held_lease_expires_exactly_its_duration_after_we_saw_its_last_renewal_on_our_clock() -> None:
    record = held_by("node-1", 1000.0)
    assert not is_expired(record, TIMING, 1000.0)
    assert not is_expired(record, TIMING, 1014.99)
    assert is_expired(record, TIMING, 1015.0)
    assert is_expired(record, TIMING, 1100.0)


def test_a_lease_whose_holder_declares_a_longer_duration_is_waited_for_that_long() -> None:
    record = held_by("node-1", 1000.0, seconds=30)
    assert not is_expired(record, TIMING, 1020.0)
    assert is_expired(record, TIMING, 1030.0)
    assert is_expired(held_by("node-1", 1000.0, seconds=None), TIMING, 1015.0)


# -- LeaseRecord.observe: the annotations a later write keeps ---------------------------------------


def with_annotations(annotations: object) -> LeaseRecord:
    record = LeaseRecord(changed_at=0.0)
    record.observe({"metadata": {"resourceVersion": "3", "annotations": annotations},
                    "spec": {"holderIdentity": "node-1"}}, 1.0)
    return record


def test_a_read_lease_keeps_its_string_annotations_for_the_next_write() -> None:
    notes = {"kvip.io/holder-score": "100", "kvip.io/handover-to": "node-2"}
    assert with_annotations(notes).annotations == notes


def test_annotations_whose_value_is_not_a_string_are_dropped() -> None:
    assert with_annotations({"a": "1", "b": 2, "c": None, "d": ["x"]}).annotations == {"a": "1"}


def test_a_lease_without_annotations_leaves_an_empty_set_to_write() -> None:
    assert with_annotations(None).annotations == {}
    assert with_annotations(["not", "a", "map"]).annotations == {}
    record = LeaseRecord(changed_at=0.0)
    record.observe({"spec": {"holderIdentity": "node-1"}}, 1.0)
    assert record.annotations == {}


def test_a_node_over_its_share_waits_its_takeover_delay_before_taking_a_released_lease() -> None:
    released = LeaseRecord(changed_at=0.0, exists=True, holder=None)
    takeover = takeover_delay(TIMING, held=1, others={"node-1": 0}, wanted=2)  # one of two, the other none
    assert takeover > 0
    step = {"identity": "node-0", "timing": TIMING, "spread": 0.0, "takeover": takeover}
    assert next_step(released, now=takeover / 2, **step) is Step.WAIT
    assert next_step(released, now=takeover, **step) is Step.ACQUIRE
    assert next_step(released, now=0.0, **{**step, "takeover": 0.0}) is Step.ACQUIRE  # within its share: at once
