"""The one reconcile loop of a node: coalesced triggers → decide → diff against the dataplane → apply.

Owns the trigger queue and the apply/retry policy. Holds no per-service state that the cache
already holds: each pass recomputes the whole desired state (incrementally, proved equal to decide())
and diffs it with what the dataplane holds, so a lost event, a crashed apply or a route deleted behind
our back is repaired by the next pass, whatever caused it. A backend may answer `observe()` from a view
it keeps up to date with its own monitor (kvip issue #21); every pass the resync timer, a retry, a
resync request, the start or a dataplane hint woke makes each backend read everything back (`doubt()`).
The only memory kept between passes is for reporting (last result, last known good endpoint), and
correctness never reads it.
"""

from __future__ import annotations

import gc
import logging
import time
from collections.abc import Awaitable, Callable, Collection, Hashable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from kvip.core.incremental import IdentityMemo, changed_keys
from kvip.core.model import DesiredState, IPAddress, ServiceKey
from kvip.dataplane.base import ApplyError, Dataplane
from kvip.runtime.memory import release_free_memory
from kvip.runtime.tasks import Backoff, Trigger

log = logging.getLogger("kvip.reconcile")


@dataclass(frozen=True)
class BackendDiff:
    backend: str
    added: frozenset[Hashable]
    removed: frozenset[Hashable]
    failed: Mapping[Hashable, str] = field(default_factory=dict)
    # VIPs (by the backend's own `vip_of`) whose add or remove failed: what the dataplane holds
    # still differs from the desired state there.
    vips_not_added: frozenset[IPAddress] = frozenset()
    vips_not_removed: frozenset[IPAddress] = frozenset()


@dataclass(frozen=True)
class ReconcileResult:
    desired: DesiredState
    diffs: tuple[BackendDiff, ...]
    reasons: Mapping[str, int]
    started_at: float  # wall clock
    duration: float  # seconds
    error: str | None = None  # a backend could not even be read
    first_trigger_at: float | None = None  # wall clock of the first trigger this pass served
    # Services whose decision differs from the previous pass's (None: unknown, e.g. the first pass):
    # observers report these, not every Service, on each pass.
    changed_services: frozenset[ServiceKey] | None = None

    @property
    def changed(self) -> bool:
        return any(d.added or d.removed for d in self.diffs)

    @property
    def failed(self) -> int:
        return sum(len(d.failed) for d in self.diffs)

    @property
    def held_vips(self) -> frozenset[IPAddress]:
        """What the dataplane holds after the pass: desired, minus adds that failed, plus removes that failed."""
        held = set(self.desired.vips)
        for diff in self.diffs:
            held -= diff.vips_not_added
            held |= diff.vips_not_removed
        return frozenset(held)


def freeze_long_lived() -> None:
    """After the first synced pass: move everything alive now (the cache, memos, the loaded code) out
    of the collector's sight. Those objects live as long as the agent, and a full collection walked
    all of them again and again (pauses of tens of ms at 10,000 Services). Collected first, so no
    cyclic garbage is frozen; reference counting still frees frozen objects that go away. Then the heap's
    free pages go back to the kernel (docs/decisions.md D21)."""
    started = time.perf_counter()
    gc.collect()
    gc.freeze()
    release_free_memory()
    log.debug("froze %d long-lived objects in %.1f ms", gc.get_freeze_count(), (time.perf_counter() - started) * 1e3)


# Returns the desired state, or None when the cache cannot be trusted yet (never synced): then the
# dataplane is left exactly as it is, which is what makes a restart gap-free.
ComputeDesired = Callable[[], DesiredState | None]
ResultObserver = Callable[[ReconcileResult], None]

# Passes woken only by these cluster inputs may trust what a backend keeps of the dataplane; any other
# reason (the resync timer, a retry, a resync request, the start, a dataplane hint, one unknown here)
# makes every backend read its dataplane back.
INPUT_REASONS = ("source:", "lease", "probe", "dhcp", "drain-window", "apiserver-health", "dns")


def reads_back(reasons: Mapping[str, int] | None) -> bool:
    return not reasons or not all(reason.startswith(INPUT_REASONS) for reason in reasons)


# str() of each VIP, remembered: ipaddress formats (and hashes) in Python, and every pass reports again.
_TEXTS: IdentityMemo[IPAddress, str] = IdentityMemo(str)


def vip_texts(vips: Collection[IPAddress]) -> set[str]:
    return set(_TEXTS(vips))


def reported_vips(result: ReconcileResult) -> tuple[set[str], set[str]]:
    """The VIPs a pass wanted and those the dataplane holds after it, as text (metrics, heartbeat)."""
    desired = vip_texts(result.desired.advertisements)
    if not any(d.vips_not_added or d.vips_not_removed for d in result.diffs):
        return desired, set(desired)  # every change landed: the dataplane holds what was wanted
    return desired, vip_texts(result.held_vips)


