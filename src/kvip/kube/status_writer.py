"""Writes `status.loadBalancer.ingress` of the Services this node advertises — only when it differs.

kube-vip rewrote Service status constantly (kube-vip #627), waking every controller that watches
Services. Here a write happens only when the VIPs a service asks for (annotation or spec) are not what
its status already says; anycast nodes all compute the same value, so after the first write the
difference is gone everywhere and nobody writes again. Best effort: a failure is logged once and never
touches routes.

The watch event a write causes must not wake a whole pass either (at 10,000 Services with no status yet,
each write's own event re-ran everything: quadratic first sync). `settled_by_status` is the rule the
Service reflector uses to recognise such an event.

Each pass compares only what may have changed since the last (kvip issue #21: 22 ms per pass at 10,000):
the Services whose decision or whose view differs from the previous pass's, found by identity (the
incremental decide() and the cache hand unchanged ones over as the very same objects), plus every Service
still unsettled (queued, waiting for its echo, skipped on a full queue). The rest were settled last time
with the same inputs, and the comparison is a pure function of those inputs: the answer is the same as
comparing everything.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Collection, Mapping
from dataclasses import replace

from lightkube import AsyncClient

from kvip.core.advertised_by import ANNOTATION as ADVERTISED_BY
from kvip.core.incremental import changed_keys
from kvip.core.model import DesiredState, ServiceKey, ServiceView
from kvip.core.vips import service_vips
from kvip.kube.errors import describe
from kvip.kube.resources import Service

log = logging.getLogger("kvip.status")


def wanted_ingress(service: ServiceView, vips: tuple[str, ...]) -> tuple[str, ...] | None:
    """The ingress list the status should carry, or None when it already does."""
    if not vips or tuple(service.ingress_ips) == vips:
        return None
    return vips


def settled_by_status(old: ServiceView | None, new: ServiceView) -> bool:
    """Whether `old` → `new` changes nothing a reconcile pass would act on.

    True when the two differ only in resourceVersion, or also in a status ingress that now lists exactly
    the VIPs the Service asks for (the status this writer writes, whether we or an anycast peer wrote it)
    while the VIPs decide() reads stay the same — the ingress is not their source. Then decide() gives
    the same answer and the writer has nothing left to write. Anything else (spec, annotations, an
    ingress somebody set to other addresses, an ingress that *is* the VIP source) is a change.
    Conservative with a VIP allow-list: a write of fewer VIPs than asked for still wakes one pass. A change
    of `kvip.io/advertised-by` alone is quiet too.
    """
    if old is None or replace(old, ingress_ips=new.ingress_ips, resource_version=new.resource_version,
                              annotations=_read_annotations(new)) != replace(new, annotations=_read_annotations(new)):
        return False
    if _read_annotations(old) != _read_annotations(new):
        return False
    if old.ingress_ips == new.ingress_ips:
        return True
    vips = service_vips(new)
    return vips == service_vips(old) and new.ingress_ips == tuple(str(v) for v in vips[0])


def _read_annotations(view: ServiceView) -> dict[str, str]:
    """The annotations a pass reads: all but `kvip.io/advertised-by`, which only its writer reads (on its
    own schedule), so the echo of writing it wakes no pass on any node."""
    return {k: v for k, v in view.annotations.items() if k != ADVERTISED_BY}


# Seconds a written status may take to come back through the watch before it is written again: a
# pass that runs between our PATCH and its watch event must not write the same status twice.
ECHO_WAIT = 10.0
# PATCHes in flight at once. One at a time, a round trip each, 10,000 Services without status took
# over a minute to write; each Service still has one writer (keys are sharded), so writes of one
# Service never overtake each other.
WRITERS = 8


class ServiceStatusWriter:
    def __init__(self, client: AsyncClient, *, clock: Callable[[], float] = time.monotonic) -> None:
        self._client = client
        self._clock = clock
        self._queues: list[asyncio.Queue[tuple[ServiceKey, tuple[str, ...]]]] = [
            asyncio.Queue(maxsize=10_000) for _ in range(WRITERS)]
        self._queued: set[tuple[ServiceKey, tuple[str, ...]]] = set()
        # What we wrote and when, oldest first, until the cache shows it (its event is quiet: see
        # settled_by_status) or ECHO_WAIT has passed (then it counts for nothing: `_forget_written`).
        self._written: dict[ServiceKey, tuple[tuple[str, ...], float]] = {}
        self._warned = False
        self.writes = 0
        self._decisions: Mapping[ServiceKey, object] = {}  # what the previous report saw
        self._services: Mapping[ServiceKey, ServiceView] = {}
        # Status still differs (queued, echo due, queue full). A dict as a set: 10,000 keys in a set
        # take a 512 KiB table, in a dict 300 KiB (kvip issue #21); the keys are the cache's own.
        self._unsettled: dict[ServiceKey, None] = {}
        self.compared = 0  # Services compared by the last report (tests, bench)

    def report(self, state: DesiredState, services: Mapping[ServiceKey, ServiceView],
               changed: Collection[ServiceKey] | None = None) -> None:
        """`services`: a mapping that is not changed in place afterwards (a cache snapshot's). `changed`:
        the Services whose decision differs from the previous pass's, when the reconciler knows them (it
        compared the decisions already: comparing them again cost ~1 ms a pass at 10,000)."""
        decided = changed_keys(self._decisions, state.decisions) if changed is None else set(changed)
        keys = decided | changed_keys(self._services, services)
        keys.update(self._unsettled)
        self._decisions, self._services = state.decisions, services
        self.compared = len(keys)
        now = self._clock()
        for key in keys:
            decision, service = state.decisions.get(key), services.get(key)
            if decision is None or service is None or not decision.advertised:
                self._unsettled.pop(key, None)
                continue
            want = wanted_ingress(service, tuple(str(v) for v in decision.vips))
            if want is None:
                self._written.pop(key, None)
                self._unsettled.pop(key, None)
                continue
            self._unsettled[key] = None
            queue = self._queues[hash(key) % WRITERS]
            if (key, want) in self._queued or queue.full() or self._echo_due(key, want, now):
                continue
            self._queued.add((key, want))
            queue.put_nowait((key, want))
        # A dict or set never shrinks its table: once a burst is settled, new empty ones free it.
        if not self._unsettled:
            self._unsettled = {}
        if not self._written:
            self._written = {}

    def _forget_written(self) -> None:
        """Drop the writes made ECHO_WAIT ago or earlier, which `_echo_due` no longer counts: after a
        first sync of 10,000 Services their echoes are quiet (no pass runs to settle them), and each held
        its ingress until the next pass. Oldest first, as the dict is in write order."""
        now, expired = self._clock(), []
        for key, (_, at) in self._written.items():
            if now - at < ECHO_WAIT:
                break
            expired.append(key)
        for key in expired:
            del self._written[key]
        if not self._written:
            self._written = {}

    def _echo_due(self, key: ServiceKey, want: tuple[str, ...], now: float) -> bool:
        written = self._written.get(key)
        return written is not None and written[0] == want and now - written[1] < ECHO_WAIT

    async def run(self) -> None:
        async with asyncio.TaskGroup() as group:
            for queue in self._queues:
                group.create_task(self._write_from(queue))
            group.create_task(self._forget_written_every_echo_wait())

    async def _forget_written_every_echo_wait(self) -> None:
        while True:
            await asyncio.sleep(ECHO_WAIT)
            self._forget_written()

    async def _write_from(self, queue: asyncio.Queue[tuple[ServiceKey, tuple[str, ...]]]) -> None:
        while True:
            key, ingress = await queue.get()
            try:
                patch = {"status": {"loadBalancer": {"ingress": [{"ip": ip} for ip in ingress]}}}
                await self._client.patch(Service.Status, key.name, patch, namespace=key.namespace)
                self.writes += 1
                if len(self._written) > 200_000:
                    self._written.clear()
                self._written.pop(key, None)  # (re-inserted at the end: the dict stays in write order)
                self._written[key] = (ingress, self._clock())
                self._forget_written()
                self._warned = False
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                if not self._warned:
                    log.warning("cannot write status of %s (%s); routes are unaffected", key, describe(exc))
                    self._warned = True
            finally:
                self._queued.discard((key, ingress))
                if not self._queued:
                    self._queued = set()  # (frees the table a burst grew)
