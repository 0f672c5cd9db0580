"""The agent's two time-based policies as pure functions: the drain window and API-loss withdrawal.

Each takes the policy's previous state, what was observed and `now` (the caller's monotonic clock),
and returns (decision, new state): no I/O, no clock, no asyncio, so both are tested with plain values
and a fake clock, as `election_rules` is. The agent keeps the state and applies the decisions.

- Drain window (BGP make-before-break): a node that is leaving — shutting down, or cordoned while
  cordons withdraw — keeps advertising, marked draining (RFC 8326), for `drain_time` seconds, so
  peers move traffic before the withdraw. A cordon already in place when the agent first sees the
  node gets no window: re-announcing a VIP only to drain it again would pull traffic back to a node
  that is leaving.
- API loss (`on_api_loss`): `keep` never withdraws (fail-static); `withdraw-after=D` withdraws
  everything while the cache has gone unconfirmed for more than D seconds (bounded staleness).
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from kvip.core.model import NodeView


@dataclass(frozen=True)
class DrainState:
    cordoned_since: float | None = None  # when we first saw the current cordon (window start)
    seen_uncordoned: bool = False  # we have seen this node schedulable since the agent started


@dataclass(frozen=True)
class DrainDecision:
    draining: bool
    # A window opened at this call and ends at `wake_at`: the caller must re-decide then, because
    # nothing else is guaranteed to wake it when the window closes.
    wake_at: float | None = None


def drain_window(
    state: DrainState,
    *,
    now: float,
    node: NodeView | None,
    drain_time: float,
    cordon_withdraws: bool,
    shutting_down: bool = False,
) -> tuple[DrainDecision, DrainState]:
    """Whether the node is inside a drain window. `cordon_withdraws`: a cordon means withdraw here
    (drain_on_cordon and respect_node_state); `node` None: the node object is not known (yet)."""
    if drain_time <= 0:
        return DrainDecision(False), state
    if shutting_down:
        return DrainDecision(True), state
    cordoned = node is not None and node.unschedulable and cordon_withdraws
    if not cordoned:
        return DrainDecision(False), DrainState(None, state.seen_uncordoned or node is not None)
    if state.cordoned_since is None:
        if state.seen_uncordoned:
            opened = DrainState(now, True)
            return DrainDecision(True, wake_at=now + drain_time), opened
        # Cordoned before we ever saw it schedulable: the window is already over.
        return DrainDecision(False), DrainState(now - drain_time, False)
    return DrainDecision(now - state.cordoned_since < drain_time), state


class ApiLossChange(enum.Enum):
    """A transition worth one log line."""

    NONE = "none"
    WITHDRAWN = "withdrawn"
    RESTORED = "restored"


@dataclass(frozen=True)
class ApiLossState:
    withdrawn: bool = False  # we are (or were, until the API came fully back) withdrawn for API loss


@dataclass(frozen=True)
class ApiLossDecision:
    withdraw: bool
    change: ApiLossChange = ApiLossChange.NONE


def api_loss(state: ApiLossState, *, stale_for: float,
             withdraw_after: float | None) -> tuple[ApiLossDecision, ApiLossState]:
    """`stale_for`: seconds the least recently confirmed API source has gone unconfirmed beyond normal
    (0 = healthy). `withdraw_after` None is `keep`: never withdraw for API loss."""
    if withdraw_after is None:
        return ApiLossDecision(False), ApiLossState()
    if stale_for > withdraw_after:
        change = ApiLossChange.NONE if state.withdrawn else ApiLossChange.WITHDRAWN
        return ApiLossDecision(True, change), ApiLossState(withdrawn=True)
    if state.withdrawn and stale_for == 0:
        return ApiLossDecision(False, ApiLossChange.RESTORED), ApiLossState()
    return ApiLossDecision(False), state
