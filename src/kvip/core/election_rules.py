"""The rules of Lease election as pure functions of (what we saw, our clock): no I/O, no asyncio.

Owns the timing contract (`LeaseTiming`), lease naming, the per-lease bookkeeping record and the
two questions the elector asks of it: *do we still hold it* (`is_fenced_holder`) and *what do we
do next* (`next_step`). It must never read a remote clock: a lease expires lease_duration after we
*locally* saw its (holder, renewTime) change, as client-go does, so clock skew between nodes cannot
shorten the bound. Everything here is tested with a fake clock.
"""

from __future__ import annotations

import enum
import hashlib
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from kvip.core.model import ServiceKey


class ElectionConfigError(ValueError):
    """Lease timing that cannot give the fencing guarantee."""


@dataclass(frozen=True)
class LeaseTiming:
    """kube-vip's vip_leaseduration / vip_renewdeadline / vip_retryperiod, in seconds."""

    lease_duration: float = 15.0
    renew_deadline: float = 10.0
    retry_period: float = 2.0

    def __post_init__(self) -> None:
        values = (self.lease_duration, self.renew_deadline, self.retry_period)
        if not all(math.isfinite(v) for v in values) or not (
                0 < self.retry_period < self.renew_deadline < self.lease_duration):
            raise ElectionConfigError(
                f"need 0 < retry period ({self.retry_period}) < renew deadline ({self.renew_deadline}) "
                f"< lease duration ({self.lease_duration})")

    @property
    def lease_seconds(self) -> int:
        """leaseDurationSeconds we write: rounded *up*, so a peer trusting the record never expires
        us sooner than our own fence does."""
        return math.ceil(self.lease_duration)

    @property
    def renew_after(self) -> float:
        """Age of our last renewal at which we renew again. Half the deadline halves the writes of
        renewing every period, yet leaves room for at least two retries before the fence."""
        return max(0.0, min(self.renew_deadline / 2, self.renew_deadline - 2 * self.retry_period))


@dataclass(frozen=True, order=True)
class LeaseKey:
    namespace: str
    name: str

    def __str__(self) -> str:
        return f"{self.namespace}/{self.name}"


def service_lease_key(service: ServiceKey) -> LeaseKey:
    """kube-vip's per-service lease: `kubevip-<service>` in the service's namespace."""
    return LeaseKey(service.namespace, f"kubevip-{service.name}")


@dataclass(frozen=True)
class LeaseState:
    """One lease as this node sees it, for status and metrics (a snapshot, safe to hand out)."""

    holder: str | None
    held: bool  # fenced: counts as leadership right now
    renewed_at: float | None  # our clock, when we sent our last successful acquire/renew
    observed_change_at: float  # our clock, when we last saw (holder, renewTime) change
    transitions: int  # leases this node acquired (create or take-over)


@dataclass
class LeaseRecord:
    """Mutable bookkeeping for one lease, owned by the elector (never handed out)."""

    changed_at: float  # local clock when (holder, renew_time) last changed
    exists: bool = False
    holder: str | None = None
    renew_time: str | None = None
    lease_seconds: int | None = None  # the record's own leaseDurationSeconds
    resource_version: str | None = None
    spec: dict[str, Any] = field(default_factory=dict)
    annotations: dict[str, str] = field(default_factory=dict)  # metadata.annotations (a write keeps them)
    renewed_at: float | None = None  # local clock when we *sent* our last successful write
    transitions: int = 0

    def observe(self, lease: dict[str, Any] | None, now: float) -> None:
        if lease is None:
            if self.exists:
                self.changed_at = now
            self.exists, self.holder, self.renew_time, self.resource_version = False, None, None, None
            self.spec, self.annotations = {}, {}
            self.renewed_at = None  # deleted under us: whoever recreates it owns it
            return
        spec = lease.get("spec") or {}
        holder, renew = spec.get("holderIdentity") or None, spec.get("renewTime")
        if not self.exists or (holder, renew) != (self.holder, self.renew_time):
            self.holder, self.renew_time, self.changed_at = holder, renew, now
        self.exists = True
        self.lease_seconds = _int_or_none(spec.get("leaseDurationSeconds"))
        metadata = lease.get("metadata") or {}
        self.resource_version = metadata.get("resourceVersion")
        self.spec = dict(spec)
        annotations = metadata.get("annotations")
        self.annotations = ({k: v for k, v in annotations.items() if isinstance(k, str) and isinstance(v, str)}
                            if isinstance(annotations, dict) else {})

    def snapshot(self, held: bool) -> LeaseState:
        return LeaseState(holder=self.holder, held=held, renewed_at=self.renewed_at,
                          observed_change_at=self.changed_at, transitions=self.transitions)


