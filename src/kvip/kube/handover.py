"""The elector's side of `kvip.io/preferred-nodes`: asking for a Lease, and handing one over — with I/O.

Owns, per Lease, this node's rank, how long it has been ready (the hold-down's clock) and its pending
request; the rules are `kvip.core.preference`. The handover keeps the elector's guarantee that two
nodes never both count a Lease as held, and adds one for the dataplane: the holder stops counting the
Lease as held *and waits for a dataplane pass that withdrew the VIP* before it writes the new holder's
name, and the new holder counts it as held only after its own renewal of that write. So the VIP is on
at most one node at every instant, and on none for one write, one poll and one renewal.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import time
from collections.abc import Awaitable, Callable, Collection, Mapping
from dataclasses import dataclass
from typing import Any

from lightkube import AsyncClient

from kvip.core.election_rules import LeaseKey, LeaseRecord, LeaseTiming, Step
from kvip.core.preference import (
    Outcome,
    Rank,
    deferred,
    handed_over_annotations,
    handover_target,
    holder_score,
    request_annotations,
    request_of,
    request_outcome,
    request_patience,
    should_request,
    without_request,
)
from kvip.kube.errors import ApiFailure, classify, describe
from kvip.kube.resources import Lease

__all__ = ["DEFAULT_HOLDDOWN", "DIRECTIONS", "POLL_PERIOD", "HandoverEvent", "HandoverReport", "Handovers",
           "lease_body", "micro_time"]

log = logging.getLogger("kvip.election")

def micro_time(now: dt.datetime | None = None) -> str:
    """RFC 3339 with microseconds, as Kubernetes' MicroTime serializes."""
    return (now or dt.datetime.now(dt.UTC)).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


# Counted per node: asked (we wrote a request), received (a request of ours granted), refused (one of ours
# cleared, outbid or unanswered), granted (we handed a Lease over to a requester).
DIRECTIONS = ("asked", "received", "refused", "granted")


@dataclass(frozen=True)
class HandoverEvent:
    direction: str  # one of DIRECTIONS but "asked"
    peer: str | None  # the other node: the one we handed over to; None when we were the requester
    at: float  # our clock


@dataclass(frozen=True)
class HandoverReport:
    """For /status and metrics: counts by direction, our pending requests (lease, seconds waiting) and the
    last handover outcome of each Lease we contend for (lease, event, seconds ago)."""

    counts: Mapping[str, int]
    pending: tuple[tuple[LeaseKey, float], ...]
    last: tuple[tuple[LeaseKey, HandoverEvent, float], ...]


POLL_PERIOD = 0.1  # how often a node with a request pending reads its Lease: the handover's gap is about this
DEFAULT_HOLDDOWN = 30.0


def lease_body(key: LeaseKey, record: LeaseRecord, spec: Mapping[str, Any],
               annotations: Mapping[str, str]) -> dict[str, Any]:
    """A PUT of the Lease we read (resourceVersion-guarded), with this spec and these annotations."""
    return {"apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
            "metadata": {"name": key.name, "namespace": key.namespace, "annotations": dict(annotations),
                         "resourceVersion": record.resource_version}, "spec": dict(spec)}


