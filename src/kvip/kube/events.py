"""Kubernetes Events: bad input (so `kubectl describe service` says why a VIP is not advertised),
and this node starting or stopping to advertise a service.

Owns a deduplicated, rate-limited outbox. A problem is posted once while it persists (not once per
reconcile) and again only if it went away and came back. Posting is best effort: a 403 on events
must never slow or stop reconciliation, so failures are logged once and dropped.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
from collections.abc import Iterable, Mapping

from lightkube import AsyncClient

from kvip.core.model import BadInput, ServiceDecision, ServiceKey
from kvip.kube.errors import describe
from kvip.kube.resources import Event

log = logging.getLogger("kvip.events")


SUMMARIZE_OVER = 3


def _summarized(problems: Iterable[BadInput]) -> list[BadInput]:
    grouped: dict[tuple[ServiceKey, str], list[BadInput]] = {}
    for problem in problems:
        grouped.setdefault((problem.service, problem.reason), []).append(problem)
    out: list[BadInput] = []
    for (service, reason), group in grouped.items():
        if len(group) <= SUMMARIZE_OVER:
            out.extend(group)
        else:
            first = sorted(p.message for p in group)[:2]
            out.append(BadInput(service, reason, f"{len(group)} problems, e.g. {'; '.join(first)}"))
    return out


class EventRecorder:
    def __init__(self, client: AsyncClient, *, node_name: str, component: str = "kvip") -> None:
        self._client = client
        self._node = node_name
        self._component = component
        self._active: set[BadInput] = set()
        self._queue: asyncio.Queue[tuple[BadInput, str]] = asyncio.Queue(maxsize=1000)
        self._warned = False
        self._advertised: dict[ServiceKey, bool] | None = None

    def report(self, problems: Iterable[BadInput]) -> None:
        """Called after every reconcile with the current problems; posts only new ones.

        Many problems of one kind on one service (a 300-entry annotation of garbage) become one
        summarized Event and log line, not 300.
        """
        current = set(_summarized(problems))
        for problem in current - self._active:
            log.warning("service %s: %s: %s", problem.service, problem.reason, problem.message)
            if not self._queue.full():
                self._queue.put_nowait((problem, "Warning"))
        self._active = current

    def report_conflict(self, services: Iterable[ServiceKey], message: str) -> None:
        for key in services:
            if not self._queue.full():
                self._queue.put_nowait((BadInput(key, "VIPConflict", message), "Warning"))

    def report_transitions(self, decisions: Mapping[ServiceKey, ServiceDecision]) -> None:
        """A Normal Event when this node starts or stops advertising a service (not on every pass)."""
        now = {key: d.advertised for key, d in decisions.items()}
        if self._advertised is not None:
            for key, decision in decisions.items():
                if now[key] == self._advertised.get(key, False) or self._queue.full():
                    continue
                vips = ", ".join(str(v) for v in decision.vips)
                if decision.advertised:
                    event = BadInput(key, "Advertised", f"node {self._node} advertises {vips}")
                else:
                    event = BadInput(key, "Withdrawn", f"node {self._node} withdrew {vips} ({decision.reason})")
                self._queue.put_nowait((event, "Normal"))
        self._advertised = now

    async def run(self) -> None:
        while True:
            problem, kind = await self._queue.get()
            try:
                await self._post(problem, kind)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                if not self._warned:
                    log.warning("cannot post Kubernetes Events (%s); problems stay in the log", describe(exc))
                    self._warned = True

    async def _post(self, problem: BadInput, kind: str = "Warning") -> None:
        now = dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
        ns = problem.service.namespace
        event = Event(
            {
                "apiVersion": "v1",
                "kind": "Event",
                "metadata": {"generateName": f"{problem.service.name}.kvip-", "namespace": ns},
                "involvedObject": {
                    "apiVersion": "v1", "kind": "Service", "namespace": ns, "name": problem.service.name,
                },
                "reason": problem.reason,
                "message": problem.message,
                "type": kind,
                "count": 1,
                "firstTimestamp": now,
                "lastTimestamp": now,
                "source": {"component": self._component, "host": self._node},
                "reportingComponent": self._component,
                "reportingInstance": self._node,
            }
        )
        await self._client.create(event, namespace=ns)
        self._warned = False