class Reconciler:
    def __init__(
        self,
        *,
        compute: ComputeDesired,
        backends: Sequence[Dataplane[Any]],
        trigger: Trigger,
        observers: Sequence[ResultObserver] = (),
        retry_backoff: Backoff | None = None,
    ) -> None:
        self._compute = compute
        self.backends = tuple(backends)
        self.trigger = trigger
        self._observers = list(observers)
        self._retry = retry_backoff or Backoff(initial=0.2, cap=5.0)
        self.last_result: ReconcileResult | None = None
        self.passes = 0
        # The seed's `lastKnownGoodEndpoint`, kept for status and metrics only.
        self.last_known_good_endpoint: dict[ServiceKey, str] = {}

    async def run(self, ready: Awaitable[Any] | None = None) -> None:
        """Forever: wait for a trigger, reconcile once. Waits for `ready` before the first pass."""
        if ready is not None:
            await ready
        self.trigger.fire("start")
        frozen = False
        while True:
            reasons = await self.trigger.wait()
            result = await self.reconcile_once(reasons)
            if result is None:
                continue
            if not frozen:
                freeze_long_lived()
                frozen = True
            if result.failed or result.error:
                self.trigger.fire_later(self._retry.next_delay(), "retry")
            else:
                self._retry.reset()

    async def watch_dataplane(self, backend: Dataplane[Any]) -> None:
        """Turns a backend's change hints into triggers (netlink: tampering repaired at once)."""
        async for _ in backend.changes():
            self.trigger.fire(f"dataplane:{backend.name}")

    async def reconcile_once(self, reasons: Mapping[str, int] | None = None) -> ReconcileResult | None:
        started, t0 = time.time(), time.perf_counter()
        desired = self._compute()
        if desired is None:
            return None
        previous = self.last_result.desired if self.last_result is not None else None
        changed = frozenset(changed_keys(previous.decisions, desired.decisions)) if previous is not None else None
        self._remember_endpoints(desired, changed)
        diffs: list[BackendDiff] = []
        error: str | None = None
        readback = reads_back(reasons)
        for backend in self.backends:
            if readback:
                backend.doubt()
            try:
                diffs.append(await self._converge(backend, desired))
            except Exception as exc:  # noqa: BLE001 (a backend that cannot be read must not stop the others)
                error = f"{backend.name}: {exc}"
                log.error("reconcile: cannot read dataplane %s: %s", backend.name, exc)
        result = ReconcileResult(
            desired=desired,
            diffs=tuple(diffs),
            reasons=dict(reasons or {}),
            started_at=started,
            duration=time.perf_counter() - t0,
            error=error,
            first_trigger_at=self.trigger.last_batch_fired_at if reasons else None,
            changed_services=changed,
        )
        self.passes += 1
        self.last_result = result
        for observer in self._observers:
            observer(result)
        return result

    async def withdraw_all(self) -> int:
        """Remove everything we own from every backend (graceful shutdown)."""
        removed = 0
        for backend in self.backends:
            try:
                backend.doubt()
                owned = await backend.observe()
                if owned:
                    await backend.apply(frozenset(), owned)
                removed += len(owned)
            except Exception as exc:  # noqa: BLE001 (one backend failing must not keep the others announcing)
                log.error("shutdown: could not withdraw from %s: %s", backend.name, exc)
        return removed

    async def _converge(self, backend: Dataplane[Any], desired: DesiredState) -> BackendDiff:
        want = backend.desired(desired)
        have = await backend.observe()
        add, remove = want - have, have - want
        failed: dict[Hashable, str] = {}
        if add or remove:
            try:
                await backend.apply(add, remove)
            except ApplyError as exc:
                failed = dict(exc.failed)
            for item in sorted(add, key=str):
                if item not in failed:
                    log.info("%s: added %s", backend.name, item)
            for item in sorted(remove, key=str):
                if item not in failed:
                    log.info("%s: removed %s", backend.name, item)
            for item, why in failed.items():
                log.warning("%s: could not change %s: %s (will retry)", backend.name, item, why)
        return BackendDiff(backend.name, frozenset(add), frozenset(remove), failed,
                           frozenset(backend.vip_of(item) for item in failed if item in add),
                           frozenset(backend.vip_of(item) for item in failed if item in remove))

    def _remember_endpoints(self, desired: DesiredState, changed: frozenset[ServiceKey] | None) -> None:
        decisions = desired.decisions
        if changed is None:  # everything, once
            self.last_known_good_endpoint = {k: d.local_endpoints[0] for k, d in decisions.items()
                                             if d.local_endpoints}
            return
        for key in changed:  # an unchanged decision keeps its endpoint
            decision = decisions.get(key)
            if decision is None:
                self.last_known_good_endpoint.pop(key, None)
            elif decision.local_endpoints:
                self.last_known_good_endpoint[key] = decision.local_endpoints[0]
