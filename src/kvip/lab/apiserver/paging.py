"""List reads the way the real API server serves them: resourceVersion and resourceVersionMatch,
limit and continue, 410 Expired past compaction, 504 for a revision the server has not reached.

The rules follow k8s.io/apiserver with the watch cache on and ConsistentListFromCache off (the
api-concepts "Semantics for get and list" table):

- no resourceVersion: the most recent state (a consistent read from etcd), paged when `limit` is set;
- resourceVersion="0": any state (the watch cache), and `limit` is ignored: the cache cannot page;
- resourceVersion=N, no match, no limit, or match=NotOlderThan: at least as new as N (the cache
  waits up to 3 s for N, then answers 504 Timeout "Too large resource version");
- resourceVersion=N with match=Exact, or with `limit` and no match (the legacy rule): exactly
  revision N from etcd, 410 Expired when N is compacted;
- continue=<token>: the next page of the first page's snapshot; 410 Expired with a fresh token (the
  rest of the list, from the newest state) in `metadata.continue` once that snapshot is compacted.

Continue tokens are the real server's: base64url JSON {"v": "meta.k8s.io/v1", "rv": <list RV>,
"start": <last key served> + NUL}, keys "<namespace>/<name>" relative to the listed range.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import bisect
import json
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from kvip.lab.apiserver.kinds import Kind
from kvip.lab.apiserver.store import Store

META_V1 = "meta.k8s.io/v1"
EXACT, NOT_OLDER_THAN = "Exact", "NotOlderThan"
FRESH_WAIT_SECONDS = 3.0  # the watch cache's wait for a resourceVersion it has not seen yet

_EXPIRED = "The resourceVersion for the provided list is too old."
_CONTINUE_EXPIRED = ("The provided continue parameter is too old to display a consistent list result. You can start "
                     "a new list without the continue parameter, or use the continue token in this response to "
                     "retrieve the remainder of the results. Continuing with the provided token results in an "
                     "inconsistent list - objects that were created, modified, or deleted between the time the "
                     "first chunk was returned and now may show up in the list.")


class ListError(Exception):
    """A list request the real server answers with this Status (and, for 410 on continue, a token)."""

    def __init__(self, code: int, reason: str, message: str, details: dict[str, Any] | None = None,
                 continue_token: str = "") -> None:
        super().__init__(message)
        self.code, self.reason, self.message, self.details = code, reason, message, details
        self.continue_token = continue_token


@dataclass(frozen=True)
class ListRequest:
    resource_version: str
    match: str
    limit: int  # 0: no limit
    continue_token: str


def _forbidden(detail: str) -> dict[str, str]:
    return {"reason": "FieldValueForbidden", "message": f"Forbidden: {detail}", "field": "resourceVersionMatch"}


def parse_list_request(query: Mapping[str, str]) -> ListRequest:
    """The list options, validated as the real server does (422 Invalid ListOptions)."""
    rv, match, token = query.get("resourceVersion", ""), query.get("resourceVersionMatch", ""), query.get("continue", "")
    try:
        limit = max(int(query.get("limit") or 0), 0)
    except ValueError as exc:
        raise ListError(400, "BadRequest", f"invalid limit {query.get('limit')!r}") from exc
    causes = []
    if match:
        if not rv:
            causes.append(_forbidden("resourceVersionMatch is forbidden unless resourceVersion is provided"))
        if token:
            causes.append(_forbidden("resourceVersionMatch is forbidden when continue is provided"))
        if match not in (EXACT, NOT_OLDER_THAN):
            causes.append({"reason": "FieldValueNotSupported", "field": "resourceVersionMatch",
                           "message": f'Unsupported value: "{match}": supported values: "Exact", "NotOlderThan", ""'})
        if match == EXACT and rv == "0":
            causes.append(_forbidden('resourceVersionMatch "exact" is forbidden for resourceVersion "0"'))
    if causes:
        listed = [f"{c['field']}: {c['message']}" for c in causes]
        text = listed[0] if len(listed) == 1 else "[" + ", ".join(listed) + "]"
        raise ListError(422, "Invalid", f'ListOptions.meta.k8s.io "" is invalid: {text}',
                        {"group": "meta.k8s.io", "kind": "ListOptions", "causes": causes})
    return ListRequest(rv, match, limit, token)


def encode_continue(rv: int, start: str) -> str:
    raw = json.dumps({"v": META_V1, "rv": rv, "start": start}, separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def decode_continue(token: str) -> tuple[int, str]:
    """(list RV, first key to serve); -1 as RV means "the newest state" (a token from a 410)."""
    try:
        data = json.loads(base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)))
        version, rv, start = data["v"], int(data["rv"]), str(data["start"])
    except (ValueError, KeyError, TypeError, binascii.Error) as exc:
        raise ListError(400, "BadRequest", f"invalid continue token: continue key is not valid: {exc}") from exc
    if version != META_V1:
        raise ListError(400, "BadRequest", "invalid continue token: continue key is not valid: server does not "
                                           f"recognize this encoded version {version}")
    if rv == 0 or not start:
        raise ListError(400, "BadRequest", "invalid continue token: continue key is not valid")
    return rv, start


@dataclass(frozen=True)
class ReadPlan:
    at: int | None  # serve exactly this revision; None: the newest state
    at_least: int  # first wait until the store has reached this revision (0: no wait)
    limit: int  # 0: everything
    start: str  # first key to serve ("" from the beginning)
    continued: bool


def plan_read(request: ListRequest) -> ReadPlan:
    if request.continue_token:
        if request.resource_version not in ("", "0"):
            raise ListError(400, "BadRequest", "specifying resource version is not allowed when using continue")
        rv, start = decode_continue(request.continue_token)
        return ReadPlan(None if rv == -1 else rv, 0, request.limit, start, True)
    if request.resource_version == "":
        return ReadPlan(None, 0, request.limit, "", False)
    try:
        rv = int(request.resource_version)
        if rv < 0:
            raise ValueError(rv)
    except ValueError as exc:
        raise ListError(400, "BadRequest", f'invalid resource version "{request.resource_version}"') from exc
    if rv == 0:
        return ReadPlan(None, 0, 0, "", False)  # served from the watch cache: limit ignored
    if request.match == NOT_OLDER_THAN or (not request.match and not request.limit):
        return ReadPlan(None, rv, request.limit, "", False)
    return ReadPlan(rv, rv, request.limit, "", False)


def range_key(kind: Kind, namespace: str | None, obj: Mapping[str, Any]) -> str:
    """The object's etcd key relative to the listed range: "name" in one namespace or cluster-scoped,
    "namespace/name" across namespaces."""
    meta = obj.get("metadata") or {}
    if kind.namespaced and not namespace:
        return f"{meta.get('namespace', '')}/{meta.get('name', '')}"
    return str(meta.get("name", ""))


async def _wait_for(store: Store, rv: int, wait: float) -> None:
    deadline = time.monotonic() + wait
    while store.rv < rv:
        if time.monotonic() >= deadline:
            raise ListError(504, "Timeout", f"Timeout: Too large resource version: {rv}, current: {store.rv}",
                            {"causes": [{"reason": "ResourceVersionTooLarge", "message": "Too large resource version"}],
                             "retryAfterSeconds": 1})
        await asyncio.sleep(0.02)


async def read_list(store: Store, kind: Kind, namespace: str | None, query: Mapping[str, str],
                    matches: Callable[[Mapping[str, Any]], bool], *, selective: bool,
                    fresh_wait: float = FRESH_WAIT_SECONDS) -> dict[str, Any]:
    """The `<Kind>List` body for a list request, or ListError. `selective`: a label or field
    selector was given, so the remaining item count is unknown (left out, as the real server does)."""
    plan = plan_read(parse_list_request(query))
    if plan.at_least:
        await _wait_for(store, plan.at_least, fresh_wait)
    list_rv = store.rv if plan.at is None else plan.at
    objects = store.list(kind.plural, namespace) if plan.at is None else store.list_at(kind.plural, namespace, plan.at)
    if objects is None:
        if plan.continued:
            raise ListError(410, "Expired", _CONTINUE_EXPIRED, continue_token=encode_continue(-1, plan.start))
        raise ListError(410, "Expired", _EXPIRED)
    keyed = sorted(((range_key(kind, namespace, o), o) for o in objects if matches(o)), key=lambda pair: pair[0])
    first = bisect.bisect_left(keyed, plan.start, key=lambda pair: pair[0])
    served = keyed[first:first + plan.limit] if plan.limit else keyed[first:]
    metadata: dict[str, Any] = {"resourceVersion": str(list_rv)}
    remaining = len(keyed) - first - len(served)
    if remaining > 0:
        # A 410-issued token continues from the newest state: its pages carry the newest RV too.
        metadata["continue"] = encode_continue(list_rv, served[-1][0] + "\x00")
        if not selective:
            metadata["remainingItemCount"] = remaining
    return {"kind": f"{kind.kind}List", "apiVersion": kind.api_version, "metadata": metadata,
            "items": [o for _, o in served]}
