"""One list+watch loop per resource kind, keeping a store of converted views.

A Reflector owns exactly one thing: a dict that mirrors one collection of the API server as well
as the API lets it. It never interprets objects (that is `decide`'s job) and never holds per-object
state beyond the converted view and the object's resourceVersion. Its contract with the rest of the
agent is *level*, not edge: after any change it calls `on_change()` with no payload, and consumers
re-read the whole store.

Lifecycle (kvip issue #21: no periodic full relist):
  list → replace the store wholesale → watch from the list's resourceVersion, with bookmarks, for as
  long as the watch lives. A full relist happens only on start, on 410 Gone, on a broken or refused
  watch (after a backoff), on request (POST /resync), and when a check finds too much changed.
  A watch the server ends cleanly (its timeout) or one silent for longer than bookmarks allow (a dead
  connection) is resumed from the last resourceVersion. Every check period, a consistency check
  (`kvip.kube.consistency`) compares name → resourceVersion from a metadata-only list with the store
  and fetches only what differs: the safety net against an event a healthy watch never delivered.
  On 401/403 we keep the last good store (fail-static), report FORBIDDEN, and retry the *list* with
  capped backoff, so access coming back means a fresh relist and an immediate reconcile.
"""

from __future__ import annotations

import asyncio
import json
import logging
import random
import sys
import time
from collections import Counter
from collections.abc import Callable, Hashable, Mapping
from typing import Any, Generic, TypeVar

import httpx2 as httpx  # lightkube 1.x ships its own httpx fork
from lightkube import ApiError, AsyncClient
from lightkube.core.resource import Resource
from lightkube.models.meta_v1 import Status

from kvip.core.incremental import changed_keys
from kvip.kube.consistency import (
    CHECK_PAGE,
    CheckExpired,
    ObjectRef,
    Selection,
    Version,
    api_request,
    compare_versions,
    held_version,
    object_ref,
    read_bytes,
    read_json,
)
from kvip.kube.errors import ApiFailure, classify, describe, status_code
from kvip.kube.sources import SourceState, SourceStatus
from kvip.runtime.tasks import Backoff

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")

log = logging.getLogger("kvip.reflector")

# Converts one raw object into (key, view); None means "not ours, forget it" (e.g. a ClusterIP Service).
Converter = Callable[[Mapping[str, Any]], "tuple[K, V] | None"]
KeyOf = Callable[[Mapping[str, Any]], K]
Decoding = tuple[Callable[[bytes], Mapping[str, Any]], Callable[[str], Mapping[str, Any]]]

# The real API server sends a bookmark about once a minute on a quiet watch; a watch silent for longer
# than this is taken for a dead connection and resumed (a new request from the last resourceVersion).
WATCH_QUIET_LIMIT = 90.0
# More differences than this in one check: one relist is cheaper than fetching each object.
FETCH_LIMIT = 200
# Objects per page of a (re)list: only one page is held decoded at a time (a few MiB with managedFields).
LIST_PAGE = 2_000
# A difference may be an event still on its way down the watch: give it this long before fetching.
SETTLE = 0.5


