"""HTTP face of the stand-in: the Kubernetes REST paths, Status errors, watch streams, discovery.

Owns request parsing, authentication (bearer tokens), authorization (deny rules, 403 as after an
RBAC change) and streaming. All state lives in `Store`; this module never keeps objects itself.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections import Counter
from dataclasses import dataclass
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
from kvip.lab.apiserver.media import (
    NotAcceptable,
    compress,
    include_object,
    negotiate,
    shape_event,
    shape_list,
    shape_object,
    wants_gzip,
)
from kvip.lab.apiserver.paging import ListError, read_list
from kvip.lab.apiserver.policy import Policy
from kvip.lab.apiserver.requestlog import RequestLog
from kvip.lab.apiserver.selectors import SelectorError, field_selector, label_selector
from kvip.lab.apiserver.store import Store, StoreError, Watcher

JSON = "application/json"
# Set on the request by the resource handler, read by the request log.
_RESOURCE, _VERB = web.RequestKey("kvip.resource", str), web.RequestKey("kvip.verb", str)


def status_body(code: int, reason: str, message: str, details: dict[str, Any] | None = None,
                continue_token: str = "") -> dict[str, Any]:
    body: dict[str, Any] = {"kind": "Status", "apiVersion": "v1",
                            "metadata": {"continue": continue_token} if continue_token else {},
                            "status": "Failure", "message": message, "reason": reason, "code": code}
    if details:
        body["details"] = details
    return body


def error(code: int, reason: str, message: str, details: dict[str, Any] | None = None,
          continue_token: str = "") -> web.Response:
    response = _json(status_body(code, reason, message, details, continue_token), status=code)
    if details and details.get("retryAfterSeconds"):
        response.headers["Retry-After"] = str(details["retryAfterSeconds"])
    return response


def _dumps(obj: Any) -> str:
    return json.dumps(obj, separators=(",", ":"))


def _json(body: Any, status: int = 200) -> web.Response:
    # Exactly "application/json", no charset: clients (lightkube among them) compare the header
    # verbatim before decoding an error body as a Status, as the real server sends it.
    return web.Response(body=_dumps(body).encode(), status=status, headers={"Content-Type": JSON})


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
        self.listener_health: Any = lambda _request: "ok"  # set by StandIn: its per-node listeners
        self.app = web.Application(middlewares=[self._record, self._listener_gate, self._gzip, self._latency],
                                   client_max_size=64 * 1024 * 1024)
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
            try:
                # Send it here (aiohttp then skips both steps) to count what went on the wire:
                # status line, headers, body as compressed, chunk framing.
                await response.prepare(request)
                await response.write_eof()
            except ConnectionError:
                pass  # the client left; the count stays what was sent before
            bytes_out = response.body_length
            return response
        except web.HTTPException as exc:
            status = exc.status
            raise
        finally:
            self.log.add(method=request.method, path=request.path, resource=request.get(_RESOURCE, ""),
                         verb=request.get(_VERB, ""), status=status, bytes_in=bytes_in, bytes_out=bytes_out)

    @web.middleware
    async def _listener_gate(self, request: web.Request, handler: Any) -> web.StreamResponse:
        # A control-plane node's own listener (lab/apiserver/listeners.py): "unhealthy" fails its /livez;
        # "no-quorum" (cut off from etcd) fails every request on it.
        health = self.listener_health(request)
        if health == "no-quorum" or (health == "unhealthy" and request.path == "/livez"):
            if request.path in ("/livez", "/readyz", "/healthz"):
                return web.Response(status=503, text="[-]etcd failed: reason withheld\nlivez check failed")
            return error(503, "ServiceUnavailable", "etcdserver: request timed out (lab: no quorum)")
        return await handler(request)

    @web.middleware
    async def _gzip(self, request: web.Request, handler: Any) -> web.StreamResponse:
        response = await handler(request)
        if (isinstance(response, web.Response) and isinstance(response.body, bytes)
                and len(response.body) >= self.policy.gzip_threshold and "Content-Encoding" not in response.headers
                and wants_gzip(request.headers.get("Accept-Encoding", ""))):
            response.body = compress(response.body)
            response.headers["Content-Encoding"] = "gzip"
            response.headers["Vary"] = "Accept-Encoding"
        return response

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
        if delay := self.policy.resource_latency.get(target.kind.plural):
            await asyncio.sleep(delay)
        if self.policy.is_denied(user, target.kind.group, resource, verb, target.namespace):
            return self._forbidden(user, verb, target)
        try:
            return await self._dispatch(request, verb, target, user)
        except StoreError as exc:
            details = {"name": target.name or "", "kind": target.kind.plural}
            if target.kind.group:
                details["group"] = target.kind.group
            return error(exc.code, exc.reason, exc.message, details)
        except ListError as exc:
            # A 410 on an expired continue token offers the rest of the list (inconsistently) in a token.
            return error(exc.code, exc.reason, exc.message, exc.details, exc.continue_token)
        except NotAcceptable as exc:
            return error(406, "NotAcceptable", str(exc))
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
            obj = store.get(kind.plural, ns, name or "")
            return _json(shape_object(obj, kind, *self._shape(request)))
        if verb == "list":
            return await self._list(request, target)
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

    @staticmethod
    def _shape(request: web.Request) -> tuple[str | None, str]:
        """(negotiated transform, Table includeObject) of a read request."""
        target = negotiate(request.headers.get("Accept", ""))
        return target, include_object(request.query) if target == "Table" else "Metadata"

    async def _list(self, request: web.Request, target: Target) -> web.Response:
        query = request.query
        labels, fields = label_selector(query.get("labelSelector")), field_selector(query.get("fieldSelector"))
        shape = self._shape(request)
        body = await read_list(self.store, target.kind, target.namespace, query, lambda o: labels(o) and fields(o),
                               selective=bool(query.get("labelSelector") or query.get("fieldSelector")),
                               fresh_wait=self.policy.fresh_wait)
        return _json(shape_list(body, target.kind, *shape))

    async def _watch(self, request: web.Request, target: Target, user: str) -> web.StreamResponse:
        labels, fields = label_selector(request.query.get("labelSelector")), field_selector(request.query.get("fieldSelector"))
        shape, include = self._shape(request)
        first = True

        def line(kind: str, obj: dict[str, Any]) -> bytes:
            nonlocal first
            shaped, first = shape_event(obj, target.kind, shape, include, first=first), False
            return (_dumps({"type": kind, "object": shaped}) + "\n").encode()

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
        if expired:
            await response.prepare(request)
            gone = status_body(410, "Expired", f"too old resource version: {since} ({self.store.compacted_rv})")
            await response.write((_dumps({"type": "ERROR", "object": gone}) + "\n").encode())
            return response
        # Registered before the first await: a write while the stream opens is queued, not lost.
        self.store.watchers.add(watcher)
        bookmarks = request.query.get("allowWatchBookmarks") in ("true", "1")
        timeout = float(request.query.get("timeoutSeconds") or 1800)
        deadline = time.monotonic() + timeout
        try:
            await response.prepare(request)
            while (left := deadline - time.monotonic()) > 0:
                wait = min(left, self.policy.bookmark_interval) if bookmarks else left
                try:
                    async with asyncio.timeout(wait):
                        item = await watcher.queue.get()
                except TimeoutError:
                    if bookmarks and deadline - time.monotonic() > 0:
                        # Only kind, apiVersion and metadata.resourceVersion, as the real server's bookmarks.
                        mark = {"kind": target.kind.kind, "apiVersion": target.kind.api_version,
                                "metadata": {"resourceVersion": str(self.store.rv)}}
                        await response.write(line("BOOKMARK", mark))
                    continue
                if item is None:
                    break  # cut by a fault, a deny rule or shutdown
                await response.write(line(*item))
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
