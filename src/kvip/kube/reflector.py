"""One list+watch loop per resource kind, keeping a store of converted views.

A Reflector owns exactly one thing: a dict that mirrors one collection of the API server as well
as the API lets it. It never interprets objects (that is `decide`'s job) and never holds per-object
state beyond the converted view. Its contract with the rest of the agent is *level*, not edge:
after any change it calls `on_change()` with no payload, and consumers re-read the whole store.

Lifecycle, repeated forever:
  list → replace the store wholesale → watch from the list's resourceVersion until the resync
  deadline → relist. A full relist every resync period corrects anything a watch ever lost
  (a dropped DELETED event, a broken stream). On 410 Gone we relist at once; on a transport error
  we resume the watch from the last resourceVersion after a backoff; on 401/403 we keep the last
  good store (fail-static), report FORBIDDEN, and retry the *list* with capped backoff, so access
  coming back means a fresh relist and an immediate reconcile.
"""

from __future__ import annotations

import asyncio
import enum
import logging
import time
from collections import Counter
from collections.abc import Callable, Hashable, Mapping
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from lightkube import AsyncClient
from lightkube.core.generic_client import ALL_NS
from lightkube.core.resource import NamespacedResource, Resource

from kvip.kube.errors import ApiFailure, classify, describe, status_code
from kvip.runtime.tasks import Backoff

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")

log = logging.getLogger("kvip.reflector")

# Converts one raw object into (key, view); None means "not ours, forget it" (e.g. a ClusterIP Service).
Converter = Callable[[Mapping[str, Any]], "tuple[K, V] | None"]
KeyOf = Callable[[Mapping[str, Any]], K]


class SourceState(enum.Enum):
    STARTING = "starting"  # never listed successfully
    SYNCED = "synced"  # list succeeded; watch running or about to resume
    DEGRADED = "degraded"  # API unreachable or erroring; store is the last good one
    FORBIDDEN = "forbidden"  # 401/403; store is the last good one


@dataclass(frozen=True)
class SourceStatus:
    resource: str
    state: SourceState
    objects: int
    resource_version: str
    relists: int
    watch_restarts: int
    last_list_at: float | None  # wall clock (time.time()) of the last successful list
    last_ok_monotonic: float | None  # last moment the API answered us for this source
    last_error: str | None
    errors: Mapping[str, int]  # by HTTP status code, or "network" for transport failures


