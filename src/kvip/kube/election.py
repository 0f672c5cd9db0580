"""Lease-based leader election for many leases at once: one loop per node, fenced by time.

Owns the Leases this node contends for and nothing else. Leadership leaves here only as
`held()`, a set computed on read: a lease counts as held only while our last successful
acquire/renew is younger than `renew_deadline`. Other nodes take a lease only `lease_duration`
after *they* last saw it change (client-go's rule: never compare clocks across machines), and
renew_deadline < lease_duration, so a node that cannot reach the API stops advertising before any
other node can start. That is the bound the tests check.

Costs at N leases per node: one LIST per namespace per retry period to observe holders, plus a
write only to create, take over, renew (every renew_deadline/2, not every period) or release.
"""

from __future__ import annotations

import asyncio
import hashlib
import datetime as dt
import logging
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from lightkube import AsyncClient

from kvip.kube.errors import ApiFailure, classify, describe
from kvip.kube.resources import Lease
from kvip.model import ServiceKey

log = logging.getLogger("kvip.election")

CONCURRENCY = 32


class ElectionConfigError(ValueError):
    """Lease timing that cannot give the fencing guarantee."""


@dataclass(frozen=True)
class LeaseTiming:
    lease_duration: float = 15.0
    renew_deadline: float = 10.0
    retry_period: float = 2.0

    def __post_init__(self) -> None:
        if not 0 < self.retry_period < self.renew_deadline < self.lease_duration:
            raise ElectionConfigError(
                f"need 0 < retry period ({self.retry_period}) < renew deadline ({self.renew_deadline}) "
                f"< lease duration ({self.lease_duration})")


@dataclass(frozen=True, order=True)
class LeaseKey:
    namespace: str
    name: str

    def __str__(self) -> str:
        return f"{self.namespace}/{self.name}"


def service_lease_key(service: ServiceKey) -> LeaseKey:
    """kube-vip's per-service lease: `kubevip-<service>` in the service's namespace."""
    return LeaseKey(service.namespace, f"kubevip-{service.name}")


@dataclass
class LeaseState:
    holder: str | None = None
    renew_time: str | None = None
    changed_at: float = 0.0  # local clock when (holder, renew_time) last changed
    resource_version: str | None = None
    spec: dict[str, Any] = field(default_factory=dict)
    ours_since_renew: float | None = None  # local clock of our last successful write
    transitions: int = 0


def micro_time(now: dt.datetime | None = None) -> str:
    return (now or dt.datetime.now(dt.timezone.utc)).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


