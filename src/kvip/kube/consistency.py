"""The cheap consistency check that replaces the periodic full relist (kvip issue #21).

A healthy watch can still miss an event (a server bug, a dropped DELETED): something must compare
the cache with the API server now and then. Relisting every object every 30 s did that at a price
(per node-hour 2.5 GB of consistent reads from etcd at 10,000 Services / 30,000 EndpointSlices).
The check asks instead for metadata only (`PartialObjectMetadataList`) served from the API
server's watch cache, and compares name → resourceVersion with what the cache holds page by page, as
the pages arrive, keeping only what differs (never the whole listing); only the objects that differ are
fetched again, each by a list of its one name (the agent may list, not get).

How the list is asked for: `resourceVersionMatch=NotOlderThan&resourceVersion=<the cache's RV>`
with `limit`/`continue` (docs/decisions.md D17 says why not `resourceVersion=0`). The answer is never
older than the cache, so a difference is either a missed event or one still in flight; a consistent
read of that one object settles both. A 410 on a continue token restarts the list once. What is held
and listed on no page (a lost DELETED) is found by counting; naming it takes a second listing (`_Tally`).

Also the one place kvip goes under lightkube (`api_request`): lightkube cannot ask for a
`PartialObjectMetadataList` nor for watch bookmarks, so those requests are built by lightkube's
own request builder and sent through the client's own session (auth, TLS, the bootstrap fall-back).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Hashable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

import httpx2 as httpx  # lightkube 1.x ships its own httpx fork
import msgspec  # lightkube's own decoder (pinned in requirements.lock)
from lightkube import AsyncClient
from lightkube.core.generic_client import ALL_NS
from lightkube.core.resource import NamespacedResource, Resource

from kvip.kube.errors import ApiFailure, classify

K = TypeVar("K", bound=Hashable)
ObjectRef = tuple[str, str]  # (namespace or "", name): how the check names an object

PARTIAL_LIST = "application/json;as=PartialObjectMetadataList;g=meta.k8s.io;v=v1"
# Objects per page. Large enough that a 40,000-object check is 8 requests, small enough that no page
# (a few MB of metadata before gzip) strains the server or us.
CHECK_PAGE = 5_000


@dataclass(frozen=True)
class Selection:
    """What one reflector watches: a namespace (None: all, or cluster-scoped), field equalities
    (dotted paths, e.g. spec.type=LoadBalancer) and labels that must exist. Kept structured, not as
    selector text, so one field can be dropped (a server that refuses it) or added (one object by name)."""

    namespace: str | None = None
    fields: Mapping[str, str] = field(default_factory=dict)
    labels: tuple[str, ...] = ()

    def params(self) -> dict[str, str]:
        params: dict[str, str] = {}
        if self.fields:
            params["fieldSelector"] = ",".join(f"{path}={value}" for path, value in self.fields.items())
        if self.labels:
            params["labelSelector"] = ",".join(self.labels)
        return params

    def without_fields(self, paths: Mapping[str, str]) -> Selection:
        return Selection(self.namespace, {p: v for p, v in self.fields.items() if p not in paths}, self.labels)


async def api_request(client: AsyncClient, resource: type[Resource], selection: Selection,
                      params: Mapping[str, str], *, accept: str | None = None, watch: bool = False,
                      timeout: httpx.Timeout | None = None) -> httpx.Response:
    """A list or watch request lightkube's API cannot express, as an open (streamed) response; the
    caller closes it. Errors are raised as lightkube raises them (ApiError with the server's Status)."""
    session = client._client  # lightkube's request builder and session: the only private use in kvip
    namespace = (selection.namespace or ALL_NS) if issubclass(resource, NamespacedResource) else None
    request = session.prepare_request("list", res=resource, namespace=namespace, watch=watch,
                                      params={**selection.params(), **params},
                                      headers={"Accept": accept} if accept else None)
    request.timeout = timeout
    response: httpx.Response = await session.send(session.build_adapter_request(request), stream=True)
    if response.is_error:
        try:
            await response.aread()
            session.raise_for_status(response)
        finally:
            await response.aclose()
    return response


async def read_bytes(client: AsyncClient, resource: type[Resource], selection: Selection,
                     params: Mapping[str, str], *, accept: str | None = None) -> bytes:
    response = await api_request(client, resource, selection, params, accept=accept)
    try:
        return await response.aread()
    finally:
        await response.aclose()


async def read_json(client: AsyncClient, resource: type[Resource], selection: Selection,
                    params: Mapping[str, str], *, accept: str | None = None) -> dict[str, Any]:
    decoded: dict[str, Any] = json.loads(await read_bytes(client, resource, selection, params, accept=accept))
    return decoded


Version = str | int  # a resourceVersion as held: an int where that says the same (see `held_version`)


def held_version(version: str) -> Version:
    """A resourceVersion as the cache holds it: opaque text, but in practice a decimal etcd revision, held as
    an int (32 bytes, where the text took 56-64: a MiB at 40,000 objects, kvip issue #21). Only the canonical
    decimal form becomes an int, so two versions are equal held exactly when they are equal as text."""
    if version.isascii() and version.isdigit() and version[0] != "0" and len(version) < 19:
        return int(version)
    return version


def object_ref(obj: Mapping[str, Any]) -> ObjectRef:
    meta = obj.get("metadata") or {}
    return (str(meta.get("namespace") or ""), str(meta.get("name") or ""))


# -- the comparison (pure) --------------------------------------------------------------------------


@dataclass(frozen=True)
class Differences(Generic[K]):
    changed: frozenset[K]  # listed at another resourceVersion than held, or listed and not held
    gone: frozenset[K]  # held, not listed

    def __len__(self) -> int:
        return len(self.changed) + len(self.gone)


def differences(listed: Mapping[K, str], held: Mapping[K, str]) -> Differences[K]:
    """What the cache must fetch again: every key whose resourceVersion is not the listed one."""
    changed = frozenset(key for key, version in listed.items() if held.get(key) != version)
    return Differences(changed, frozenset(key for key in held if key not in listed))


# -- the metadata list ------------------------------------------------------------------------------


class _Meta(msgspec.Struct):
    name: str = ""
    namespace: str = ""
    resourceVersion: str = ""


class _Item(msgspec.Struct):
    metadata: _Meta


class _ListMeta(msgspec.Struct):
    resourceVersion: str = ""
    continue_token: str = msgspec.field(default="", name="continue")


class _Page(msgspec.Struct):
    metadata: _ListMeta
    items: list[_Item] | None = None


# Decodes only names and resourceVersions and skips the rest (labels, managedFields ...) without
# building it: at 40,000 objects this is most of a check's CPU time (docs/benchmarks.md).
_PAGE = msgspec.json.Decoder(_Page)


class CheckExpired(Exception):
    """The list's snapshot was compacted twice in a row while paging (a very busy server)."""


_ABSENT = object()
Listed = tuple[ObjectRef, Version]  # (object, its resourceVersion) as a page lists it


class _Tally(Generic[K]):
    """One listing compared with the cache page by page, as the pages arrive: only the differences are kept,
    never the listing (a 30,000-object name -> resourceVersion map raised the agent's RSS by 10 MiB, which
    Python's allocator kept after the check, kvip issue #21).

    What was held and never listed is found by counting, not by remembering every name listed: `seen` counts
    listed names the cache holds, so when the cache kept its names throughout (`membership` unchanged) and
    `seen` equals their number, nothing held went unlisted. Otherwise (a lost DELETED, or objects came or
    went during the check) an exact tally lists again with `pending`: a copy of the cache's own keys (one
    block, no new object) from which each listed name is struck."""

    __slots__ = ("changed", "held", "pending", "seen")

    def __init__(self, held: Mapping[K, Version], *, exact: bool) -> None:
        self.held = held
        self.changed: dict[K, Version] = {}  # listed at another version than held, or not held: listed one
        self.seen = 0
        self.pending: dict[K, Version] | None = dict(held) if exact else None

    def page(self, items: Iterable[tuple[K, Version]]) -> None:
        held, changed, pending, seen = self.held, self.changed, self.pending, 0
        for ref, version in items:
            mine = held.get(ref, _ABSENT)
            if mine is not _ABSENT:
                seen += 1
            if mine != version:
                changed[ref] = version
            if pending is not None:
                pending.pop(ref, None)
        self.seen += seen

    def gone(self, membership_changed: bool) -> frozenset[K] | None:
        """Held (still) and never listed; None: the count cannot tell, an exact tally must."""
        if self.pending is not None:
            return frozenset(ref for ref in self.pending if ref in self.held)
        if membership_changed or self.seen != len(self.held):
            return None
        return frozenset()


@dataclass(frozen=True)
class Comparison:
    """What a check found: the listed version of every object that differs, what is held and was not listed,
    the listing's resourceVersion and the requests it took."""

    changed: Mapping[ObjectRef, Version]
    gone: frozenset[ObjectRef]
    resource_version: str
    requests: int

    @property
    def found(self) -> Differences[ObjectRef]:
        return Differences(frozenset(self.changed), self.gone)

    def still_differing(self, held: Mapping[ObjectRef, Version]) -> Differences[ObjectRef]:
        """The differences the cache still has now (events in flight during the check have landed since)."""
        return Differences(frozenset(ref for ref, version in self.changed.items() if held.get(ref) != version),
                           frozenset(ref for ref in self.gone if ref in held))


def tally(pages: Iterable[Iterable[tuple[K, Version]]], held: Mapping[K, Version], *,
          exact: bool = False) -> tuple[dict[K, Version], frozenset[K] | None]:
    """The comparison of listed pages with a cache that does not change meanwhile (pure; for tests)."""
    counted = _Tally(held, exact=exact)
    for items in pages:
        counted.page(items)
    return counted.changed, counted.gone(False)


def _listed(items: Iterable[_Item]) -> Iterator[Listed]:
    for item in items:
        meta = item.metadata
        yield (meta.namespace, meta.name), held_version(meta.resourceVersion)


async def compare_versions(client: AsyncClient, resource: type[Resource], selection: Selection,
                           held: Mapping[ObjectRef, Version], *, not_older_than: str, page: int = CHECK_PAGE,
                           membership: Callable[[], int] | None = None) -> Comparison:
    """Every selected object's resourceVersion, metadata only and at least as new as `not_older_than`,
    compared with `held` (as `held_version` holds them) page by page. `membership()`: a count the caller bumps whenever a name enters or
    leaves `held` (None: `held` does not change). A second, exact listing only when the count cannot tell."""
    requests = 0
    for exact in (False, True):
        for _attempt in range(2):  # a 410 on a continue token: the snapshot was compacted, list it again
            before = membership() if membership else 0
            counted: _Tally[ObjectRef] = _Tally(held, exact=exact)
            params = {"resourceVersionMatch": "NotOlderThan", "resourceVersion": not_older_than,
                      "limit": str(page)} if not_older_than else {"resourceVersion": "0"}
            try:
                while True:
                    requests += 1
                    body = _PAGE.decode(await read_bytes(client, resource, selection, params, accept=PARTIAL_LIST))
                    counted.page(_listed(body.items or ()))
                    token = body.metadata.continue_token
                    if not token:
                        break
                    params = {"limit": str(page), "continue": token}  # the first page's snapshot
            except Exception as exc:
                if classify(exc) is not ApiFailure.GONE:
                    raise
                continue
            gone = counted.gone(membership is not None and membership() != before)
            if gone is not None:
                return Comparison(counted.changed, gone, body.metadata.resourceVersion, requests)
            break  # the count cannot tell what went unlisted: list again, exactly
        else:
            raise CheckExpired(f"{resource.__name__}: the list expired twice while paging")
    raise AssertionError("an exact tally always tells")  # pragma: no cover
