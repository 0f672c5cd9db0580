"""Every request the stand-in served, for tests that must count writes, not infer them.

A no-op write does not change a resourceVersion (on the real server nor here), so "nobody rewrote
the status" can only be proven by counting the write requests themselves. Bounded: the oldest
entries go first, and `total` keeps counting so a test can tell when its window was cut.
"""

from __future__ import annotations

from collections import deque
from dataclasses import asdict, dataclass
from typing import Any

WRITE_VERBS = frozenset({"create", "update", "patch", "delete"})


@dataclass(frozen=True)
class RequestRecord:
    seq: int  # 1 for the first request this stand-in ever served
    method: str
    path: str
    resource: str  # "services/status", "leases"; "" for discovery, health and control paths
    verb: str  # get, list, watch, create, update, patch, delete; "" when not a resource request
    status: int
    bytes_in: int  # request body
    bytes_out: int  # response as written on the wire: headers, body (gzip-compressed when negotiated), chunk framing

    def as_json(self) -> dict[str, Any]:
        return asdict(self)


class RequestLog:
    def __init__(self, limit: int = 100_000) -> None:
        self._entries: deque[RequestRecord] = deque(maxlen=limit)
        self.total = 0

    def add(self, *, method: str, path: str, resource: str, verb: str, status: int, bytes_in: int,
            bytes_out: int) -> None:
        self.total += 1
        self._entries.append(RequestRecord(self.total, method, path, resource, verb, status, bytes_in, bytes_out))

    def query(self, *, resource: str | None = None, verbs: frozenset[str] | None = None, method: str | None = None,
              path_prefix: str | None = None, after: int = 0) -> list[RequestRecord]:
        """Entries matching every given filter, oldest first; `after` is a `seq` (0: from the start)."""
        return [r for r in self._entries
                if r.seq > after
                and (resource is None or r.resource == resource)
                and (verbs is None or r.verb in verbs)
                and (method is None or r.method == method.upper())
                and (path_prefix is None or r.path.startswith(path_prefix))]