class Reflector(Generic[K, V]):
    def __init__(
        self,
        client: AsyncClient,
        resource: type[Resource],
        *,
        name: str,
        convert: Callable[[Mapping[str, Any]], tuple[K, V] | None],
        key_of: KeyOf[K],
        on_change: Callable[[str], None],
        resync_period: float = 30.0,
        fields: Mapping[str, str] | None = None,
        namespace: str | None = None,  # one namespace only (a Role suffices); None: all namespaces
        watch_timeout: int = 300,
        backoff: Backoff | None = None,
    ) -> None:
        self.name = name
        self.store: dict[K, V] = {}
        self.synced = asyncio.Event()
        self._client = client
        self._resource = resource
        self._convert = convert
        self._key_of = key_of
        self._on_change = on_change
        self._resync_period = resync_period
        self._fields = dict(fields) if fields else None
        self._namespace = namespace
        self._watch_timeout = watch_timeout
        # Never back off longer than half a resync period: access coming back must be noticed
        # well within the period the issue promises convergence in.
        self._backoff = backoff or Backoff(cap=max(0.5, min(10.0, resync_period / 2)))
        self._state = SourceState.STARTING
        self._rv = ""
        self._relists = 0
        self._watch_restarts = 0
        self._last_list_at: float | None = None
        self._last_ok: float | None = None
        self._last_error: str | None = None
        self._errors: Counter[str] = Counter()
        self._relist_requested = asyncio.Event()

    # -- public -------------------------------------------------------------------------------

    @property
    def state(self) -> SourceState:
        return self._state

    def status(self) -> SourceStatus:
        return SourceStatus(
            resource=self.name,
            state=self._state,
            objects=len(self.store),
            resource_version=self._rv,
            relists=self._relists,
            watch_restarts=self._watch_restarts,
            errors=dict(self._errors),
            last_list_at=self._last_list_at,
            last_ok_monotonic=self._last_ok,
            last_error=self._last_error,
        )

    def request_relist(self) -> None:
        """Cut the current watch short and relist (used by the resync timer of tests and `kvip status`)."""
        self._relist_requested.set()

    async def run(self) -> None:
        while True:
            try:
                await self._relist()
                self._backoff.reset()
                await self._watch_until(asyncio.get_running_loop().time() + self._resync_period)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # every API failure lands here; the loop must survive all of them
                await self._sleep_after(exc)

    # -- list ---------------------------------------------------------------------------------

    async def _relist(self) -> None:
        listing = self._client.list(self._resource, namespace=(self._namespace or ALL_NS) if self._namespaced
                                    else None, fields=self._fields)
        fresh: dict[K, V] = {}
        async for obj in listing:
            converted = self._convert(obj)
            if converted is not None:
                fresh[converted[0]] = converted[1]
        self.store = fresh
        self._rv = listing.resourceVersion if _has_rv(listing) else ""
        self._relists += 1
        self._last_list_at = time.time()
        self._mark_ok()
        self._relist_requested.clear()
        self.synced.set()
        self._on_change(self.name)

    # -- watch --------------------------------------------------------------------------------

    async def _watch_until(self, deadline: float) -> None:
        """Watch from self._rv until the deadline or a relist request (then return to relist).

        Returns early on 410 (relist); raises on 401/403 (the caller backs off and relists).
        """
        watching = asyncio.create_task(self._watch_loop(deadline))
        relist = asyncio.create_task(self._relist_requested.wait())
        try:
            await asyncio.wait({watching, relist}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in (watching, relist):
                task.cancel()
            await asyncio.gather(watching, relist, return_exceptions=True)
        if watching.done() and not watching.cancelled() and watching.exception() is not None:
            raise watching.exception()  # type: ignore[misc]

    async def _watch_loop(self, deadline: float) -> None:
        loop = asyncio.get_running_loop()
        while loop.time() < deadline:
            try:
                async with asyncio.timeout_at(deadline):
                    stream = self._client.watch(
                        self._resource,
                        namespace=(self._namespace or ALL_NS) if self._namespaced else None,
                        fields=self._fields,
                        resource_version=self._rv or None,
                        server_timeout=self._watch_timeout,
                    )
                    async for kind, obj in stream:
                        self._apply(kind, obj)
            except TimeoutError:
                return
            except Exception as exc:
                failure = classify(exc)
                if failure is ApiFailure.GONE:
                    log.info("%s: watch history expired at resourceVersion %s, relisting", self.name, self._rv)
                    return
                if failure is ApiFailure.FORBIDDEN:
                    raise
                self._watch_restarts += 1
                self._count_error(exc)
                self._confirm_until_now()
                self._set_state(SourceState.DEGRADED, describe(exc))
                await asyncio.sleep(self._backoff.next_delay())

    def _apply(self, kind: str, obj: Mapping[str, Any]) -> None:
        meta = obj.get("metadata") or {}
        rv = meta.get("resourceVersion")
        if rv:
            self._rv = rv
        self._mark_ok()
        if kind == "BOOKMARK":
            return
        if kind == "DELETED":
            changed = self.store.pop(self._key_of(obj), None) is not None
        else:
            converted = self._convert(obj)
            if converted is None:
                changed = self.store.pop(self._key_of(obj), None) is not None
            else:
                key, view = converted
                changed = self.store.get(key) != view
                self.store[key] = view
        if changed:
            self._on_change(self.name)

    # -- state --------------------------------------------------------------------------------

    @property
    def _namespaced(self) -> bool:
        return _is_namespaced(self._resource)

    def _mark_ok(self) -> None:
        self._last_ok = asyncio.get_running_loop().time()
        self._last_error = None
        self._set_state(SourceState.SYNCED, None)

    def _set_state(self, state: SourceState, error: str | None) -> None:
        if error is not None:
            self._last_error = error
        if state is self._state:
            return
        previous, self._state = self._state, state
        # Logged once per transition, not once per retry: a revoked RBAC rule would otherwise
        # flood the log at the backoff rate.
        level = logging.INFO if state is SourceState.SYNCED else logging.WARNING
        log.log(level, "%s: source %s -> %s%s", self.name, previous.value, state.value,
                f" ({error})" if error else "")

    def _count_error(self, exc: BaseException) -> None:
        code = status_code(exc)
        self._errors[str(code) if code is not None else "network"] += 1

    def _confirm_until_now(self) -> None:
        # An open watch kept the store current until the moment it broke: staleness (on_api_loss)
        # counts from here, not from the last event, which in a quiet cluster may be old.
        if self._state is SourceState.SYNCED:
            self._last_ok = asyncio.get_running_loop().time()

    async def _sleep_after(self, exc: Exception) -> None:
        self._count_error(exc)
        self._confirm_until_now()
        failure = classify(exc)
        state = SourceState.FORBIDDEN if failure is ApiFailure.FORBIDDEN else SourceState.DEGRADED
        self._set_state(state, describe(exc))
        self._on_change(self.name)  # staleness is an input too (on_api_loss policy, metrics)
        await asyncio.sleep(self._backoff.next_delay())


def _has_rv(listing: Any) -> bool:
    try:
        return bool(listing.resourceVersion)
    except Exception:
        return False


def _is_namespaced(resource: type[Resource]) -> bool:
    return issubclass(resource, NamespacedResource)
