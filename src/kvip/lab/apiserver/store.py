"""The stand-in's state: objects, one global resourceVersion, bounded history, live watchers.

Behaves like etcd behind the real API server where kvip can tell the difference: every write bumps
one global revision, which becomes the object's resourceVersion; watches replay history after a
revision and fail with 410 Expired past the compaction point; updates with a stale resourceVersion
conflict. Stored objects are never mutated in place (writes store new dicts), so readers can
serialize them without copying.
"""

from __future__ import annotations

import asyncio
import copy
import datetime as dt
import secrets
import uuid
from collections import deque
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from kvip.lab.apiserver.kinds import BY_API_KIND, BY_PLURAL, Kind
from kvip.lab.apiserver.selectors import Matcher

Key = tuple[str, str, str]  # (plural, namespace or "", name)


class StoreError(Exception):
    def __init__(self, code: int, reason: str, message: str) -> None:
        super().__init__(message)
        self.code, self.reason, self.message = code, reason, message


def now_rfc3339() -> str:
    return dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def merge_patch(target: Any, patch: Any) -> Any:
    """RFC 7386 JSON merge patch (used for strategic merge too: maps merge, lists replace).

    Returns a new object sharing nothing with `target`: stored objects are never mutated in place,
    and the caller edits the result (a shallow copy let it delete the stored resourceVersion)."""
    return _merge_into(copy.deepcopy(target), patch)


def _merge_into(target: Any, patch: Any) -> Any:
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    result = target if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = _merge_into(result.get(key), value)
    return result


@dataclass
class Event:
    rv: int
    plural: str
    type: str
    obj: dict[str, Any]
    old: dict[str, Any] | None = None


@dataclass(eq=False)
class Watcher:
    plural: str
    namespace: str | None
    matches: Matcher
    user: str
    queue: asyncio.Queue[tuple[str, dict[str, Any]] | None] = field(default_factory=asyncio.Queue)
    loop: asyncio.AbstractEventLoop | None = None

    def offer(self, event: Event) -> None:
        if self.namespace and (event.obj.get("metadata") or {}).get("namespace") != self.namespace:
            return
        new_match = self.matches(event.obj)
        old_match = event.old is not None and self.matches(event.old)
        kind = event.type
        if kind == "MODIFIED" and new_match != old_match:
            # Like the real watch cache: moving in or out of a selector is ADDED / DELETED.
            kind = "ADDED" if new_match else "DELETED"
        elif not new_match:
            return
        self.put((kind, event.obj))

    def put(self, item: tuple[str, dict[str, Any]] | None) -> None:
        if self.loop is not None and self.loop.is_running():
            try:
                running = asyncio.get_running_loop()
            except RuntimeError:
                running = None
            if running is not self.loop:
                self.loop.call_soon_threadsafe(self.queue.put_nowait, item)
                return
        self.queue.put_nowait(item)


@dataclass
class DropRule:
    plural: str
    remaining: int | None
    types: frozenset[str]