class Step(enum.Enum):
    WAIT = "wait"
    CREATE = "create"  # the lease does not exist yet
    ACQUIRE = "acquire"  # free or expired: take it over (PUT with the resourceVersion we read)
    RENEW = "renew"  # ours: refresh renewTime


def is_fenced_holder(record: LeaseRecord, timing: LeaseTiming, now: float) -> bool:
    """True while our last successful write is younger than renew_deadline. Any other node needs
    lease_duration (> renew_deadline) after it saw that write, which it saw after we sent it."""
    return record.renewed_at is not None and now - record.renewed_at < timing.renew_deadline


def fence_ends_at(record: LeaseRecord, timing: LeaseTiming) -> float | None:
    return None if record.renewed_at is None else record.renewed_at + timing.renew_deadline


def expires_after(record: LeaseRecord, timing: LeaseTiming) -> float:
    """Seconds after the last observed change at which another holder's lease is free: the longer
    of our configured duration and the holder's declared one (a peer may run longer settings)."""
    return max(timing.lease_duration, float(record.lease_seconds or 0))


RAMP_BASE = 8  # alone, a node's intake grows about this many times per retry period
# Retry periods: when the nodes not first for a lease may take it. After 3, as the contenders are known
# only from the second cycle after a burst started (the ramp's leases), and ranks must not race then.
RANK_START, RANK_SPAN = 3.0, 2.0
EXACT_RANK = 64  # contenders ranked exactly by hashing each; more: by the expected rank (see _rank)
PACE_PERIODS = 100.0  # retry periods per even share held beyond the even share (up to the others' window)


def spread_delay(identity: str, key: LeaseKey, timing: LeaseTiming, *, held: int = 0,
                 others: Mapping[str, int] | None = None, wanted: int = 1) -> float:
    """Delay before creating a new lease, so that leaders of many services spread evenly over the
    eligible nodes instead of going to the node whose cycle runs first.

    `held`: leases this node holds or is taking this cycle; `others`: leases held by each other node
    seen holding a lease this node wants (the contenders it knows of); `wanted`: leases it wants.
    Each (node, lease) has a hashed score in [0, 1). In retry periods:
    - alone (no contender seen yet): the larger of 2 x score and log8(1 + score x (free - 1)), free =
      wanted - held. In a burst of new Services a node takes ~8x more each period, a random part (its
      lowest scores), so nodes that start together pick disjoint leases and none takes them all
      before it has seen who else contends; with one free lease it is 2 x score, as before.
    - with contenders known and more leases free than contenders (a burst), rendezvous hashing orders
      the nodes: the lowest score takes the lease within one period, the others in [3, 5) by rank
      (in case the first does not: ineligible, or gone), so nodes that see the same contenders take
      disjoint parts at once instead of racing for the same leases; with few free (one new Service),
      2 x score, as before, so an eligible node never waits for ineligible ones;
    - with contenders known, a node over its even share (wanted / contenders) waits 1 more period per
      1% over, up to the end of the others' window (2 more, 5 in a burst), so a node that is not over
      its share takes the lease first, and an eligible node waits at most 4 periods for one new Service.
    At most 10 periods with contenders; alone, at most the larger of 2 and log8(wanted) (4.4 at 10,000).
    """
    score = _score(identity, key)
    held = max(0, held)
    if not others:
        ramp = math.log1p(score * max(0, wanted - held - 1)) / math.log(RAMP_BASE)
        return max(2 * score, ramp) * timing.retry_period
    # Waiting past every other node's window is enough to yield: [0, 2) periods, or [3, 5) in a burst.
    latest = 2.0
    if wanted - held - sum(others.values()) <= len(others) + 1:
        order = 2 * score  # a few free leases, not a burst: a node not first by rank may be the only eligible
    elif (rank := _rank(score, identity, key, others)) == 0:
        order, latest = score, RANK_START + RANK_SPAN
    else:
        order, latest = RANK_START + RANK_SPAN * (rank - 1 + score) / len(others), RANK_START + RANK_SPAN
    share = max(1.0, wanted / (len(others) + 1))
    over = max(0.0, held - share) / share
    return (order + min(PACE_PERIODS * over, latest)) * timing.retry_period


