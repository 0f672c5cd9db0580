"""What the DHCPv4 and DHCPv6 lease state machines share, pure: the phases, a held lease's timers (T1, T2,
end of lease), retransmission backoff, and when the client next has something to do.

Each protocol keeps its own rules in its own module (`dhcp_lease`: RFC 2131; `dhcp6_lease`: RFC 8415):
which messages are sent, which answers are taken, how T1/T2 default. Only the clock arithmetic that is
the same in both lives here, so a timer fix lands in both families at once.
"""

from __future__ import annotations

import enum
import ipaddress
from dataclasses import replace
from typing import Protocol, TypeVar

MAX_RETRY = 16.0  # retransmission doubles up to this (lower than either RFC's cap: a Service waits for its address)
MIN_RETRY = 2.0  # RENEWING/REBINDING retransmit at half the remaining time, never more often than this
REQUEST_TRIES = 4  # REQUESTING gives up (back to INIT) after this many unanswered requests


class Phase(enum.Enum):
    INIT = "init"
    SELECTING = "selecting"
    REQUESTING = "requesting"
    BOUND = "bound"
    RENEWING = "renewing"
    REBINDING = "rebinding"


HOLDING = frozenset({Phase.BOUND, Phase.RENEWING, Phase.REBINDING})  # the phases in which a lease is held


class LeaseTimers:
    """A held lease's clock, for a frozen dataclass with `obtained_at`, `t1`, `t2` and `lifetime` (the
    lease time of DHCPv4, the valid lifetime of DHCPv6), all in seconds from `obtained_at`."""

    obtained_at: float
    t1: int
    t2: int

    @property
    def lifetime(self) -> int:
        raise NotImplementedError

    @property
    def renew_at(self) -> float:
        return self.obtained_at + self.t1

    @property
    def rebind_at(self) -> float:
        return self.obtained_at + self.t2

    @property
    def expires_at(self) -> float:
        return self.obtained_at + self.lifetime


class HeldLease(Protocol):
    @property
    def address(self) -> ipaddress.IPv4Address | ipaddress.IPv6Address: ...

    @property
    def server_name(self) -> str: ...

    @property
    def lifetime(self) -> int: ...

    @property
    def t1(self) -> int: ...

    @property
    def renew_at(self) -> float: ...

    @property
    def rebind_at(self) -> float: ...

    @property
    def expires_at(self) -> float: ...


class LeaseState(Protocol):
    """What both clients' states (frozen dataclasses) show: read by the socket client, status and the
    metrics, and retransmitted here."""

    @property
    def phase(self) -> Phase: ...

    @property
    def lease(self) -> HeldLease | None: ...

    @property
    def lost(self) -> str | None: ...

    @property
    def next_send(self) -> float: ...  # when the current message is (re)sent

    @property
    def retry(self) -> float: ...  # the interval before that

    @property
    def tries(self) -> int: ...

    @property
    def renewals(self) -> int: ...


R = TypeVar("R", bound=LeaseState)


def backoff(retry: float) -> float:
    """The next retransmission interval: doubled, capped at MAX_RETRY."""
    return min(retry * 2, MAX_RETRY)


def retransmitted(state: R, now: float) -> R:
    """`state` as its message is sent again now: one more try, the next one after a doubled interval."""
    wait = backoff(state.retry)
    return replace(state, next_send=now + wait, retry=wait, tries=state.tries + 1)  # type: ignore[type-var]


def expired(lease: HeldLease, protocol: str) -> str:
    """Why a lease was lost at its end (said in the Event and in status)."""
    return f"lease of {lease.address} expired: no {protocol} server answered for {lease.lifetime - lease.t1}s after T1"


def extension_phase(phase: Phase, lease: HeldLease, now: float) -> Phase | None:
    """The phase a held lease is in at `now`: BOUND until T1 (None: nothing to send yet), RENEWING from
    T1, REBINDING from T2. Expiry is each protocol's to handle first (it starts over)."""
    if phase is Phase.BOUND and now < lease.renew_at:
        return None
    if phase in (Phase.BOUND, Phase.RENEWING) and now >= lease.rebind_at:
        return Phase.REBINDING
    return Phase.RENEWING if phase is Phase.BOUND else phase


def extension_resend_at(phase: Phase, lease: HeldLease, now: float) -> float:
    """When an unanswered renew/rebind is sent again: at half the time left before T2 (RENEWING) or the
    end of the lease (REBINDING), at least MIN_RETRY later, never past that end (RFC 2131 §4.4.5)."""
    end = lease.rebind_at if phase is Phase.RENEWING else lease.expires_at
    return min(now + max((end - now) / 2, MIN_RETRY), end)


def next_wakeup(state: LeaseState) -> float:
    """When the state machine's `tick` has something to do next."""
    if state.phase is Phase.INIT:
        return 0.0
    if state.phase is Phase.BOUND and state.lease is not None:
        return min(state.lease.renew_at, state.lease.expires_at)
    if state.lease is not None:
        return min(state.next_send, state.lease.expires_at)
    return state.next_send


def renew_in(state: LeaseState, now: float) -> float | None:
    """Seconds until the client next escalates its lease: to RENEWING at T1 (BOUND), to REBINDING at T2
    (RENEWING); None when no lease is held or it is rebinding (only expiry is ahead)."""
    lease = state.lease
    if lease is None or state.phase not in (Phase.BOUND, Phase.RENEWING):
        return None
    at = lease.renew_at if state.phase is Phase.BOUND else lease.rebind_at
    return max(0.0, round(at - now, 1))


def expires_in(state: LeaseState, now: float) -> float | None:
    """Seconds until the held lease ends (None: none held), never negative."""
    return None if state.lease is None else max(0.0, round(state.lease.expires_at - now, 1))


def held_address(state: LeaseState) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    """The address a client may use now: from BOUND until its lease ends (the state machine drops an
    expired lease at its next tick, and the client ticks at `expires_at`)."""
    return state.lease.address if state.lease is not None else None
