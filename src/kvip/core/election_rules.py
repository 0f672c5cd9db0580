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
    renewed_at: float | None = None  # local clock when we *sent* our last successful write
    transitions: int = 0

    def observe(self, lease: dict[str, Any] | None, now: float) -> None:
        if lease is None:
            if self.exists:
                self.changed_at = now
            self.exists, self.holder, self.renew_time, self.resource_version = False, None, None, None
            self.spec = {}
            self.renewed_at = None  # deleted under us: whoever recreates it owns it
            return
        spec = lease.get("spec") or {}
        holder, renew = spec.get("holderIdentity") or None, spec.get("renewTime")
        if not self.exists or (holder, renew) != (self.holder, self.renew_time):
            self.holder, self.renew_time, self.changed_at = holder, renew, now
        self.exists = True
        self.lease_seconds = _int_or_none(spec.get("leaseDurationSeconds"))
        self.resource_version = (lease.get("metadata") or {}).get("resourceVersion")
        self.spec = dict(spec)

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


def spread_delay(identity: str, key: LeaseKey, timing: LeaseTiming) -> float:
    """Delay before creating a new lease, different per (node, lease) so that leaders of many new
    services spread over the eligible nodes instead of all going to the fastest node."""
    digest = hashlib.blake2b(f"{identity}/{key}".encode(), digest_size=4).digest()
    return int.from_bytes(digest, "big") / 2**32 * 2 * timing.retry_period


def next_step(record: LeaseRecord, *, identity: str, timing: LeaseTiming, now: float, spread: float) -> Step:
    if not record.exists:
        return Step.CREATE if now - record.changed_at >= spread else Step.WAIT
    if record.holder == identity:
        due = record.renewed_at is None or now - record.renewed_at >= timing.renew_after
        return Step.RENEW if due else Step.WAIT
    # A released lease (holder cleared) is taken at once: a clean stop fails over within a period.
    if record.holder is None or now - record.changed_at >= expires_after(record, timing):
        return Step.ACQUIRE
    return Step.WAIT


def _int_or_none(value: Any) -> int | None:
    try:
        return int(value) if value is not None else None
    except (TypeError, ValueError):
        return None
