"""What the drain window and API-loss policies remember between calls, and the edges of their limits.

test_policy.py drives each policy through its main story; these pin down the state a call hands back
(the agent feeds it to the next call) where a wrong value only shows one or two calls later.
"""

from __future__ import annotations

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


def drains(state: DrainState, now: float, node: NodeView | None, drain_time: float = 5.0
           ) -> tuple[bool, float | None, DrainState]:
    decision, state = drain_window(state, now=now, node=node, drain_time=drain_time, cordon_withdraws=True)
    return decision.draining, decision.wake_at, state


def test_a_drain_time_below_one_second_still_opens_a_window() -> None:
    _, _, state = drains(DrainState(), 0.0, SCHEDULABLE, drain_time=0.5)
    assert drains(state, 1.0, CORDONED, drain_time=0.5)[:2] == (True, 1.5)


def test_a_node_gone_from_the_cache_after_a_drain_still_counts_as_once_schedulable() -> None:
    """While the node object is unknown the agent advertises as usual; when the cordon is seen again
    it is a new goodbye, so it gets a fresh window (make-before-break again)."""
    _, _, state = drains(DrainState(), 0.0, SCHEDULABLE)
    assert drains(state, 10.0, CORDONED)[0] is True
    _, _, state = drains(state, 10.0, CORDONED)
    _, _, state = drains(state, 20.0, None)
    assert drains(state, 30.0, CORDONED)[:2] == (True, 35.0)


def test_a_cordon_found_at_start_never_drains_even_early_on_the_clock() -> None:
    """The window of a cordon older than the agent is over at once, whatever the monotonic clock reads
    (it starts near 0 on a freshly booted node)."""
    _, _, state = drains(DrainState(), 0.0, CORDONED)
    for now in (0.5, 1.0, 4.9):
        draining, _, state = drains(state, now, CORDONED)
        assert draining is False


def test_a_cordon_found_at_start_stays_windowless_across_a_gap_in_the_cache() -> None:
    """Never having seen the node schedulable, a gap (node unknown) is not a sighting of it schedulable."""
    _, _, state = drains(DrainState(), 0.0, CORDONED)
    _, _, state = drains(state, 1.0, None)
    assert drains(state, 2.0, CORDONED)[:2] == (False, None)


def test_a_healthy_api_that_never_caused_a_withdrawal_announces_no_restore() -> None:
    decision, state = api_loss(ApiLossState(), stale_for=0.0, withdraw_after=30.0)
    assert (decision.withdraw, decision.change, state) == (False, ApiLossChange.NONE, ApiLossState())


def test_routes_return_below_the_limit_but_the_restore_is_announced_only_when_fully_fresh() -> None:
    _, state = api_loss(ApiLossState(), stale_for=45.0, withdraw_after=30.0)
    decision, state = api_loss(state, stale_for=10.0, withdraw_after=30.0)
    assert (decision.withdraw, decision.change, state.withdrawn) == (False, ApiLossChange.NONE, True)
    decision, state = api_loss(state, stale_for=0.0, withdraw_after=30.0)
    assert (decision.change, state.withdrawn) == (ApiLossChange.RESTORED, False)
