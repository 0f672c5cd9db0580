"""The cheap consistency check that replaces the periodic full relist (kvip issue #21).

A healthy watch can still miss an event (a server bug, a dropped DELETED): something must compare
the cache with the API server now and then. Relisting every object every 30 s did that at a price
(per node-hour 2.5 GB of consistent reads from etcd at 10,000 Services / 30,000 EndpointSlices).
The check asks instead for metadata only (`PartialObjectMetadataList`) served from the API
server's watch cache, and compares name → resourceVersion with what the cache holds; only the
objects that differ are fetched again, each by a list of its one name (the agent may list, not get).

How the list is asked for: `resourceVersionMatch=NotOlderThan&resourceVersion=<the cache's RV>`
with `limit`/`continue` (docs/decisions.md D17 says why not `resourceVersion=0`). The answer is never
older than the cache, so a difference is either a missed event or one still in flight; a consistent
read of that one object settles both. A 410 on a continue token restarts the list once.

Also the one place kvip goes under lightkube (`api_request`): lightkube cannot ask for a
`PartialObjectMetadataList` nor for watch bookmarks, so those requests are built by lightkube's
own request builder and sent through the client's own session (auth, TLS, the bootstrap fall-back).
"""

from __future__ import annotations

import json
from collections.abc import Hashable, Mapping
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


@dataclass(frozen=True)
class Listing:
    versions: Mapping[ObjectRef, str]
    resource_version: str
    requests: int


class CheckExpired(Exception):
    """The list's snapshot was compacted twice in a row while paging (a very busy server)."""


async def list_versions(client: AsyncClient, resource: type[Resource], selection: Selection, *,
                        not_older_than: str, page: int = CHECK_PAGE) -> Listing:
    """Every selected object's resourceVersion, metadata only, at least as new as `not_older_than`."""
    requests = 0
    for _attempt in range(2):
        versions: dict[ObjectRef, str] = {}
        params = {"resourceVersionMatch": "NotOlderThan", "resourceVersion": not_older_than,
                  "limit": str(page)} if not_older_than else {"resourceVersion": "0"}
        try:
            while True:
                requests += 1
                body = _PAGE.decode(await read_bytes(client, resource, selection, params, accept=PARTIAL_LIST))
                for item in body.items or ():
                    meta = item.metadata
                    versions[(meta.namespace, meta.name)] = meta.resourceVersion
                token = body.metadata.continue_token
                if not token:
                    return Listing(versions, body.metadata.resourceVersion, requests)
                params = {"limit": str(page), "continue": token}  # the first page's snapshot
        except Exception as exc:
            if classify(exc) is not ApiFailure.GONE:
                raise
    raise CheckExpired(f"{resource.__name__}: the list expired twice while paging")