class LeaseElector:
    def __init__(self, client: AsyncClient, *, identity: str, timing: LeaseTiming,
                 on_change: Callable[[], None], clock: Callable[[], float] = time.monotonic) -> None:
        self._client = client
        self.identity = identity
        self.timing = timing
        self._on_change = on_change
        self._clock = clock
        self._wanted: frozenset[LeaseKey] = frozenset()
        self._states: dict[LeaseKey, LeaseState] = {}
        self._to_release: set[LeaseKey] = set()
        self._reported: frozenset[LeaseKey] = frozenset()
        self._wake = asyncio.Event()
        self._failing = False
        self.requests = 0

    # -- what the agent sees -------------------------------------------------------------------

    def want(self, leases: Iterable[LeaseKey]) -> None:
        wanted = frozenset(leases)
        if wanted == self._wanted:
            return
        for key in self._wanted - wanted:
            state = self._states.get(key)
            if state is not None and state.ours_since_renew is not None:
                state.ours_since_renew = None  # stops counting as held at once
                self._to_release.add(key)
        self._wanted = wanted
        self._wake.set()

    def held(self) -> frozenset[LeaseKey]:
        now = self._clock()
        return frozenset(
            key for key, s in self._states.items()
            if key in self._wanted and s.ours_since_renew is not None
            and now - s.ours_since_renew < self.timing.renew_deadline
        )

    def status(self) -> Mapping[LeaseKey, LeaseState]:
        return dict(self._states)

    # -- the loop --------------------------------------------------------------------------------

    async def run(self) -> None:
        async with asyncio.TaskGroup() as group:
            group.create_task(self._work_loop(), name="elector-work")
            group.create_task(self._fence_loop(), name="elector-fence")

    async def _work_loop(self) -> None:
        while True:
            try:
                await self.cycle()
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # the fence keeps us safe; keep trying
                self._note_failure(exc)
            self._report()
            self._wake.clear()
            try:
                await asyncio.wait_for(self._wake.wait(), self.timing.retry_period)
            except asyncio.TimeoutError:
                pass

    async def _fence_loop(self) -> None:
        """Reports a lease lost by time alone exactly when the fence drops it, even while a request
        of the work loop hangs on an unreachable API."""
        while True:
            self._report()
            now = self._clock()
            wake_in = self.timing.retry_period / 4
            for key in self._reported:
                renewed = self._states[key].ours_since_renew
                if renewed is not None:
                    wake_in = min(wake_in, renewed + self.timing.renew_deadline - now)
            await asyncio.sleep(max(0.001, wake_in + 0.001))

    async def cycle(self) -> None:
        gate = asyncio.Semaphore(CONCURRENCY)
        releases = list(self._to_release)
        self._to_release.clear()
        await asyncio.gather(*(self._guarded(gate, self._release(k)) for k in releases))
        wanted = self._wanted
        if not wanted:
            return
        observed = await self._observe({k.namespace for k in wanted})
        await asyncio.gather(*(self._guarded(gate, self._contend(k, observed.get(k))) for k in sorted(wanted)))
        if self._failing:
            self._failing = False
            log.info("lease API reachable again")

    async def release_all(self) -> None:
        """Clean stop: clear holderIdentity on every lease we hold, so others take over at once."""
        mine = [k for k, s in self._states.items() if s.ours_since_renew is not None]
        for key in mine:
            self._states[key].ours_since_renew = None
        gate = asyncio.Semaphore(CONCURRENCY)
        await asyncio.gather(*(self._guarded(gate, self._release(k)) for k in mine), return_exceptions=True)
        self._report()

    # -- internals -------------------------------------------------------------------------------

    async def _guarded(self, gate: asyncio.Semaphore, work: Any) -> None:
        async with gate:
            try:
                await work
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                self._note_failure(exc)

    async def _observe(self, namespaces: set[str]) -> dict[LeaseKey, dict[str, Any]]:
        seen: dict[LeaseKey, dict[str, Any]] = {}
        for namespace in sorted(namespaces):
            self.requests += 1
            async for lease in self._client.list(Lease, namespace=namespace):
                meta = lease.get("metadata") or {}
                seen[LeaseKey(namespace, meta.get("name", ""))] = dict(lease)
        now = self._clock()
        for key, lease in seen.items():
            state = self._states.setdefault(key, LeaseState(changed_at=now))
            spec = lease.get("spec") or {}
            holder, renew = spec.get("holderIdentity") or None, spec.get("renewTime")
            if (holder, renew) != (state.holder, state.renew_time):
                state.holder, state.renew_time, state.changed_at = holder, renew, now
            state.resource_version = (lease.get("metadata") or {}).get("resourceVersion")
            state.spec = dict(spec)
        return seen

    async def _contend(self, key: LeaseKey, lease: dict[str, Any] | None) -> None:
        now = self._clock()
        state = self._states.setdefault(key, LeaseState(changed_at=now))
        if lease is None:
            if now - state.changed_at >= self._spread_delay(key):
                await self._write(key, state, create=True)
            return
        if state.holder == self.identity:
            if state.ours_since_renew is None or now - state.ours_since_renew >= self.timing.renew_deadline / 2:
                await self._write(key, state, create=False)
            return
        state.ours_since_renew = None
        expired = now - state.changed_at >= self.timing.lease_duration
        free_for = now - state.changed_at
        if (state.holder is None and free_for >= self._spread_delay(key)) or expired:
            await self._write(key, state, create=False, takeover=True)

    def _spread_delay(self, key: LeaseKey) -> float:
        """A free lease is taken after a delay that differs per (node, lease), so that leaders of
        many services spread over the eligible nodes instead of all going to the fastest one."""
        digest = hashlib.blake2b(f"{self.identity}/{key}".encode(), digest_size=4).digest()
        return int.from_bytes(digest, "big") / 2**32 * 2 * self.timing.retry_period

    async def _write(self, key: LeaseKey, state: LeaseState, *, create: bool, takeover: bool = False) -> None:
        stamp = micro_time()
        spec = dict(state.spec)
        spec.update({"holderIdentity": self.identity, "leaseDurationSeconds": int(self.timing.lease_duration),
                     "renewTime": stamp})
        if create or takeover:
            spec["acquireTime"] = stamp
            spec["leaseTransitions"] = int(spec.get("leaseTransitions") or 0) + (0 if create else 1)
        body = {"apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
                "metadata": {"name": key.name, "namespace": key.namespace}, "spec": spec}
        self.requests += 1
        started = self._clock()
        try:
            if create:
                written = await self._client.create(Lease(body), namespace=key.namespace)
            else:
                body["metadata"]["resourceVersion"] = state.resource_version
                written = await self._client.replace(Lease(body), namespace=key.namespace)
        except Exception as exc:
            if classify(exc) in (ApiFailure.CONFLICT, ApiFailure.NOT_FOUND):
                state.ours_since_renew = None  # someone else moved first; re-read next period
                return
            raise
        # Count the renewal from when we *sent* it: the fence must never outlive the lease others see.
        state.ours_since_renew = started
        state.holder, state.renew_time, state.changed_at = self.identity, stamp, started
        state.resource_version = written["metadata"]["resourceVersion"]
        state.spec = dict(written.get("spec") or spec)
        if create or takeover:
            state.transitions += 1
            log.info("acquired lease %s", key)

    async def _release(self, key: LeaseKey) -> None:
        state = self._states.get(key)
        if state is None or state.holder != self.identity or state.resource_version is None:
            return
        spec = {**state.spec, "holderIdentity": None, "leaseDurationSeconds": 1, "renewTime": micro_time()}
        body = {"apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
                "metadata": {"name": key.name, "namespace": key.namespace,
                             "resourceVersion": state.resource_version}, "spec": spec}
        self.requests += 1
        try:
            await self._client.replace(Lease(body), namespace=key.namespace)
            state.holder = None
            log.info("released lease %s", key)
        except Exception as exc:
            if classify(exc) not in (ApiFailure.CONFLICT, ApiFailure.NOT_FOUND):
                raise

    def _note_failure(self, exc: BaseException) -> None:
        if not self._failing:
            log.warning("lease API failing (%s); leadership ends at the renew deadline", describe(exc))
            self._failing = True

    def _report(self) -> None:
        held = self.held()
        if held != self._reported:
            self._reported = held
            self._on_change()
