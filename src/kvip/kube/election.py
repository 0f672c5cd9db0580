"""Lease-based leader election for many leases at once: one loop per node, fenced by time.

Owns the Leases this node contends for and nothing else; it never decides what to advertise.
Leadership leaves here only as `held()`, a set computed on read: a lease counts as held only while
our last successful acquire/renew is younger than `renew_deadline`. Other nodes take a lease only
`lease_duration` after *they* last saw it change (client-go's rule: never compare clocks across
machines), and renew_deadline < lease_duration, so a node that cannot reach the API stops
advertising before any other node can start. The rules themselves live in `election_rules`.

Costs at N leases per node: one LIST per namespace per retry period to observe holders, plus a
write only to create, take over, renew (every `LeaseTiming.renew_after`, not every period) or
release, at most CONCURRENCY in flight.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping
from typing import Any

from lightkube import AsyncClient

from kvip.core.election_rules import (
    ElectionConfigError,
    LeaseKey,
    LeaseRecord,
    LeaseState,
    LeaseTiming,
    Step,
    fence_ends_at,
    is_expired,
    is_fenced_holder,
    lease_order,
    next_step,
    service_lease_key,
    spread_delay,
    takeover_delay,
)
from kvip.core.preference import Rank, holder_annotations
from kvip.kube.client import (
    ApiEndpoint,
    BootstrapCredentials,
    local_endpoint,
    make_client,
)
from kvip.kube.errors import ApiFailure, classify, describe
from kvip.kube.handover import DEFAULT_HOLDDOWN, POLL_PERIOD, Handovers, micro_time
from kvip.kube.resources import Lease
from kvip.runtime.tasks import wait_event

__all__ = ["CONCURRENCY", "ElectionConfigError", "LeaseElector", "LeaseKey", "LeaseState", "LeaseTiming",
           "agent_clients", "elector_client", "local_endpoint", "micro_time", "request_timeout", "service_lease_key"]

log = logging.getLogger("kvip.election")

CONCURRENCY = 32
RELEASE_ATTEMPTS = 3


def request_timeout(timing: LeaseTiming) -> float:
    """How long one elector request may take: half of what is left between renewing (at
    `renew_after`) and the renew deadline, so a request that hangs still leaves time for another."""
    return max(0.5, (timing.renew_deadline - timing.renew_after) / 2)


def elector_client(kubeconfig: str | None, timing: LeaseTiming,
                   credentials: BootstrapCredentials | None = None, server: str | None = None) -> AsyncClient:
    """The elector's own client: its own connection pool, so renewals never queue behind the agent's
    list/watch and status traffic (kube-vip #1316), and its own timeouts, bounded by the Lease timing
    (Lease lists are small; the shared client allows 30 s reads for big Service lists)."""
    seconds = request_timeout(timing)
    return make_client(kubeconfig, request_timeout=seconds, read_timeout=seconds, credentials=credentials,
                       server=server)


def agent_clients(api: ApiEndpoint, timing: LeaseTiming) -> tuple[AsyncClient, AsyncClient]:
    """An agent's two clients: the shared one (list/watch, status, Events) and the elector's. One
    bootstrap fall-back (super-admin.conf) is shared by both; the elector's own pool and timeouts keep
    renewals from queueing behind list/watch traffic (kube-vip #1316)."""
    credentials = BootstrapCredentials.for_kubeconfig(api.kubeconfig, api.server)
    return (make_client(api.kubeconfig, credentials=credentials, server=api.server),
            elector_client(api.kubeconfig, timing, credentials, api.server))


class LeaseElector:
    """Contends for the leases `want()` names, as `identity`, in one loop (`run()`); the agent reads
    `held()` and is told through `on_change` whenever that set changes. `clock` is for tests."""

    def __init__(self, client: AsyncClient, *, identity: str, timing: LeaseTiming,
                 on_change: Callable[[], None], clock: Callable[[], float] = time.monotonic,
                 holddown: float = DEFAULT_HOLDDOWN, withdrawn: Callable[[float], bool] | None = None) -> None:
        self._client = client
        self.identity = identity
        self.timing = timing
        self._on_change = on_change
        self._clock = clock
        self._wanted: frozenset[LeaseKey] = frozenset()
        self._records: dict[LeaseKey, LeaseRecord] = {}
        self._to_release: set[LeaseKey] = set()
        self._reported: frozenset[LeaseKey] = frozenset()
        self._wake = asyncio.Event()
        self._failing = False
        self.requests = 0  # API requests sent, for the benchmark and metrics
        # kvip.io/preferred-nodes: `withdrawn(t)` says a dataplane pass started at wall time t has completed.
        self.handovers = Handovers(client, identity=identity, timing=timing, holddown=holddown, records=self._records,
                                   clock=clock, dropped=self._report, wake=self._wake.set, withdrawn=withdrawn)

    @property
    def client(self) -> AsyncClient:
        """The client the elector's requests go out on (its own in an agent: see `elector_client`)."""
        return self._client

    # -- what the agent sees -------------------------------------------------------------------

    def want(self, leases: Iterable[LeaseKey], ranks: Mapping[LeaseKey, Rank] | None = None) -> None:
        """Contend for exactly these leases from now on; any other we hold is released at once (and a
        handover we asked for taken back). `ranks`: this node's kvip.io/preferred-nodes standing."""
        wanted = frozenset(leases)
        for key in self.handovers.update(wanted, ranks or {}):
            self._to_release.add(key)
            self._wake.set()
        if wanted == self._wanted:
            return
        for key in self._wanted - wanted:
            record = self._records.get(key)
            if record is not None and (record.renewed_at is not None or record.holder == self.identity):
                record.renewed_at = None  # stops counting as held before the release is even sent
                self._to_release.add(key)
        self._to_release -= wanted
        self._wanted = wanted
        self._wake.set()
        self._report()

    def held(self) -> frozenset[LeaseKey]:
        now = self._clock()
        return frozenset(key for key in self._wanted
                         if (r := self._records.get(key)) is not None and is_fenced_holder(r, self.timing, now))

    def status(self) -> dict[LeaseKey, LeaseState]:
        now = self._clock()
        return {key: r.snapshot(key in self._wanted and is_fenced_holder(r, self.timing, now))
                for key, r in self._records.items()}

    # -- the loop --------------------------------------------------------------------------------

    async def run(self) -> None:
        async with asyncio.TaskGroup() as group:
            group.create_task(self._work_loop(), name="elector-work")
            group.create_task(self._fence_loop(), name="elector-fence")

    async def _work_loop(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            self._wake.clear()
            started = loop.time()
            try:
                await self.cycle()
            except asyncio.CancelledError:
                raise
            except Exception:  # a bug here must not end elections; the fence keeps us safe meanwhile
                log.exception("election cycle failed")
            self._report()
            # Fixed rate, not fixed delay: a long cycle (1,000 renewals) must not stretch the period,
            # or the retries left before the renew deadline shrink.
            # While a handover we asked for is pending, read its Lease every POLL_PERIOD: the gap is one poll.
            while (wait := started + self.timing.retry_period - loop.time()) > 0:
                asking = bool(self.handovers.pending)
                if await wait_event(self._wake, min(wait, POLL_PERIOD) if asking else wait):
                    break
                if asking and await self.handovers.poll():
                    break

    async def _fence_loop(self) -> None:
        """Reports a lease lost by time alone at the instant the fence drops it, even while a
        request of the work loop hangs on an unreachable API."""
        while True:
            self._report()
            now = self._clock()
            wake_in = self.timing.retry_period
            for key in self._reported:
                record = self._records.get(key)
                ends = None if record is None else fence_ends_at(record, self.timing)
                if ends is not None:
                    wake_in = min(wake_in, ends - now)
            await asyncio.sleep(max(0.001, wake_in + 0.001))

    async def cycle(self) -> None:
        """One pass: send pending releases, observe every wanted namespace, then create, acquire or
        renew what `next_step` says. Failures are logged once per change; the fence keeps us safe."""
        failures: list[BaseException] = []
        gate = asyncio.Semaphore(CONCURRENCY)

        async def bounded(work: Callable[[], Awaitable[None]]) -> None:
            async with gate:
                try:
                    await work()
                except asyncio.CancelledError:
                    raise
                except Exception as exc:
                    failures.append(exc)

        async def release(key: LeaseKey) -> None:
            try:
                await self._release(key)
            except Exception:
                if key not in self._wanted:
                    self._to_release.add(key)  # still ours as far as we know: try again next cycle
                raise

        releases, self._to_release = sorted(self._to_release), set()
        await asyncio.gather(*(bounded(lambda k=k: release(k)) for k in releases))
        wanted = self._wanted
        namespaces = sorted({k.namespace for k in wanted})
        seen: dict[str, dict[str, dict[str, Any]]] = {}
        await asyncio.gather(*(bounded(lambda ns=ns: self._observe(ns, seen)) for ns in namespaces))
        now = self._clock()
        steps: list[tuple[LeaseKey, Step]] = []
        # Load: wanted leases held per node as just listed, ours counting those we take this cycle; a
        # node holding an expired lease is gone (or cut off) and does not count as a contender.
        load: dict[str, int] = {}
        gone: set[str] = set()
        for key in wanted:
            record = self._records.setdefault(key, LeaseRecord(changed_at=now))
            if key.namespace in seen:
                record.observe(seen[key.namespace].get(key.name), now)
                if record.holder != self.identity:
                    record.renewed_at = None
            if record.exists and record.holder is not None:
                load[record.holder] = load.get(record.holder, 0) + 1
                if record.holder != self.identity and is_expired(record, self.timing, now):
                    gone.add(record.holder)
        load = {node: count for node, count in load.items() if node not in gone}
        mine = load.pop(self.identity, 0)
        for key in sorted(wanted, key=lambda k: lease_order(self.identity, k, self._records[k].exists)):
            record = self._records[key]
            if key.namespace not in seen and not (record.exists and record.holder == self.identity):
                continue  # namespace unreadable: only a renewal is safe blind (the resourceVersion guards it)
            step = next_step(record, identity=self.identity, timing=self.timing, now=now,
                             spread=0.0 if record.exists else spread_delay(
                                 self.identity, key, self.timing, held=mine, others=load, wanted=len(wanted)),
                             takeover=takeover_delay(self.timing, held=mine, others=load, wanted=len(wanted)))
            step = self.handovers.plan(key, record, step, now)  # preference: defer, ask, or hand over
            if step is not Step.WAIT:
                steps.append((key, step))
                mine += step is not Step.RENEW
        # Renewals first, most overdue first: protecting what we hold beats taking more.
        steps.sort(key=lambda ks: (ks[1] is not Step.RENEW, self._records[ks[0]].renewed_at or 0.0))
        await asyncio.gather(*(bounded(lambda k=k, s=s: self._write(k, s)) for k, s in steps))
        await asyncio.gather(*(bounded(work) for work in self.handovers.take_work()))
        self._note(failures)
        self._forget_unwanted()

    async def release_all(self) -> None:
        """Clean stop: stop contending and clear holderIdentity on every lease we hold, so other
        nodes take over within one retry period instead of waiting for lease_duration."""
        self._wanted, self._to_release = frozenset(), set()
        mine = sorted(k for k, r in self._records.items()
                      if r.renewed_at is not None or (r.exists and r.holder == self.identity))
        for key in mine:
            self._records[key].renewed_at = None
        self._report()
        gate = asyncio.Semaphore(CONCURRENCY)

        async def bounded(key: LeaseKey) -> None:
            async with gate:
                await self._release(key)

        results = await asyncio.gather(*(bounded(k) for k in mine), return_exceptions=True)
        failed = [r for r in results if isinstance(r, BaseException)]
        if failed:
            log.warning("could not release %d lease(s) on stop (%s); they expire after %.1fs",
                        len(failed), describe(failed[0]), self.timing.lease_duration)

    # -- requests --------------------------------------------------------------------------------

    async def _observe(self, namespace: str, seen: dict[str, dict[str, dict[str, Any]]]) -> None:
        self.requests += 1
        found: dict[str, dict[str, Any]] = {}
        async for lease in self._client.list(Lease, namespace=namespace):
            found[(lease.get("metadata") or {}).get("name", "")] = dict(lease)
        seen[namespace] = found

    async def _write(self, key: LeaseKey, step: Step) -> None:
        record = self._records[key]
        stamp = micro_time()
        spec = dict(record.spec)
        spec.update({"holderIdentity": self.identity, "leaseDurationSeconds": self.timing.lease_seconds,
                     "renewTime": stamp})
        if step is not Step.RENEW:
            spec["acquireTime"] = stamp
            if step is Step.ACQUIRE:
                spec["leaseTransitions"] = int(spec.get("leaseTransitions") or 0) + 1
            else:
                spec["leaseTransitions"] = 0
        body = {"apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
                "metadata": {"name": key.name, "namespace": key.namespace,
                             "annotations": holder_annotations(record.annotations, self.handovers.ranks.get(key))},
                "spec": spec}
        self.requests += 1
        # The fence counts from when we *sent* the write: others can only have seen it later.
        sent = self._clock()
        try:
            if step is Step.CREATE:
                written = await self._client.create(Lease(body), namespace=key.namespace)
            else:
                body["metadata"]["resourceVersion"] = record.resource_version
                written = await self._client.replace(Lease(body), namespace=key.namespace)
        except Exception as exc:
            if step is Step.RENEW and classify(exc) is ApiFailure.CONFLICT:
                await self._refresh(key, record)  # a handover request annotated it? Then it is still ours:
                if record.holder == self.identity:  # keep counting it (fenced) and look again at once
                    self._wake.set()
                    return
            if classify(exc) in (ApiFailure.CONFLICT, ApiFailure.NOT_FOUND):
                record.renewed_at = None  # someone else moved first (or it was deleted): not ours
                return
            # 403, 5xx, timeouts: keep retrying; a transient error must not drop leadership (and
            # the VIP) early, and the fence ends it at the renew deadline if the errors persist.
            raise
        record.observe(dict(written), sent)
        if key not in self._wanted:
            self._to_release.add(key)  # unwanted while the write was in flight: give it back
            self._wake.set()
            return
        record.renewed_at = sent
        if step is not Step.RENEW:
            record.transitions += 1
            log.info("acquired lease %s", key)

    async def _release(self, key: LeaseKey) -> None:
        record = self._records.get(key)
        if record is None:
            return
        for _ in range(RELEASE_ATTEMPTS):
            if record.resource_version is None:
                await self._refresh(key, record)
            if not record.exists or record.holder != self.identity:
                if await self.handovers.withdraw(key, record):  # a handover request of ours is taken back
                    return
                continue
            spec = {**record.spec, "holderIdentity": None, "leaseDurationSeconds": 1, "renewTime": micro_time()}
            body = {"apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
                    "metadata": {"name": key.name, "namespace": key.namespace,
                                 "annotations": holder_annotations(record.annotations, None),
                                 "resourceVersion": record.resource_version}, "spec": spec}
            self.requests += 1
            try:
                written = await self._client.replace(Lease(body), namespace=key.namespace)
            except Exception as exc:
                if classify(exc) is ApiFailure.NOT_FOUND:
                    return
                if classify(exc) is not ApiFailure.CONFLICT:
                    raise
                # A renewal of ours may have landed after we read the lease: re-read and retry.
                record.resource_version = None
                continue
            record.observe(dict(written), self._clock())
            log.info("released lease %s", key)
            return

    async def _refresh(self, key: LeaseKey, record: LeaseRecord) -> None:
        self.requests += 1
        try:
            lease = await self._client.get(Lease, key.name, namespace=key.namespace)
        except Exception as exc:
            if classify(exc) is not ApiFailure.NOT_FOUND:
                raise
            record.observe(None, self._clock())
            return
        record.observe(dict(lease), self._clock())

    def _forget_unwanted(self) -> None:
        """Services come and go: keep records only for leases we want or still have to give back."""
        for key in [k for k in self._records if k not in self._wanted and k not in self._to_release]:
            record = self._records[key]
            if not (record.exists and record.holder == self.identity):
                del self._records[key]

    # -- reporting -------------------------------------------------------------------------------

    def _note(self, failures: list[BaseException]) -> None:
        if failures and not self._failing:
            log.warning("lease API failing (%s, %d request(s)); leadership ends at the renew deadline",
                        describe(failures[0]), len(failures))
        elif not failures and self._failing:
            log.info("lease API reachable again")
        self._failing = bool(failures)

    def _report(self) -> None:
        held = self.held()
        if held != self._reported:
            self._reported = held
            self._on_change()
