"""Kubernetes Events: bad input (so `kubectl describe service` says why a VIP is not advertised),
and this node starting or stopping to advertise a service.

Owns a deduplicated, rate-limited outbox. A problem is queued once while it persists (not once per
reconcile) and again only if it went away and came back. Before anything is sent, `EventCorrelator`
(client-go's EventCorrelator, simplified) decides: an Event identical to one already posted — same
object, reason and message — becomes a count update (patch) of that Event instead of a new object;
every post takes a token from a bucket per (object, reason) and from one global bucket, so a flapping
Service or a thousand bad ones cannot flood the API server from every node (kvip issue #17, row 12).
What is dropped stays in the log and in `kvip status`. Posting is best effort: a 403 on events must
never slow or stop reconciliation, so failures are logged once and dropped.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass

from lightkube import AsyncClient
from lightkube.types import PatchType

from kvip.core.model import CONTROL_PLANE_KEY, BadInput, ServiceDecision, ServiceKey
from kvip.kube.errors import ApiFailure, classify, describe
from kvip.kube.resources import Event

log = logging.getLogger("kvip.events")

SUMMARIZE_OVER = 3
MAX_MESSAGE = 1024  # what events.k8s.io accepts as a note; longer text is cut


@dataclass(frozen=True)
class RateLimits:
    """Token buckets: `burst` posts at once, then one every `1/rate` seconds."""

    per_key_burst: int = 5  # per (object, reason)
    per_key_rate: float = 1 / 60
    global_burst: int = 25  # all Events of this process
    global_rate: float = 1.0
    dedupe_window: float = 600.0  # an identical Event older than this is posted anew, not counted
    remembered: int = 4096  # identical-Event cache size (LRU)


@dataclass(frozen=True)
class Post:
    """What to send: a new Event (`name` None) or a count update of the Event `name`."""

    problem: BadInput
    type: str
    count: int
    name: str | None


class TokenBucket:
    def __init__(self, burst: int, rate: float, now: float) -> None:
        self.burst, self.rate = burst, rate
        self.tokens, self.at = float(burst), now

    def ready(self, now: float) -> bool:
        self.tokens = min(self.burst, self.tokens + (now - self.at) * self.rate)
        self.at = now
        return self.tokens >= 1

    def take(self) -> None:
        self.tokens -= 1

    def full(self, now: float) -> bool:
        return self.tokens + (now - self.at) * self.rate >= self.burst


@dataclass
class _Seen:
    name: str | None  # None until the create returned the server-assigned name
    count: int
    at: float


class EventCorrelator:
    """Pure decisions on a clock: dedupe identical Events into counts, rate-limit the rest."""

    def __init__(self, limits: RateLimits = RateLimits(), clock: Callable[[], float] = time.monotonic) -> None:
        self.limits = limits
        self._clock = clock
        self._global = TokenBucket(limits.global_burst, limits.global_rate, clock())
        self._buckets: dict[tuple[ServiceKey, str], TokenBucket] = {}
        self._seen: OrderedDict[BadInput, _Seen] = OrderedDict()
        self.dropped = 0

    def admit(self, problem: BadInput, type_: str = "Warning") -> Post | None:
        """The post to make for this Event now, or None when a rate limit drops it."""
        now = self._clock()
        limits = self.limits
        seen = self._seen.get(problem)
        if seen is not None and now - seen.at > limits.dedupe_window:
            del self._seen[problem]
            seen = None
        key = (problem.service, problem.reason)
        bucket = self._buckets.get(key)
        if bucket is None:
            if len(self._buckets) >= limits.remembered:
                self._forget_full_buckets(now)
            bucket = self._buckets[key] = TokenBucket(limits.per_key_burst, limits.per_key_rate, now)
        if seen is not None:
            seen.count += 1  # counted even when dropped: the next update carries the true count
            seen.at = now
            self._seen.move_to_end(problem)
        if not (bucket.ready(now) and self._global.ready(now)):
            self.dropped += 1
            return None
        bucket.take()
        self._global.take()
        if seen is None or seen.name is None:
            count = seen.count if seen is not None else 1
            self._remember(problem, _Seen(None, count, now))
            return Post(problem, type_, count, None)
        return Post(problem, type_, seen.count, seen.name)

    def posted(self, problem: BadInput, name: str) -> None:
        """The server named the Event it created for `problem`: later identical ones update it."""
        seen = self._seen.get(problem)
        if seen is not None:
            seen.name = name

    def forget(self, problem: BadInput) -> None:
        """The Event to update is gone (expired on the server): the next one is created anew."""
        self._seen.pop(problem, None)

    def _remember(self, problem: BadInput, seen: _Seen) -> None:
        self._seen[problem] = seen
        self._seen.move_to_end(problem)
        while len(self._seen) > self.limits.remembered:
            self._seen.popitem(last=False)

    def _forget_full_buckets(self, now: float) -> None:
        # A full bucket holds no state worth keeping; forgetting it bounds memory under churn.
        for key in [k for k, b in self._buckets.items() if b.full(now)]:
            del self._buckets[key]


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
    def __init__(self, client: AsyncClient, *, node_name: str, component: str = "kvip",
                 limits: RateLimits = RateLimits(), clock: Callable[[], float] = time.monotonic) -> None:
        self._client = client
        self._node = node_name
        self._component = component
        self._active: set[BadInput] = set()
        self._queue: asyncio.Queue[tuple[BadInput, str]] = asyncio.Queue(maxsize=1000)
        self._warned = False
        self._advertised: dict[ServiceKey, bool] | None = None
        self.correlator = EventCorrelator(limits, clock)
        self._dropped_reported = 0

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

    def report_transitions(self, decisions: Mapping[ServiceKey, ServiceDecision],
                           changed: Iterable[ServiceKey] | None = None) -> None:
        """A Normal Event when this node starts or stops advertising a service (not on every pass).
        `changed`: the only keys whose decision may differ from the last call's (None: any; kvip issue
        #21). The control-plane VIP is no Service: it never gets an Event."""
        previous = self._advertised
        if previous is None or changed is None:
            self._advertised, keys = {}, decisions.keys()
        else:
            keys = changed
        for key in keys:
            decision = decisions.get(key)
            if decision is None or key == CONTROL_PLANE_KEY:
                self._advertised.pop(key, None)
                continue
            was = previous.get(key, False) if previous is not None else decision.advertised
            self._advertised[key] = decision.advertised
            if decision.advertised == was or self._queue.full():
                continue
            vips = ", ".join(str(v) for v in decision.vips)
            if decision.advertised:
                event = BadInput(key, "Advertised", f"node {self._node} advertises {vips}")
            else:
                event = BadInput(key, "Withdrawn", f"node {self._node} withdrew {vips} ({decision.reason})")
            self._queue.put_nowait((event, "Normal"))

    async def run(self) -> None:
        while True:
            problem, kind = await self._queue.get()
            await self.send(problem, kind)

    async def send(self, problem: BadInput, kind: str = "Warning") -> None:
        """Post one Event through the correlator (dedupe, rate limits); never raises an API error."""
        post = self.correlator.admit(problem, kind)
        if post is None:
            self._note_dropped()
            return
        try:
            await self._post(post)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # noqa: BLE001 (best effort: no API failure may stop the outbox)
            if not self._warned:
                log.warning("cannot post Kubernetes Events (%s); problems stay in the log", describe(exc))
                self._warned = True

    def _note_dropped(self) -> None:
        dropped = self.correlator.dropped
        if dropped >= 2 * max(1, self._dropped_reported):  # log at 1, 2, 4, 8 ... drops: bounded log volume
            log.warning("Event rate limit: %d Event(s) not posted so far; problems stay in the log and kvip status",
                        dropped)
            self._dropped_reported = dropped

    async def _post(self, post: Post) -> None:
        now = dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        problem = post.problem
        ns = problem.service.namespace
        if post.name is not None:
            try:
                await self._client.patch(Event, post.name, {"count": post.count, "lastTimestamp": now},
                                         namespace=ns, patch_type=PatchType.MERGE)
                self._warned = False
                return
            except Exception as exc:
                if classify(exc) is not ApiFailure.NOT_FOUND:
                    raise
                self.correlator.forget(problem)  # expired on the server: create it again below
        event = Event(
            {
                "apiVersion": "v1",
                "kind": "Event",
                "metadata": {"generateName": f"{problem.service.name}.kvip-", "namespace": ns},
                "involvedObject": {
                    "apiVersion": "v1", "kind": "Service", "namespace": ns, "name": problem.service.name,
                },
                "reason": problem.reason,
                "message": problem.message[:MAX_MESSAGE],
                "type": post.type,
                "count": post.count,
                "firstTimestamp": now,
                "lastTimestamp": now,
                "source": {"component": self._component, "host": self._node},
                "reportingComponent": self._component,
                "reportingInstance": self._node,
            }
        )
        created = await self._client.create(event, namespace=ns)
        name = (created.metadata.name if created.metadata is not None else None) or ""
        if name:
            self.correlator.posted(problem, name)
        self._warned = False
