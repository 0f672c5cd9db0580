"""The drain window and API-loss withdrawal, as pure functions driven by a fake clock (plain floats)."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from kvip.core.model import NodeView
from kvip.core.policy import (
    ApiLossChange,
    ApiLossState,
    DrainState,
    api_loss,
    drain_window,
)

SCHEDULABLE = NodeView("n1")
CORDONED = NodeView("n1", unschedulable=True)
DRAIN = 5.0


def step(state: DrainState, now: float, node: NodeView | None, **kwargs: object) -> tuple[bool, float | None,
                                                                                         DrainState]:
    options = {"drain_time": DRAIN, "cordon_withdraws": True, **kwargs}
    decision, state = drain_window(state, now=now, node=node, **options)  # type: ignore[arg-type]
    return decision.draining, decision.wake_at, state


# --- drain window ---------------------------------------------------------------------------------

def test_a_cordon_seen_after_the_node_was_schedulable_drains_for_drain_time_then_withdraws() -> None:
    _, _, state = step(DrainState(), 100.0, SCHEDULABLE)
    draining, wake_at, state = step(state, 200.0, CORDONED)
    assert draining and wake_at == 205.0  # the agent must wake itself when the window closes
    assert step(state, 204.9, CORDONED)[0] is True
    assert step(state, 205.0, CORDONED)[0] is False


def test_a_cordon_already_in_place_at_start_gets_no_window() -> None:
    draining, wake_at, state = step(DrainState(), 100.0, CORDONED)
    assert (draining, wake_at) == (False, None)
    assert step(state, 100.1, CORDONED)[0] is False


def test_uncordon_then_cordon_again_opens_a_fresh_window() -> None:
    _, _, state = step(DrainState(), 0.0, SCHEDULABLE)
    _, _, state = step(state, 10.0, CORDONED)
    assert step(state, 20.0, CORDONED)[0] is False
    _, _, state = step(state, 30.0, SCHEDULABLE)
    draining, wake_at, _ = step(state, 40.0, CORDONED)
    assert draining and wake_at == 45.0


def test_shutdown_drains_whatever_the_node_state_and_no_drain_time_means_never() -> None:
    assert step(DrainState(), 0.0, CORDONED, shutting_down=True)[0] is True
    assert step(DrainState(), 0.0, None, shutting_down=True)[0] is True
    assert step(DrainState(), 0.0, SCHEDULABLE, shutting_down=True, drain_time=0.0)[0] is False


def test_a_cordon_that_does_not_withdraw_here_never_drains() -> None:
    _, _, state = step(DrainState(), 0.0, SCHEDULABLE, cordon_withdraws=False)
    assert step(state, 1.0, CORDONED, cordon_withdraws=False)[:2] == (False, None)


def test_an_unknown_node_does_not_count_as_seen_schedulable() -> None:
    _, _, state = step(DrainState(), 0.0, None)
    assert step(state, 1.0, CORDONED)[0] is False


@given(st.lists(st.tuples(st.floats(0, 20), st.sampled_from([None, SCHEDULABLE, CORDONED])), max_size=30))
def test_draining_never_lasts_longer_than_drain_time_after_the_cordon_was_first_seen(
        events: list[tuple[float, NodeView | None]]) -> None:
    state, now, cordon_seen_at = DrainState(), 0.0, None
    for delta, node in events:
        now += delta
        draining, wake_at, state = step(state, now, node)
        cordoned = node is not None and node.unschedulable
        cordon_seen_at = (cordon_seen_at if cordon_seen_at is not None else now) if cordoned else None
        if draining:
            assert cordoned and cordon_seen_at is not None and now - cordon_seen_at < DRAIN
        if wake_at is not None:
            assert wake_at == now + DRAIN


# --- API loss -------------------------------------------------------------------------------------

def test_keep_never_withdraws_however_long_the_api_is_gone() -> None:
    decision, state = api_loss(ApiLossState(), stale_for=1e9, withdraw_after=None)
    assert decision.withdraw is False and state == ApiLossState()


def test_withdraw_after_withdraws_past_the_limit_and_comes_back_on_a_fresh_cache() -> None:
    decision, state = api_loss(ApiLossState(), stale_for=30.0, withdraw_after=30.0)
    assert not decision.withdraw
    decision, state = api_loss(state, stale_for=30.5, withdraw_after=30.0)
    assert decision.withdraw and decision.change is ApiLossChange.WITHDRAWN
    decision, state = api_loss(state, stale_for=31.0, withdraw_after=30.0)
    assert decision.withdraw and decision.change is ApiLossChange.NONE  # said once, not every pass
    decision, state = api_loss(state, stale_for=0.0, withdraw_after=30.0)
    assert not decision.withdraw and decision.change is ApiLossChange.RESTORED
    assert state == ApiLossState()


@given(st.lists(st.floats(0, 100), max_size=30), st.floats(0.1, 60))
def test_withdraws_exactly_while_staleness_exceeds_the_limit_and_logs_each_transition_once(
        staleness: list[float], limit: float) -> None:
    state, withdrawn_said = ApiLossState(), 0
    for stale in staleness:
        decision, state = api_loss(state, stale_for=stale, withdraw_after=limit)
        assert decision.withdraw == (stale > limit)
        withdrawn_said += decision.change is ApiLossChange.WITHDRAWN
        if decision.change is ApiLossChange.RESTORED:
            withdrawn_said = 0
        assert withdrawn_said <= 1