TAKEOVER_BASE = 1.1  # retry periods: an over-share node takes a free lease two cycles after it saw it free...
TAKEOVER_PACE = 8.0  # ...waiting longer the more it is over (retry periods per even share over)...
TAKEOVER_MAX = 1.9  # ...but below two periods: the cycle two periods on always takes it


def takeover_delay(timing: LeaseTiming, *, held: int, others: Mapping[str, int], wanted: int) -> float:
    """Extra delay before taking over a released or expired lease, so that when a node dies its leases
    spread over the survivors instead of going to the one whose cycle runs first.

    `held`: leases this node holds or is taking this cycle; `others`: live leases held by each other
    node seen holding a wanted lease (a node holding an expired one is gone and left out); `wanted`:
    leases it wants. A node whose next lease keeps it within its even share (wanted / nodes, rounded
    up) takes it at once; one over it waits 1.1 retry periods plus 8 per even share over, at most 1.9:
    it takes what is left two cycles after it saw the lease free. Each node lists at a fixed rate and
    sees the lease free within one period of the others (a release: at its next cycle; an expiry:
    lease_duration after it saw the last renewal, at its own cycle), and has one more cycle to retry
    what it lost to a concurrent writer; so a node under its share takes it first, and failover is at
    most two retry periods slower than taking everything at once, for the leases left over.
    """
    share = max(1.0, wanted / (len(others) + 1))
    over = (max(0, held) + 1 - math.ceil(share)) / share
    if over <= 0:
        return 0.0
    return min(TAKEOVER_MAX, TAKEOVER_BASE + TAKEOVER_PACE * over) * timing.retry_period


def lease_order(identity: str, key: LeaseKey, exists: bool) -> tuple[float, LeaseKey]:
    """The order in which `identity` considers leases in a cycle: new ones first, by name (as `spread_delay`
    was tuned), then existing ones by its hashed score, so that nodes whose cycles run at the same moment and
    each take their share of the free leases take different ones instead of racing for the same."""
    return (_score(identity, key) if exists else -1.0), key


def _rank(score: float, identity: str, key: LeaseKey, others: Mapping[str, int]) -> int:
    """How many known contenders come before this node for `key` (rendezvous hashing). Exact up to
    EXACT_RANK contenders; beyond, the expected rank of a uniform score: hashing every node for every
    new Lease cost seconds per cycle at 1,000 nodes and 10,000 new Services, and a rank that is only
    nearly agreed costs at worst a Lease write that loses to another (409) — never two holders."""
    if len(others) > EXACT_RANK:
        return int(score * len(others))
    return sum(_score(other, key) < score for other in others)


def _score(identity: str, key: LeaseKey) -> float:
    digest = hashlib.blake2b(f"{identity}/{key}".encode(), digest_size=4).digest()
    return int.from_bytes(digest, "big") / 2**32


def is_expired(record: LeaseRecord, timing: LeaseTiming, now: float) -> bool:
    """Another node's lease no longer renewed for its duration, as we saw it (or released)."""
    return record.holder is None or now - record.changed_at >= expires_after(record, timing)


def next_step(record: LeaseRecord, *, identity: str, timing: LeaseTiming, now: float, spread: float,
              takeover: float = 0.0) -> Step:
    """`spread`: delay before creating a new lease; `takeover`: extra delay before taking over a
    released or expired one (`takeover_delay`, 0 for a node within its share)."""
    if not record.exists:
        return Step.CREATE if now - record.changed_at >= spread else Step.WAIT
    if record.holder == identity:
        due = record.renewed_at is None or now - record.renewed_at >= timing.renew_after
        return Step.RENEW if due else Step.WAIT
    # A released lease (holder cleared) is taken at once by a node within its share: a clean stop fails
    # over within a period; an expired one likewise once its duration has passed.
    free_since = 0.0 if record.holder is None else expires_after(record, timing)
    if now - record.changed_at >= free_since + takeover:
        return Step.ACQUIRE
    return Step.WAIT


def _int_or_none(value: Any) -> int | None:
    try:
        return int(value) if value is not None else None
    except (TypeError, ValueError):
        return None
