"""HTTP face of the stand-in: the Kubernetes REST paths, Status errors, watch streams, discovery.

Owns request parsing, authentication (bearer tokens), authorization (deny rules, 403 as after an
RBAC change) and streaming. All state lives in `Store`; this module never keeps objects itself.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from kvip.lab.apiserver.kinds import (
    Kind,
    api_group_list,
    api_versions,
    kind_for,
    resource_list,
    version_info,
)
from kvip.lab.apiserver.requestlog import RequestLog
from kvip.lab.apiserver.selectors import SelectorError, field_selector, label_selector
from kvip.lab.apiserver.store import Store, StoreError, Watcher

JSON = "application/json"
# Set on the request by the resource handler, read by the request log.
_RESOURCE, _VERB = web.RequestKey("kvip.resource", str), web.RequestKey("kvip.verb", str)


def status_body(code: int, reason: str, message: str, details: dict[str, Any] | None = None) -> dict[str, Any]:
    body: dict[str, Any] = {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
                            "message": message, "reason": reason, "code": code}
    if details:
        body["details"] = details
    return body


def error(code: int, reason: str, message: str, details: dict[str, Any] | None = None) -> web.Response:
    return _json(status_body(code, reason, message, details), status=code)


def _dumps(obj: Any) -> str:
    return json.dumps(obj, separators=(",", ":"))


def _json(body: Any, status: int = 200) -> web.Response:
    # Exactly "application/json", no charset: clients (lightkube among them) compare the header
    # verbatim before decoding an error body as a Status, as the real server sends it.
    return web.Response(body=_dumps(body).encode(), status=status, headers={"Content-Type": JSON})


# One permission as a Role or ClusterRole binding grants it: (apiGroup, resource, verb, namespace),
# namespace None = cluster-wide (a ClusterRoleBinding: every namespace and cluster-scoped resources).
Grant = tuple[str, str, str, str | None]


@dataclass
class Policy:
    """Who may do what: tokens → users, allow lists (RBAC) and deny rules (faults: user or None for everyone)."""

    tokens: dict[str, str] | None = None
    anonymous: str | None = None  # user for requests without a token (kubectl sends none over plain HTTP)
    denied: set[tuple[str | None, str, str]] = field(default_factory=set)
    # user → the only grants it has, like Roles and ClusterRoles bound to that user; absent = no limit
    allowed: dict[str, set[Grant]] = field(default_factory=dict)
    latency: float = 0.0
    bookmark_interval: float = 5.0

    def is_denied(self, user: str, group: str, resource: str, verb: str, namespace: str | None) -> bool:
        grants = self.allowed.get(user)
        if grants is not None and not _granted(grants, group, resource, verb, namespace):
            return True
        return (None, resource, verb) in self.denied or (user, resource, verb) in self.denied


def _granted(grants: set[Grant], group: str, resource: str, verb: str, namespace: str | None) -> bool:
    """RBAC's rule: a cluster-wide grant covers every namespace; a namespaced one only requests inside
    that namespace (a list or watch across all namespaces needs the cluster-wide grant)."""
    return (group, resource, verb, None) in grants or (
        namespace is not None and (group, resource, verb, namespace) in grants)


def _static(body: Any) -> Any:
    async def handler(_: web.Request) -> web.Response:
        value = body()
        return web.Response(text=value) if isinstance(value, str) else _json(value)

    return handler


@dataclass(frozen=True)
class Target:
    kind: Kind
    namespace: str | None
    name: str | None
    subresource: str | None


def _parse(group: str, version: str, tail: str) -> Target | None:
    parts = [p for p in tail.split("/") if p]
    ns = None
    if len(parts) >= 3 and parts[0] == "namespaces":
        ns, parts = parts[1], parts[2:]
    elif len(parts) in (1, 2, 3) and parts[0] == "namespaces" and len(parts) <= 3:
        pass  # the namespaces resource itself
    if not parts or len(parts) > 3:
        return None
    kind = kind_for(group, version, parts[0])
    if kind is None or (ns is not None and not kind.namespaced):
        return None
    name = parts[1] if len(parts) > 1 else None
    sub = parts[2] if len(parts) > 2 else None
    if sub is not None and sub not in kind.subresources:
        return None
    return Target(kind, ns, name, sub)


class ApiApp:
    def __init__(self, store: Store, policy: Policy, control: Any) -> None:
        self.store = store
        self.policy = policy
        self.control = control  # the StandIn handle, for the fault control API
        self.requests: Counter[str] = Counter()
        self.log = RequestLog()
        self.app = web.Application(middlewares=[self._record, self._latency], client_max_size=64 * 1024 * 1024)
        r = self.app.router
        r.add_get("/api", _static(api_versions))
        r.add_get("/apis", _static(api_group_list))
        r.add_get("/version", _static(version_info))
        for probe in ("/healthz", "/readyz", "/livez"):
            r.add_get(probe, _static(lambda: "ok"))
        r.add_post("/_standin/faults", self._faults)
        r.add_get("/_standin/stats", self._stats)
        r.add_get("/_standin/requests", self._requests)
        r.add_route("*", "/api/{version}", self._core_discovery)
        r.add_route("*", "/api/{version}/{tail:.*}", self._core)
        r.add_get("/apis/{group}", self._group_discovery)
        r.add_get("/apis/{group}/{version}", self._group_version_discovery)
        r.add_route("*", "/apis/{group}/{version}/{tail:.*}", self._grouped)

    @web.middleware
    async def _record(self, request: web.Request, handler: Any) -> web.StreamResponse:
        bytes_in = len(await request.read()) if request.body_exists else 0  # cached: handlers read it again
        status, bytes_out = 500, 0
        try:
            response = await handler(request)
            status = response.status
            body = response.body if isinstance(response, web.Response) else None
            bytes_out = len(body) if isinstance(body, bytes) else response.body_length
            return response
        except web.HTTPException as exc:
            status = exc.status
            raise
        finally:
            self.log.add(method=request.method, path=request.path, resource=request.get(_RESOURCE, ""),
                         verb=request.get(_VERB, ""), status=status, bytes_in=bytes_in, bytes_out=bytes_out)

    @web.middleware
    async def _latency(self, request: web.Request, handler: Any) -> web.StreamResponse:
        if self.policy.latency:
            await asyncio.sleep(self.policy.latency)
        return await handler(request)

    # -- discovery ---------------------------------------------------------------------------

    async def _core_discovery(self, request: web.Request) -> web.Response:
        body = resource_list("", request.match_info["version"])
        return _json(body) if body else error(404, "NotFound", "the server could not find the requested resource")

    async def _group_discovery(self, request: web.Request) -> web.Response:
        group = request.match_info["group"]
        for entry in api_group_list()["groups"]:
            if entry["name"] == group:
                return _json({"kind": "APIGroup", "apiVersion": "v1", **entry})
        return error(404, "NotFound", "the server could not find the requested resource")

    async def _group_version_discovery(self, request: web.Request) -> web.Response:
        body = resource_list(request.match_info["group"], request.match_info["version"])
        return _json(body) if body else error(404, "NotFound", "the server could not find the requested resource")

    # -- resources ---------------------------------------------------------------------------

    async def _core(self, request: web.Request) -> web.StreamResponse:
        return await self._resource(request, "", request.match_info["version"])

    async def _grouped(self, request: web.Request) -> web.StreamResponse:
        return await self._resource(request, request.match_info["group"], request.match_info["version"])

    def _user(self, request: web.Request) -> str | None:
        if self.policy.tokens is None:
            return "admin"
        header = request.headers.get("Authorization", "")
        if not header.startswith("Bearer "):
            return self.policy.anonymous
        return self.policy.tokens.get(header[7:].strip())

    async def _resource(self, request: web.Request, group: str, version: str) -> web.StreamResponse:
        target = _parse(group, version, request.match_info["tail"])
        if target is None:
            return error(404, "NotFound", "the server could not find the requested resource")
        user = self._user(request)
        if user is None:
            return error(401, "Unauthorized", "Unauthorized")
        verb = self._verb(request, target)
        self.requests[verb] += 1
        resource = target.kind.plural + (f"/{target.subresource}" if target.subresource else "")
        request[_RESOURCE], request[_VERB] = resource, verb
        if self.policy.is_denied(user, target.kind.group, resource, verb, target.namespace):
            return self._forbidden(user, verb, target)
        try:
            return await self._dispatch(request, verb, target, user)
        except StoreError as exc:
            details = {"name": target.name or "", "kind": target.kind.plural}
            if target.kind.group:
                details["group"] = target.kind.group
            return error(exc.code, exc.reason, exc.message, details)
        except SelectorError as exc:
            return error(400, "BadRequest", str(exc))
        except (json.JSONDecodeError, ValueError) as exc:
            return error(400, "BadRequest", f"the request could not be decoded: {exc}")

    @staticmethod
    def _verb(request: web.Request, target: Target) -> str:
        method = request.method
        if method == "GET":
            if target.name is not None:
                return "get"
            return "watch" if request.query.get("watch") in ("true", "1") else "list"
        return {"POST": "create", "PUT": "update", "PATCH": "patch", "DELETE": "delete"}.get(method, method.lower())

    def _forbidden(self, user: str, verb: str, target: Target) -> web.Response:
        resource = target.kind.plural + (f"/{target.subresource}" if target.subresource else "")
        subject = f'{target.kind.group_resource} "{target.name}"' if target.name else target.kind.group_resource
        where = f'in the namespace "{target.namespace}"' if target.namespace else "at the cluster scope"
        message = (f'{subject} is forbidden: User "{user}" cannot {verb} resource "{resource}" '
                   f'in API group "{target.kind.group}" {where}')
        return error(403, "Forbidden", message, {"name": target.name or "", "kind": target.kind.plural})

    async def _dispatch(self, request: web.Request, verb: str, target: Target, user: str) -> web.StreamResponse:
        store, kind, ns, name = self.store, target.kind, target.namespace, target.name
        if verb == "get":
            return _json(store.get(kind.plural, ns, name or ""))
        if verb == "list":
            return self._list(request, target)
        if verb == "watch":
            return await self._watch(request, target, user)
        body = await request.json() if request.body_exists else {}  # the request log read it already
        if verb == "create":
            if name is not None:
                return error(405, "MethodNotAllowed", "the server does not allow this method on the requested resource")
            obj = store.create({**body, "apiVersion": kind.api_version, "kind": kind.kind}, kind.plural, ns)
            return _json(obj, status=201)
        if verb == "update":
            return _json(store.update(body, kind.plural, ns, name or "", target.subresource))
        if verb == "patch":
            ctype = request.content_type
            if ctype not in ("application/merge-patch+json", "application/strategic-merge-patch+json",
                             "application/apply-patch+yaml", "application/json-patch+json"):
                return error(415, "UnsupportedMediaType", f"the body of the request was in an unknown format: {ctype}")
            if ctype == "application/json-patch+json":
                return error(415, "UnsupportedMediaType", "json-patch is not supported by the kvip stand-in")
            return _json(store.patch(body, kind.plural, ns, name or "", target.subresource))
        if verb == "delete":
            if name is None:
                return error(405, "MethodNotAllowed", "deletecollection is not supported by the kvip stand-in")
            gone = store.delete(kind.plural, ns, name)
            return _json(gone)
        return error(405, "MethodNotAllowed", "the server does not allow this method on the requested resource")

    def _list(self, request: web.Request, target: Target) -> web.Response:
        labels, fields = label_selector(request.query.get("labelSelector")), field_selector(request.query.get("fieldSelector"))
        items = self.store.list(target.kind.plural, target.namespace, lambda o: labels(o) and fields(o))
        kind = target.kind
        body = {"kind": f"{kind.kind}List", "apiVersion": kind.api_version,
                "metadata": {"resourceVersion": str(self.store.rv)}, "items": items}
        return _json(body)

    async def _watch(self, request: web.Request, target: Target, user: str) -> web.StreamResponse:
        labels, fields = label_selector(request.query.get("labelSelector")), field_selector(request.query.get("fieldSelector"))
        watcher = Watcher(target.kind.plural, target.namespace, lambda o: labels(o) and fields(o), user,
                          loop=asyncio.get_running_loop())
        since = request.query.get("resourceVersion", "")
        if since in ("", "0"):
            for obj in self.store.list(target.kind.plural, target.namespace, watcher.matches):
                watcher.queue.put_nowait(("ADDED", obj))
            expired = False
        else:
            replay = self.store.replay_after(int(since))
            expired = replay is None
            for event in replay or ():
                if event.plural == target.kind.plural:
                    watcher.offer(event)
        response = web.StreamResponse(headers={"Content-Type": JSON, "Cache-Control": "no-cache"})
        response.enable_chunked_encoding()
        await response.prepare(request)
        if expired:
            gone = status_body(410, "Expired", f"too old resource version: {since} ({self.store.compacted_rv})")
            await response.write((_dumps({"type": "ERROR", "object": gone}) + "\n").encode())
            return response
        self.store.watchers.add(watcher)
        bookmarks = request.query.get("allowWatchBookmarks") in ("true", "1")
        timeout = float(request.query.get("timeoutSeconds") or 1800)
        deadline = time.monotonic() + timeout
        try:
            while (left := deadline - time.monotonic()) > 0:
                wait = min(left, self.policy.bookmark_interval) if bookmarks else left
                try:
                    item = await asyncio.wait_for(watcher.queue.get(), wait)
                except asyncio.TimeoutError:
                    if bookmarks and deadline - time.monotonic() > 0:
                        mark = {"kind": target.kind.kind, "apiVersion": target.kind.api_version,
                                "metadata": {"resourceVersion": str(self.store.rv)}}
                        await response.write((_dumps({"type": "BOOKMARK", "object": mark}) + "\n").encode())
                    continue
                if item is None:
                    break  # cut by a fault, a deny rule or shutdown
                await response.write((_dumps({"type": item[0], "object": item[1]}) + "\n").encode())
        except (ConnectionResetError, asyncio.CancelledError):
            pass
        finally:
            self.store.watchers.discard(watcher)
        return response

    # -- control -----------------------------------------------------------------------------

    async def _faults(self, request: web.Request) -> web.Response:
        body = await request.json()
        action = body.pop("action", None)
        allowed = {"deny", "allow", "drop_events", "cut_watches", "compact", "set_latency", "clear_faults"}
        if action not in allowed:
            return error(400, "BadRequest", f"unknown action {action!r}; one of {sorted(allowed)}")
        getattr(self.control, action)(**body)
        return _json({"ok": True, "resourceVersion": str(self.store.rv)})

    async def _requests(self, request: web.Request) -> web.Response:
        """GET /_standin/requests?resource=services/status&verb=patch&verb=update&after=<seq>"""
        verbs = request.query.getall("verb", [])
        try:
            after = int(request.query.get("after", "0"))
        except ValueError:
            return error(400, "BadRequest", f"after must be a sequence number, not {request.query['after']!r}")
        found = self.log.query(resource=request.query.get("resource"), verbs=frozenset(verbs) if verbs else None,
                               method=request.query.get("method"), after=after)
        return _json({"total": self.log.total, "requests": [r.as_json() for r in found]})

    async def _stats(self, _: web.Request) -> web.Response:
        return _json({"requests": dict(self.requests), "resourceVersion": self.store.rv,
                                  "watchers": len(self.store.watchers), "objects": len(self.store.objects)})