class _NarrowingRefused(Exception):
    """The server refused a field selector we only use to narrow the watch (older Kubernetes)."""


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
        resync_period: float = 30.0,  # the consistency check period (the name is from when it relisted)
        fields: Mapping[str, str] | None = None,
        namespace: str | None = None,  # one namespace only (a Role suffices); None: all namespaces
        narrow_fields: Mapping[str, str] | None = None,  # dropped if the server refuses them (400)
        labels: tuple[str, ...] = (),  # labels an object must carry to be watched at all
        watch_timeout: int = 300,
        backoff: Backoff | None = None,
        quiet: Callable[[V | None, V], bool] | None = None,  # (old, new) → no consumer acts on this update
        page: int = CHECK_PAGE,  # objects per page of a consistency check
        list_page: int = LIST_PAGE,  # objects per page of a (re)list
        decode: Decoding | None = None,  # (list body → dict, watch line → dict); None: json.loads whole
        journal: bool = False,  # keep what changed for `changes()` (its one consumer must call it)
    ) -> None:
        self.name = name
        self._quiet = quiet
        self.quiet_updates = 0  # counted: the cache's snapshot still has to show them
        self.store: dict[K, V] = {}
        self.synced = asyncio.Event()
        self._client = client
        self._resource = resource
        self._convert = convert
        self._decode_list, self._decode_event = decode or (json.loads, json.loads)
        self._key_of = key_of
        self._on_change = on_change
        self._check_period = resync_period
        self._narrowing = dict(narrow_fields or {})
        self._selection = Selection(namespace, {**(fields or {}), **self._narrowing}, labels)
        self._watch_timeout = watch_timeout
        self._page = page
        self._list_page = list_page
        # Never back off longer than half a check period: access coming back must be noticed
        # well within the period the issue promises convergence in.
        self._backoff = backoff or Backoff(cap=max(0.5, min(10.0, resync_period / 2)))
        self._state = SourceState.STARTING
        self._rv = ""  # where the watch resumes: from lists, events and bookmarks only, never from an object fetched by a check
        self._versions: dict[ObjectRef, Version] = {}  # every watched object's resourceVersion, converted or not
        self._membership = 0  # bumped whenever a name enters or leaves _versions (what a check counts on)
        self._journaling = journal
        self._journal: dict[K, V | None] | None = None  # each changed key's value before; None: the whole store
        self._relists = self._watch_restarts = self._checks = self._check_repairs = 0
        self._last_check_at: float | None = None
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
            resource=self.name, state=self._state, objects=len(self.store), resource_version=self._rv,
            relists=self._relists, watch_restarts=self._watch_restarts, errors=dict(self._errors),
            last_list_at=self._last_list_at, last_ok_monotonic=self._last_ok, last_error=self._last_error,
            checks=self._checks, check_repairs=self._check_repairs, last_check_at=self._last_check_at,
        )

    @property
    def _namespace(self) -> str | None:  # the one namespace watched (None: all, or cluster-scoped)
        return self._selection.namespace

    def changes(self) -> Mapping[K, V | None] | None:
        """Each key whose value changed since the last call, with its value then (None: absent); None when
        the whole store must be read (the first call, a relist, or more changes than worth a journal)."""
        journal, self._journal = self._journal, {} if self._journaling else None
        return journal

    def request_relist(self) -> None:
        """Cut the current watch short and relist (POST /resync, `kvip status`)."""
        self._relist_requested.set()

    async def run(self) -> None:
        while True:
            try:
                await self._relist()
                self._backoff.reset()
                await self._follow()
            except asyncio.CancelledError:
                raise
            except _NarrowingRefused:
                continue  # relist at once, without the refused selector
            except Exception as exc:  # noqa: BLE001 (every API failure lands here; the loop must survive all)
                await self._sleep_after(exc)

    async def check(self) -> bool:
        """One consistency check now; False when so much differs that a relist is due."""
        compared = await compare_versions(self._client, self._resource, self._selection, self._versions,
                                          not_older_than=self._rv, page=self._page,
                                          membership=lambda: self._membership)
        found = compared.found
        if found:
            await asyncio.sleep(SETTLE)  # events in flight land first: they need no fetch
            found = compared.still_differing(self._versions)
        self._checks += 1
        self._last_check_at = time.time()
        self._mark_ok()
        if not found:
            return True
        if len(found) > FETCH_LIMIT:
            log.warning("%s: consistency check: %d objects differ from the API server; relisting", self.name,
                        len(found))
            return False
        log.warning("%s: consistency check: %d object(s) differ from the API server (a watch event was lost "
                    "or is in flight); fetching them: %s", self.name, len(found),
                    ", ".join(sorted("/".join(filter(None, ref)) for ref in (*found.changed, *found.gone))[:5]))
        for ref in (*found.changed, *found.gone):
            await self._refetch(ref)
        self._check_repairs += len(found)
        return True

    # -- list ---------------------------------------------------------------------------------

    async def _relist(self) -> None:
        """In pages of `list_page` (one snapshot) into a fresh store swapped in at the end: one page is held
        decoded at a time (#21: a 30,000-slice list decoded whole was a third of the peak). 410 restarts."""
        for _attempt in range(3):
            fresh: dict[K, V] = {}
            versions: dict[ObjectRef, Version] = {}
            params = {"limit": str(self._list_page)}
            try:
                while params:
                    body = self._decode_list(await read_bytes(self._client, self._resource, self._selection, params))
                    for obj in body.get("items") or ():
                        converted = self._convert(obj)
                        self._remember(obj, versions, converted and converted[0])
                        if converted is not None:
                            fresh[converted[0]] = converted[1]
                    meta = body.get("metadata") or {}
                    token = str(meta.get("continue") or "")
                    params = {"limit": str(self._list_page), "continue": token} if token else {}
            except ApiError as exc:
                if "continue" in params and classify(exc) is ApiFailure.GONE:
                    continue
                if status_code(exc) == 400 and self._narrowing and self._selection.fields.keys() & self._narrowing:
                    log.warning("%s: the API server refuses fieldSelector %s (%s): watching without it",
                                self.name, ",".join(self._narrowing), describe(exc))
                    self._selection = self._selection.without_fields(self._narrowing)
                    raise _NarrowingRefused from exc
                raise
            if self._journal is not None:  # what the relist changed (often nothing): no regrouping of the rest
                self._journal.update((key, self.store.get(key)) for key in changed_keys(self.store, fresh)
                                     if key not in self._journal)
            self.store, self._versions, self._rv = fresh, versions, str(meta.get("resourceVersion") or "")
            self._relists, self._last_list_at, self._membership = self._relists + 1, time.time(), self._membership + 1
            self._mark_ok()
            self._relist_requested.clear()
            self.synced.set()
            self._on_change(self.name)
            return
        raise CheckExpired(f"{self.name}: the list expired three times while paging")

    # -- watch and check ----------------------------------------------------------------------

    async def _follow(self) -> None:
        """Watch and check until a relist is due: returns on 410, a relist request or a check that
        found too much changed; raises on a broken or refused watch (the caller backs off, relists)."""
        tasks = [asyncio.create_task(self._watch()), asyncio.create_task(self._check_every_period()),
                 asyncio.create_task(self._relist_requested.wait())]
        try:
            done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
        for task in done:
            if not task.cancelled() and task.exception() is not None:
                raise task.exception()  # type: ignore[misc]

    async def _watch(self) -> None:
        while True:
            try:
                await self._stream()
            except httpx.ReadTimeout:
                # No event and no bookmark for too long: the connection is presumably dead. Resuming
                # from the last resourceVersion loses nothing (history permitting; else 410, relist).
                self._watch_restarts += 1
                log.info("%s: watch silent for %.0fs, resuming at resourceVersion %s", self.name,
                         WATCH_QUIET_LIMIT, self._rv)
            except Exception as exc:
                if classify(exc) is ApiFailure.GONE:
                    log.info("%s: watch history expired at resourceVersion %s, relisting", self.name, self._rv)
                    return
                self._watch_restarts += 1
                raise

    async def _stream(self) -> None:
        params = {"resourceVersion": self._rv, "allowWatchBookmarks": "true",
                  "timeoutSeconds": str(self._watch_timeout)}
        response = await api_request(self._client, self._resource, self._selection, params, watch=True,
                                     timeout=httpx.Timeout(10.0, read=WATCH_QUIET_LIMIT))
        try:
            self._mark_ok()  # the server accepted the watch: the store is current as of now
            async for line in response.aiter_lines():
                if line:
                    event = self._decode_event(line)
                    self._apply(event.get("type", ""), event.get("object") or {})
        finally:
            await response.aclose()

    async def _check_every_period(self) -> None:
        while True:
            # Jitter below the period only: agents started together do not check together, and a lost
            # event is still corrected within one period.
            await asyncio.sleep(self._check_period * random.uniform(0.8, 1.0))
            try:
                if not await self.check():
                    return
            except Exception as exc:  # noqa: BLE001 (a failed check never stops a healthy watch; the next retries)
                self._count_error(exc)
                log.warning("%s: consistency check failed: %s", self.name, describe(exc))

    def _apply(self, kind: str, obj: Mapping[str, Any]) -> None:
        if kind == "ERROR":
            raise ApiError(status=Status.from_dict(dict(obj)))
        rv = (obj.get("metadata") or {}).get("resourceVersion")
        if rv:
            self._rv = rv
        self._mark_ok()
        if kind != "BOOKMARK":
            self._take(kind, obj)

    def _take(self, kind: str, obj: Mapping[str, Any]) -> None:
        """Store one object (from the watch, or fetched by a check) or forget it (DELETED)."""
        versions, known = self._versions, len(self._versions)
        converted = None
        if kind == "DELETED":
            versions.pop(object_ref(obj), None)
        else:
            self._remember(obj, versions)
            converted = self._convert(obj)
        self._membership += known != len(versions)
        key, view = converted or (self._key_of(obj), None)  # None: not ours (any more), forget it
        old = self.store.get(key)
        changed = old != view
        if changed and self._journal is not None:
            self._journal.setdefault(key, old)
            # Beyond this the store is cheaper to read, and a consumer that stopped calling keeps no old views alive.
            self._journal = self._journal if len(self._journal) <= 1_000 + len(self.store) // 4 else None
        if view is None:
            self.store.pop(key, None)
        else:
            # A quiet update is stored but wakes nobody (the echo of our own status write).
            if changed and self._quiet is not None and self._quiet(old, view):
                changed, self.quiet_updates = False, self.quiet_updates + 1
            self.store[key] = view
        if changed:
            self._on_change(self.name)

    def _remember(self, obj: Mapping[str, Any], versions: dict[ObjectRef, Version], key: Any = None) -> None:
        ref = object_ref(obj)  # the store's key if it is this very pair (a slice's), else the namespace interned
        ref = key if key == ref else (sys.intern(ref[0]), ref[1])
        versions[ref] = held_version(str((obj.get("metadata") or {}).get("resourceVersion") or ""))

    async def _refetch(self, ref: ObjectRef) -> None:
        """The object as it is now: a consistent list of that one name within what we watch (the agent
        may list, not get). None listed: gone, or outside what we watch (e.g. no longer a LoadBalancer)."""
        namespace, object_name = ref
        one = Selection(namespace or None, {**self._selection.fields, "metadata.name": object_name},
                        self._selection.labels)
        items = (await read_json(self._client, self._resource, one, {})).get("items") or ()
        if items:
            self._take("MODIFIED", items[0])
        else:
            self._take("DELETED", {"metadata": {"namespace": namespace, "name": object_name}})

    # -- state --------------------------------------------------------------------------------

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