class Store:
    def __init__(self, history_limit: int = 10_000) -> None:
        self.objects: dict[Key, dict[str, Any]] = {}
        self.rv = 1
        self.history: deque[Event] = deque(maxlen=history_limit)
        self.compacted_rv = 1  # watches from a revision below this get 410
        self.watchers: set[Watcher] = set()
        self.drops: list[DropRule] = []
        # What each write replaced, newest last: lists and continue tokens read "as of" an older
        # revision by undoing these. Bounded like `history`, and kept apart from it because a
        # dropped event (a fault) hides a change from watchers, never from the store's past.
        self.changes: deque[tuple[int, Key, dict[str, Any] | None]] = deque(maxlen=history_limit)
        self._snapshot_floor = 1  # the oldest revision a list can still be served at

    # -- reads -------------------------------------------------------------------------------

    def get(self, plural: str, namespace: str | None, name: str) -> dict[str, Any]:
        obj = self.objects.get((plural, namespace or "", name))
        if obj is None:
            kind = BY_PLURAL[plural]
            raise StoreError(404, "NotFound", f'{kind.group_resource} "{name}" not found')
        return obj

    def list(self, plural: str, namespace: str | None, matches: Matcher | None = None) -> list[dict[str, Any]]:
        out = []
        for (p, ns, _), obj in self.objects.items():
            if p != plural or (namespace and ns != namespace):
                continue
            if matches is None or matches(obj):
                out.append(obj)
        return out

    def list_at(self, plural: str, namespace: str | None, rv: int) -> list[dict[str, Any]] | None:
        """The objects as they were at revision `rv` (etcd's read at a revision), or None when that
        revision is compacted (→ 410 Expired)."""
        if rv >= self.rv:
            return self.list(plural, namespace)
        if rv < self._snapshot_floor:
            return None
        state = {key: obj for key, obj in self.objects.items() if key[0] == plural}
        for change_rv, key, previous in reversed(self.changes):
            if change_rv <= rv:
                break
            if key[0] != plural:
                continue
            if previous is None:
                state.pop(key, None)
            else:
                state[key] = previous
        return [obj for key, obj in state.items() if not namespace or key[1] == namespace]

    # -- writes ------------------------------------------------------------------------------

    def create(self, obj: Mapping[str, Any], plural: str | None = None, namespace: str | None = None) -> dict[str, Any]:
        kind = self._kind(obj, plural)
        new = copy.deepcopy(dict(obj))
        new.setdefault("apiVersion", kind.api_version)
        new.setdefault("kind", kind.kind)
        meta = new.setdefault("metadata", {})
        if kind.namespaced:
            meta["namespace"] = meta.get("namespace") or namespace or "default"
        else:
            meta.pop("namespace", None)
        if not meta.get("name"):
            if meta.get("generateName"):
                meta["name"] = meta["generateName"] + secrets.token_hex(3)[:5]
            else:
                raise StoreError(422, "Invalid", f"{kind.kind} \"\" is invalid: metadata.name: Required value: "
                                                 "name or generateName is required")
        key = (kind.plural, meta.get("namespace", ""), meta["name"])
        if key in self.objects:
            raise StoreError(409, "AlreadyExists", f'{kind.group_resource} "{meta["name"]}" already exists')
        meta["uid"] = str(uuid.uuid4())
        meta["creationTimestamp"] = now_rfc3339()
        meta.pop("deletionTimestamp", None)
        if kind.plural == "services":
            new.setdefault("status", {}).setdefault("loadBalancer", {})
        return self._commit(key, "ADDED", new, None)

    def update(self, obj: Mapping[str, Any], plural: str, namespace: str | None, name: str,
               subresource: str | None = None) -> dict[str, Any]:
        current = self.get(plural, namespace, name)
        incoming = copy.deepcopy(dict(obj))
        want_rv = (incoming.get("metadata") or {}).get("resourceVersion")
        if want_rv and want_rv != current["metadata"]["resourceVersion"]:
            kind = BY_PLURAL[plural]
            raise StoreError(409, "Conflict", f'Operation cannot be fulfilled on {kind.group_resource} "{name}": '
                                              "the object has been modified; please apply your changes to the "
                                              "latest version and try again")
        if subresource == "status":
            new = {**copy.deepcopy(current), "status": incoming.get("status", {})}
        else:
            new = incoming
            if "status" in current and plural in ("services", "nodes", "pods") and "status" not in new:
                new["status"] = current["status"]
            meta = new.setdefault("metadata", {})
            for fixed in ("uid", "creationTimestamp", "deletionTimestamp", "namespace", "name"):
                if fixed in current["metadata"]:
                    meta[fixed] = current["metadata"][fixed]
                else:
                    meta.pop(fixed, None)
        return self._finish_update(plural, namespace, name, current, new)

    def patch(self, patch: Mapping[str, Any], plural: str, namespace: str | None, name: str,
              subresource: str | None = None) -> dict[str, Any]:
        current = self.get(plural, namespace, name)
        if subresource == "status":
            patch = {"status": patch.get("status", {})} if "status" in patch else {}
        want_rv = (patch.get("metadata") or {}).get("resourceVersion") if isinstance(patch.get("metadata"), dict) else None
        if want_rv and want_rv != current["metadata"]["resourceVersion"]:
            raise StoreError(409, "Conflict", f'Operation cannot be fulfilled on {BY_PLURAL[plural].group_resource} '
                                              f'"{name}": the object has been modified; please apply your changes '
                                              "to the latest version and try again")
        new = merge_patch(current, patch)
        for fixed in ("uid", "creationTimestamp", "name", "namespace"):
            if fixed in current["metadata"]:
                new["metadata"][fixed] = current["metadata"][fixed]
        return self._finish_update(plural, namespace, name, current, new)

    def delete(self, plural: str, namespace: str | None, name: str) -> dict[str, Any]:
        current = self.get(plural, namespace, name)
        if current["metadata"].get("finalizers"):
            if current["metadata"].get("deletionTimestamp"):
                return current
            new = copy.deepcopy(current)
            new["metadata"]["deletionTimestamp"] = now_rfc3339()
            return self._commit(self._key(plural, namespace, name), "MODIFIED", new, current)
        return self._remove(plural, namespace, name, current)

    # -- faults ------------------------------------------------------------------------------

    def compact(self) -> None:
        self.history.clear()
        self.changes.clear()
        self.compacted_rv = self._snapshot_floor = self.rv

    def drop_events(self, plural: str, count: int | None, types: Iterable[str]) -> None:
        self.drops.append(DropRule(plural, count, frozenset(types)))

    # -- watch support -----------------------------------------------------------------------

    def replay_after(self, rv: int) -> list[Event] | None:
        """Events after `rv`, or None when history no longer reaches back that far (→ 410)."""
        oldest_known = self.history[0].rv - 1 if self.history else self.rv
        if rv < self.compacted_rv or rv < oldest_known:
            return None
        return [e for e in self.history if e.rv > rv]

    # -- internals ---------------------------------------------------------------------------

    def _kind(self, obj: Mapping[str, Any], plural: str | None) -> Kind:
        if plural:
            return BY_PLURAL[plural]
        kind = BY_API_KIND.get((obj.get("apiVersion", ""), obj.get("kind", "")))
        if kind is None:
            raise StoreError(400, "BadRequest", f"no kind {obj.get('kind')!r} in {obj.get('apiVersion')!r}")
        return kind

    @staticmethod
    def _key(plural: str, namespace: str | None, name: str) -> Key:
        return (plural, namespace or "", name)

    def _finish_update(self, plural: str, namespace: str | None, name: str, current: dict[str, Any],
                       new: dict[str, Any]) -> dict[str, Any]:
        meta = new.setdefault("metadata", {})
        meta.pop("resourceVersion", None)
        if current["metadata"].get("deletionTimestamp") and not meta.get("finalizers"):
            return self._remove(plural, namespace, name, current)
        comparable = {k: v for k, v in current.items() if k != "metadata"}, {
            k: v for k, v in current["metadata"].items() if k != "resourceVersion"}
        if comparable == ({k: v for k, v in new.items() if k != "metadata"}, meta):
            return current  # a no-op write does not bump the revision, like the real server
        return self._commit(self._key(plural, namespace, name), "MODIFIED", new, current)

    def _remove(self, plural: str, namespace: str | None, name: str, current: dict[str, Any]) -> dict[str, Any]:
        key = self._key(plural, namespace, name)
        del self.objects[key]
        self.rv += 1
        self._remember(key, current)
        gone = copy.deepcopy(current)
        gone["metadata"]["resourceVersion"] = str(self.rv)
        self._publish(Event(self.rv, plural, "DELETED", gone))
        return gone

    def _commit(self, key: Key, kind: str, new: dict[str, Any], old: dict[str, Any] | None) -> dict[str, Any]:
        self.rv += 1
        new["metadata"]["resourceVersion"] = str(self.rv)
        self._remember(key, self.objects.get(key))
        self.objects[key] = new
        self._publish(Event(self.rv, key[0], kind, new, old))
        return new

    def _remember(self, key: Key, previous: dict[str, Any] | None) -> None:
        if len(self.changes) == self.changes.maxlen:
            # The change about to fall off can no longer be undone: revisions before it are gone.
            self._snapshot_floor = max(self._snapshot_floor, self.changes[0][0] if self.changes else self.rv)
        self.changes.append((self.rv, key, previous))

    def _publish(self, event: Event) -> None:
        for rule in list(self.drops):
            if rule.plural == event.plural and event.type in rule.types:
                if rule.remaining is not None:
                    rule.remaining -= 1
                    if rule.remaining <= 0:
                        self.drops.remove(rule)
                return  # the store changed; no watcher hears of it, not even on replay
        self.history.append(event)
        for watcher in list(self.watchers):
            if watcher.plural == event.plural:
                watcher.offer(event)

    def close_watchers(self, predicate: Callable[[Watcher], bool] = lambda w: True) -> None:
        for watcher in list(self.watchers):
            if predicate(watcher):
                watcher.put(None)
