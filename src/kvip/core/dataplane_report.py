"""What an operator is shown of the DHCP leases and egress rules a node holds, and where they drift — pure.

Three readers share these answers: `kvip status` (the agent's /status document), the metrics, and the
heartbeat Lease that `kvip audit` reads. So each is decided once, here, from plain values:

- `lease_view`: one Service's DHCP client of either family as a row (interface, MAC, address, state,
  renew-in, expires-in, server: its address for DHCPv4, its DUID for DHCPv6); a Service asking for
  `0.0.0.0,::` has two rows.
- `egress_views`: the SNAT rules grouped by Service and VIP (the pods SNATed through it).
- `dataplane_drift`: the items by which DHCP and egress differ from what this node should hold after a
  pass: a Service led here that asks for DHCP but holds no lease, a macvlan of ours no client uses, an
  egress rule nftables refused (expected but not found, or found but not expected). Each item is one
  short line naming the Service (or link), so a heartbeat can carry a few of them.
- `lease_events`, `egress_repairs`: counts for the metrics (renewals, leases lost, rules put back).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Hashable, Iterable, Mapping
from collections.abc import Set as AbstractSet
from dataclasses import dataclass
from typing import TypeVar

from kvip.core.dhcp import DhcpAsk, DhcpLease, mac_text
from kvip.core.dhcp_timers import LeaseState, expires_in, renew_in
from kvip.core.model import EgressRule, ServiceKey

MAX_DRIFT_ITEMS = 16  # drift lines carried (a count says how many were left out)
K = TypeVar("K", bound=Hashable)
NO_CLIENT = "no-client"  # the state of a Service whose client could not start (no macvlan)


@dataclass(frozen=True)
class LeaseView:
    service: ServiceKey
    interface: str
    mac: str
    address: str | None
    state: str  # the client's phase (init, selecting, requesting, bound, renewing, rebinding) or NO_CLIENT
    expires_in: float | None  # seconds until the held lease expires (None: none held)
    server: str | None  # the leasing server: its address (DHCPv4) or DUID (DHCPv6)
    renewals: int = 0
    lost: str | None = None  # why the last lease was lost (or why no client runs)
    renew_in: float | None = None  # seconds until T1 (bound) or T2 (renewing); None: none held, or rebinding


@dataclass(frozen=True)
class EgressView:
    service: ServiceKey
    vip: str
    pods: tuple[str, ...]
    table: str


def lease_view(key: ServiceKey, ask: DhcpAsk, state: LeaseState, now: float) -> LeaseView:
    """A DHCPv4 or DHCPv6 client's row; `now` on the clock its lease was stamped with (the event loop's)."""
    lease = state.lease
    return LeaseView(key, ask.interface, mac_text(ask.mac), None if lease is None else str(lease.address),
                     state.phase.value, expires_in(state, now), None if lease is None else lease.server_name,
                     state.renewals, state.lost, renew_in(state, now))


def other_view(key: ServiceKey, lease: DhcpLease) -> LeaseView:
    """A Service led here with no client: it could not start (no macvlan), `lost` says why."""
    address = ", ".join(map(str, lease.addresses)) or None
    return LeaseView(key, lease.interface, "", address, NO_CLIENT, None, None, 0, lease.problem)


def egress_views(rules: Iterable[EgressRule], table: str) -> tuple[EgressView, ...]:
    """One row per (Service, VIP), its pods sorted, rows sorted by Service then VIP."""
    pods: dict[tuple[ServiceKey, str], set[str]] = defaultdict(set)
    for rule in rules:
        pods[(rule.service, str(rule.vip))].add(str(rule.pod))
    return tuple(EgressView(key, vip, tuple(sorted(found)), table) for (key, vip), found in sorted(pods.items()))


def dhcp_drift(pending: Iterable[ServiceKey], leases: Mapping[ServiceKey, DhcpLease],
               macvlans: Iterable[str], in_use: Iterable[str]) -> tuple[str, ...]:
    """`pending`: Services led here that ask for DHCP and wait for an address (decide()'s dhcp-pending);
    `macvlans`: kvip's macvlans present on the node; `in_use`: the ones a running client needs."""
    items = []
    for key in sorted(set(pending)):
        lease = leases.get(key)
        why = f": {lease.problem}" if lease is not None and lease.problem else ""
        items.append(f"dhcp {key}: led here, no lease{why}")
    items += [f"dhcp macvlan {name}: ours, no Service uses it" for name in sorted(set(macvlans) - set(in_use))]
    return tuple(items)


def egress_drift(failed: Mapping[str, str]) -> tuple[str, ...]:
    """The egress items the last pass could not change (rule text → nftables' reason): each one a rule
    expected but not in the table, or in the table but not expected."""
    return tuple(f"egress {item}: {why}" for item, why in sorted(failed.items()))


def bounded(items: Iterable[str], limit: int = MAX_DRIFT_ITEMS, width: int = 200) -> tuple[str, ...]:
    """At most `limit` lines of at most `width` characters; a last line counts the ones left out."""
    every = [item if len(item) <= width else item[: width - 3] + "..." for item in items]
    if len(every) <= limit:
        return tuple(every)
    return (*every[: limit - 1], f"... and {len(every) - limit + 1} more")


@dataclass(frozen=True)
class LeaseEvents:
    renewals: int = 0
    lost: int = 0


def lease_events(before: Mapping[K, LeaseState], after: Mapping[K, LeaseState]) -> LeaseEvents:
    """Renewals and lost leases between two samples of the running clients (of either family: keyed by
    Service and family, or anything else naming one client). A client that is new since
    `before` counts from zero; one whose state went from holding a lease to none (expiry, NAK) is a loss."""
    renewals = lost = 0
    for key, state in after.items():
        old = before.get(key)
        renewals += max(0, state.renewals - (old.renewals if old is not None else 0))
        if old is not None and old.lease is not None and state.lease is None and state.lost:
            lost += 1
    return LeaseEvents(renewals, lost)


def egress_repairs(previous: frozenset[EgressRule] | None, current: frozenset[EgressRule],
                   changed: AbstractSet[Hashable], retried: AbstractSet[Hashable] = frozenset()) -> int:
    """Egress items a pass changed (`changed`: applied, not refused) while the desired rules equal the last
    pass's: the table differed from what kvip had written (flushed, edited, deleted), so each change is a
    repair, not a new intent. An item the last pass could not change (`retried`) is a retry, not a repair."""
    return len(set(changed) - set(retried)) if previous is not None and previous == current else 0
