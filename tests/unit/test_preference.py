"""kvip.io/preferred-nodes as pure rules: parsing and scoring, the free-Lease head start, when a node asks
for a held Lease (hold-down), and when the holder hands it over — plain values and a fake clock."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from kvip.core.election_rules import LeaseRecord, LeaseTiming, Step
from kvip.core.leases import ElectionPlan
from kvip.core.model import ElectionMode, NodeView, ServiceKey, ServiceView
from kvip.core.preference import (
    HANDOVER_SCORE_ANNOTATION,
    HANDOVER_TO_ANNOTATION,
    HOLDER_SCORE_ANNOTATION,
    MAX_PREFERENCE_CHARS,
    MAX_TERMS,
    PREFERRED_NODES_ANNOTATION,
    InvalidPreference,
    Outcome,
    Rank,
    deferred,
    handover_target,
    holder_annotations,
    lease_ranks,
    parse_preference,
    preference_refusal,
    request_outcome,
    should_request,
)

TIMING = LeaseTiming(lease_duration=3.0, renew_deadline=2.0, retry_period=0.5)
HOLDDOWN = 5.0
ZONE_A = NodeView("node-a", labels={"zone": "a", "disk": "ssd"})
ZONE_B = NodeView("node-b", labels={"zone": "b", "disk": "ssd"})
PLAIN = NodeView("node-c", labels={})


def held_by(holder: str, *, score: int | None = None, request: tuple[str, int] | None = None,
            seen_at: float = 0.0) -> LeaseRecord:
    record = LeaseRecord(changed_at=seen_at, exists=True, holder=holder, lease_seconds=3)
    if score is not None:
        record.annotations[HOLDER_SCORE_ANNOTATION] = str(score)
    if request is not None:
        record.annotations.update({HANDOVER_TO_ANNOTATION: request[0], HANDOVER_SCORE_ANNOTATION: str(request[1])})
    return record


# -- parsing and scoring ---------------------------------------------------------------------------


def test_a_node_scores_the_sum_of_the_weights_of_the_terms_it_matches() -> None:
    preference = parse_preference("100:zone=a; 50:disk=ssd")
    assert (preference.score(ZONE_A), preference.score(ZONE_B), preference.score(PLAIN)) == (150, 50, 0)
    assert preference.top == 150
    assert preference.score(None) == 0  # an unseen Node matches nothing


@pytest.mark.parametrize("text", [
    "zone=a",  # no weight
    "0:zone=a", "101:zone=a", "-5:zone=a", "x:zone=a", "１:zone=a",  # weight outside 1-100 or not ASCII digits
    "10:", "10:  ",  # an empty selector would match every node
    "10:zone in (a",  # what kubectl refuses
    ";", "",  # no term
    ";".join(["1:a=b"] * (MAX_TERMS + 1)),
    "1:a=" + "b" * MAX_PREFERENCE_CHARS,
])
def test_unreadable_preferences_are_refused_with_a_reason(text: str) -> None:
    with pytest.raises(InvalidPreference):
        parse_preference(text)


def test_a_trailing_separator_and_blanks_are_harmless() -> None:
    assert parse_preference(" 20 : zone in (a, b) ; ").score(ZONE_B) == 20


terms = st.lists(st.tuples(st.integers(1, 100), st.sampled_from(["zone=a", "disk=ssd", "!gpu", "zone notin (b)"])),
                 min_size=1, max_size=MAX_TERMS)
labels = st.dictionaries(st.sampled_from(["zone", "disk", "gpu"]), st.sampled_from(["a", "b", "ssd"]), max_size=3)


@given(terms, labels)
def test_the_score_is_the_weight_of_exactly_the_matching_terms_and_never_above_top(
        written: list[tuple[int, str]], node_labels: dict[str, str]) -> None:
    preference = parse_preference("; ".join(f"{w}:{s}" for w, s in written))
    node = NodeView("n", labels=node_labels)
    assert preference.score(node) == sum(t.weight for t in preference.terms if t.selector.matches(node_labels))
    assert 0 <= preference.score(node) <= preference.top == sum(w for w, _ in written)


@given(st.text(max_size=200))
def test_any_text_parses_or_is_refused_never_anything_else(text: str) -> None:
    try:
        preference = parse_preference(text)
    except InvalidPreference:
        return
    assert 1 <= len(preference.terms) <= MAX_TERMS and all(1 <= t.weight <= 100 for t in preference.terms)


def service(name: str, annotation: str | None, **more: str) -> ServiceView:
    annotations = {} if annotation is None else {PREFERRED_NODES_ANNOTATION: annotation}
    return ServiceView(ServiceKey("default", name), annotations={**annotations, **more})


def test_a_bad_value_costs_only_its_service_one_problem_and_its_preference() -> None:
    good, bad = service("good", "100:zone=a"), service("bad", "100:zone in (a")
    problem = preference_refusal(bad, ElectionMode.SERVICE, False)
    assert problem is not None and problem.service == bad.key and "preference ignored" in problem.message
    assert preference_refusal(good, ElectionMode.SERVICE, False) is None
    plan = ElectionPlan(ElectionMode.SERVICE)
    ranks = lease_ranks(plan, {s.key: s for s in (good, bad)}, [good.key, bad.key], ZONE_A)
    assert list(ranks.values()) == [Rank(100, 100)]


def test_without_per_service_election_the_preference_is_ignored_in_one_line() -> None:
    problem = preference_refusal(service("web", "100:zone=a"), ElectionMode.GLOBAL, False)
    assert problem is not None and "needs per-service election" in problem.message
    assert lease_ranks(ElectionPlan(ElectionMode.NONE), {ServiceKey("default", "web"): service("web", "100:zone=a")},
                       [ServiceKey("default", "web")], ZONE_A) == {}


def test_a_shared_lease_follows_its_first_service_with_a_preference() -> None:
    shared = {"kube-vip.io/leaseName": "shared"}
    first, second = service("a", "100:zone=b", **shared), service("b", "100:zone=a", **shared)
    ranks = lease_ranks(ElectionPlan(ElectionMode.SERVICE), {s.key: s for s in (second, first)},
                        [second.key, first.key], ZONE_A)
    assert list(ranks.values()) == [Rank(0, 100)]


# -- the free Lease --------------------------------------------------------------------------------


def test_on_a_released_lease_the_best_scoring_node_acts_first_and_the_others_a_period_later() -> None:
    released = LeaseRecord(changed_at=10.0, exists=True, holder=None)
    best, half, none = Rank(100, 100), Rank(50, 100), Rank(0, 100)
    assert deferred(Step.ACQUIRE, released, best, TIMING, now=10.0) is Step.ACQUIRE
    assert deferred(Step.ACQUIRE, released, half, TIMING, now=10.0 + 0.2) is Step.WAIT
    assert deferred(Step.ACQUIRE, released, half, TIMING, now=10.0 + 0.25) is Step.ACQUIRE
    assert deferred(Step.ACQUIRE, released, none, TIMING, now=10.0 + 0.49) is Step.WAIT
    assert deferred(Step.ACQUIRE, released, none, TIMING, now=10.0 + 0.5) is Step.ACQUIRE
    assert deferred(Step.ACQUIRE, released, None, TIMING, now=10.0) is Step.ACQUIRE  # no preference: no delay


def test_an_expired_lease_is_deferred_from_its_expiry_and_a_new_one_by_up_to_two_periods() -> None:
    expired = held_by("node-x", seen_at=0.0)
    assert deferred(Step.ACQUIRE, expired, Rank(0, 10), TIMING, now=3.0 + 0.4) is Step.WAIT
    assert deferred(Step.ACQUIRE, expired, Rank(0, 10), TIMING, now=3.0 + 0.5) is Step.ACQUIRE
    new = LeaseRecord(changed_at=0.0)
    assert deferred(Step.CREATE, new, Rank(0, 10), TIMING, now=0.9) is Step.WAIT
    assert deferred(Step.CREATE, new, Rank(0, 10), TIMING, now=1.0) is Step.CREATE
    assert deferred(Step.RENEW, held_by("me"), Rank(0, 10), TIMING, now=0.0) is Step.RENEW


# -- asking for a held Lease, and handing it over ---------------------------------------------------


def asks(record: LeaseRecord, rank: Rank | None, ready_since: float | None, now: float) -> bool:
    return should_request(record, rank, identity="node-a", ready_since=ready_since, holddown=HOLDDOWN,
                          timing=TIMING, now=now)


def test_a_node_that_outscores_the_holder_asks_only_after_a_whole_hold_down_ready() -> None:
    record = held_by("node-b", score=50, seen_at=99.0)
    assert not asks(record, Rank(150, 150), ready_since=95.1, now=100.0)
    assert asks(record, Rank(150, 150), ready_since=95.0, now=100.0)
    assert not asks(record, Rank(150, 150), ready_since=None, now=100.0)  # not ready now


def test_a_node_does_not_ask_a_holder_it_does_not_outscore_nor_an_expired_or_free_lease() -> None:
    assert not asks(held_by("node-b", score=150, seen_at=99.0), Rank(150, 150), 0.0, 100.0)
    assert not asks(held_by("node-b", score=0, seen_at=99.0), Rank(0, 150), 0.0, 100.0)
    assert not asks(held_by("node-b", score=0, seen_at=97.0), Rank(150, 150), 0.0, 100.0)  # expired
    assert not asks(LeaseRecord(changed_at=99.0, exists=True, holder=None), Rank(150, 150), 0.0, 100.0)
    assert not asks(held_by("node-a", seen_at=99.0), Rank(150, 150), 0.0, 100.0)  # ours
    assert asks(held_by("node-b", seen_at=99.0), Rank(1, 150), 0.0, 100.0)  # a kube-vip holder writes no score


def test_a_node_does_not_ask_twice_nor_over_an_equal_or_better_request() -> None:
    assert not asks(held_by("node-b", score=0, request=("node-a", 100), seen_at=99.0), Rank(100, 150), 0.0, 100.0)
    assert not asks(held_by("node-b", score=0, request=("node-c", 100), seen_at=99.0), Rank(100, 150), 0.0, 100.0)
    assert asks(held_by("node-b", score=0, request=("node-c", 50), seen_at=99.0), Rank(100, 150), 0.0, 100.0)


def test_the_holder_hands_over_only_to_a_request_that_outscores_it() -> None:
    assert handover_target(held_by("node-b", request=("node-a", 100)), Rank(50, 150), "node-b") == "node-a"
    assert handover_target(held_by("node-b", request=("node-a", 50)), Rank(50, 150), "node-b") is None
    assert handover_target(held_by("node-b", request=("node-a", 1)), None, "node-b") == "node-a"
    assert handover_target(held_by("node-c", request=("node-a", 100)), Rank(0, 150), "node-b") is None  # not ours
    assert handover_target(held_by("node-b"), Rank(0, 150), "node-b") is None


def test_the_holder_publishes_its_score_and_clears_a_request_it_renews_over() -> None:
    record = held_by("node-b", score=7, request=("node-a", 5))
    record.annotations["team"] = "web"
    assert holder_annotations(record.annotations, Rank(50, 150)) == {"team": "web", HOLDER_SCORE_ANNOTATION: "50"}
    assert holder_annotations(record.annotations, None) == {"team": "web"}


def test_a_request_is_granted_when_the_lease_names_us_and_refused_when_cleared_or_unanswered() -> None:
    def outcome(record: LeaseRecord, now: float = 1.0) -> Outcome:
        return request_outcome(record, identity="node-a", sent_at=0.0, patience=1.5, now=now)

    assert outcome(held_by("node-a")) is Outcome.GRANTED
    assert outcome(held_by("node-b", request=("node-a", 100))) is Outcome.WAITING
    assert outcome(held_by("node-b", request=("node-a", 100)), now=1.5) is Outcome.REFUSED
    assert outcome(held_by("node-b")) is Outcome.REFUSED
    assert outcome(held_by("node-b", request=("node-c", 100))) is Outcome.REFUSED


@given(st.integers(0, 1600), st.integers(0, 1600), st.integers(1, 1600), st.booleans(), st.floats(0, 5))
def test_a_higher_score_never_waits_longer_for_a_free_lease(low: int, high: int, top: int, new: bool,
                                                           waited: float) -> None:
    low, high = sorted((min(low, top), min(high, top)))
    record = LeaseRecord(changed_at=0.0) if new else LeaseRecord(changed_at=0.0, exists=True, holder=None)
    step = Step.CREATE if new else Step.ACQUIRE
    if deferred(step, record, Rank(low, top), TIMING, now=waited) is step:
        assert deferred(step, record, Rank(high, top), TIMING, now=waited) is step
    assert deferred(step, record, Rank(0, top), TIMING, now=2 * TIMING.retry_period) is step  # bounded