class Handovers:
    """Preference bookkeeping for one `LeaseElector`: it calls `update` from `want`, `plan` for every
    wanted Lease in its cycle, runs `take_work()` after its own writes, and `poll()` while `pending`."""

    def __init__(self, client: AsyncClient, *, identity: str, timing: LeaseTiming, holddown: float,
                 records: Mapping[LeaseKey, LeaseRecord], clock: Callable[[], float],
                 dropped: Callable[[], None], wake: Callable[[], None],
                 withdrawn: Callable[[float], bool] | None) -> None:
        self._client = client
        self.identity = identity
        self.timing = timing
        self.holddown = holddown
        self._records = records
        self._clock = clock
        self._dropped = dropped  # the elector re-reports held() (the agent withdraws)
        self._wake = wake
        self._withdrawn = withdrawn  # (wall time) -> has a dataplane pass started since then completed?
        self.ranks: Mapping[LeaseKey, Rank] = {}
        self.ready_since: dict[LeaseKey, float] = {}
        self.pending: dict[LeaseKey, float] = {}  # our requests: when sent (our clock)
        self.handed_over = 0
        self.asked = 0
        self.received = 0
        self.refused = 0
        self.last: dict[LeaseKey, HandoverEvent] = {}  # bounded by the Leases we contend for
        self.requests = 0  # API requests sent
        self._work: list[Callable[[], Awaitable[None]]] = []

    def update(self, wanted: Collection[LeaseKey], ranks: Mapping[LeaseKey, Rank]) -> set[LeaseKey]:
        """New wanted set and ranks. A Lease we stop contending for (or stop scoring on) restarts its
        hold-down; returns the Leases whose pending request must be taken back."""
        now = self._clock()
        self.ranks = dict(ranks)
        self.ready_since = {k: self.ready_since.get(k, now) for k in wanted
                            if (rank := self.ranks.get(k)) is not None and rank.score > 0}
        gone = {k for k in self.pending if k not in wanted}
        for key in gone:
            del self.pending[key]
        self.last = {k: e for k, e in self.last.items() if k in wanted}
        return gone

    def report(self) -> HandoverReport:
        now = self._clock()
        return HandoverReport(
            counts={"asked": self.asked, "received": self.received, "refused": self.refused,
                    "granted": self.handed_over},
            pending=tuple((k, now - sent) for k, sent in sorted(self.pending.items())),
            last=tuple((k, e, now - e.at) for k, e in sorted(self.last.items(), key=lambda ke: -ke[1].at)))

    def plan(self, key: LeaseKey, record: LeaseRecord, step: Step, now: float) -> Step:
        """The elector's step for `key`, adjusted for preference; queues a request or a handover."""
        rank = self.ranks.get(key)
        step = deferred(step, record, rank, self.timing, now)
        if key in self.pending:
            outcome = request_outcome(record, identity=self.identity, sent_at=self.pending[key],
                                      patience=request_patience(self.timing), now=now)
            if outcome is Outcome.WAITING:
                return step
            del self.pending[key]
            self.last[key] = HandoverEvent(outcome.value if outcome is Outcome.REFUSED else "received", None, now)
            if outcome is Outcome.GRANTED:
                self.received += 1
                log.info("lease %s handed over to us", key)
                return step
            self.refused += 1
            if key in self.ready_since:
                self.ready_since[key] = now  # not granted: a whole hold-down before asking again
            return step
        if record.holder == self.identity and (to := handover_target(record, rank, self.identity)) is not None:
            self._work.append(lambda: self._hand_over(key, record, to))
            return Step.WAIT
        if step is Step.WAIT and rank is not None and should_request(
                record, rank, identity=self.identity, ready_since=self.ready_since.get(key),
                holddown=self.holddown, timing=self.timing, now=now):
            self._work.append(lambda: self._request(key, record, rank))
        return step

    def take_work(self) -> list[Callable[[], Awaitable[None]]]:
        work, self._work = self._work, []
        return work

    async def poll(self) -> bool:
        """Read each Lease we asked for; True once one names us (the elector renews it at once)."""
        granted = False
        for key in list(self.pending):
            record = self._records.get(key)
            if record is None:
                continue
            self.requests += 1
            try:
                lease = await self._client.get(Lease, key.name, namespace=key.namespace)
            except Exception as exc:  # noqa: BLE001 (a failed poll is retried; the cycle reports failures)
                log.debug("polling lease %s: %s", key, describe(exc))
                continue
            record.observe(dict(lease), self._clock())
            granted = granted or record.holder == self.identity
        return granted

    async def withdraw(self, key: LeaseKey, record: LeaseRecord) -> bool:
        """Take back our request on a Lease we no longer contend for; False on a conflict (re-read, retry)."""
        pending = request_of(record)
        if not record.exists or pending is None or pending[0] != self.identity:
            return True
        self.requests += 1
        try:
            written = await self._client.replace(
                Lease(lease_body(key, record, record.spec, without_request(record.annotations))),
                namespace=key.namespace)
        except Exception as exc:
            if classify(exc) is ApiFailure.NOT_FOUND:
                return True
            if classify(exc) is ApiFailure.CONFLICT:
                record.resource_version = None
                return False
            raise
        record.observe(dict(written), self._clock())
        return True

    async def _request(self, key: LeaseKey, record: LeaseRecord, rank: Rank) -> None:
        self.requests += 1
        sent = self._clock()
        try:
            written = await self._client.replace(
                Lease(lease_body(key, record, record.spec, request_annotations(record.annotations, self.identity,
                                                                               rank))),
                namespace=key.namespace)
        except Exception as exc:
            if classify(exc) in (ApiFailure.CONFLICT, ApiFailure.NOT_FOUND):
                return  # the Lease moved meanwhile: the next cycle looks again
            raise
        record.observe(dict(written), sent)
        self.pending[key] = sent
        self.asked += 1
        log.info("asked %s for lease %s (score %d over %d)", record.holder, key, rank.score, holder_score(record))

    async def _hand_over(self, key: LeaseKey, record: LeaseRecord, to: str) -> None:
        record.renewed_at = None  # withdraw first: from here on this node does not count the Lease as held
        self._dropped()
        if self._withdrawn is not None and not await self._wait_withdrawn(time.time()):
            log.warning("lease %s: the dataplane did not withdraw within %.1fs; not handing over",
                        key, self.timing.renew_deadline)
            self._wake()  # still ours: renewed at once, which refuses the request (it waits a hold-down again)
            return
        pending = request_of(record)
        stamp = micro_time()
        spec = {**record.spec, "holderIdentity": to, "renewTime": stamp, "acquireTime": stamp,
                "leaseTransitions": int(record.spec.get("leaseTransitions") or 0) + 1}
        self.requests += 1
        try:
            written = await self._client.replace(
                Lease(lease_body(key, record, spec, handed_over_annotations(
                    record.annotations, 0 if pending is None else pending[1]))),
                namespace=key.namespace)
        except Exception:
            self._wake()  # the Lease moved (or the API failed): look again now, and renew if still ours
            raise
        record.observe(dict(written), self._clock())
        self.handed_over += 1
        self.last[key] = HandoverEvent("granted", to, self._clock())
        log.info("handed lease %s over to %s", key, to)

    async def _wait_withdrawn(self, since: float) -> bool:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.timing.renew_deadline  # a BGP withdraw reconfigures a speaker: allow time
        while not (self._withdrawn is not None and self._withdrawn(since)):
            if loop.time() >= deadline:
                return False
            await asyncio.sleep(0.005)
        return True
