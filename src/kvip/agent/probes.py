"""Local endpoint probes: the node's own check of the endpoints it advertises for.

When the API is unreachable the cache is all an agent has, and it may be lying (the pod was
rescheduled meanwhile). Probing the local endpoints directly gives a second source of truth: an
endpoint counts as usable only while the API says ready *and* its probe agrees. The probe verdicts
are one more input of `decide()`. One scheduler probes every target each interval (bounded
concurrency), with rise/fall hysteresis as in anycast-healthchecker; no task per endpoint.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from kvip.config.settings import ProbeSettings  # built by the configuration
from kvip.core.model import BadInput, ClusterSnapshot, ProbeVerdicts

log = logging.getLogger("kvip.agent.probes")

PROBE_ANNOTATION = "kvip.io/probe"  # off | tcp | http:<path>
MAX_PROBE_PATH = 256
CONCURRENCY = 256


@dataclass(frozen=True, order=True)
class ProbeTarget:
    address: str
    port: int
    kind: str = "tcp"  # tcp | http
    path: str = "/"


@dataclass
class _Health:
    up: bool = True  # a new endpoint starts trusted: the API already says it is ready
    streak: int = 0
    last_error: str = ""


class ProbeSpecError(ValueError):
    pass


@dataclass(frozen=True)
class ProbeSpec:
    kind: str  # off | tcp | http
    path: str = "/"


@dataclass(frozen=True)
class ProbePlan:
    """What to probe on this node, and the Services whose probe annotation was refused."""

    targets: frozenset[ProbeTarget]
    problems: tuple[BadInput, ...] = ()


def parse_probe_spec(text: str) -> ProbeSpec:
    """`off`, `tcp`, `http` or `http:<path>`. The path goes verbatim into an HTTP request line sent from
    the host network, so it must be a plain origin-form path: it starts with "/", is printable ASCII
    without spaces (no CR/LF: no smuggled headers or second request) and at most MAX_PROBE_PATH long."""
    spec = text.strip()
    kind, sep, path = spec.partition(":")
    kind = kind.lower()
    if kind in ("off", "none", "false") and not sep:
        return ProbeSpec("off")
    if kind == "tcp" and not sep:
        return ProbeSpec("tcp")
    if kind != "http":
        raise ProbeSpecError(f"{PROBE_ANNOTATION}={_shown(text)}: not off, tcp, http or http:<path>")
    if not sep or not path:
        return ProbeSpec("http", "/")
    if len(path) > MAX_PROBE_PATH:
        raise ProbeSpecError(f"{PROBE_ANNOTATION}: the HTTP path is longer than {MAX_PROBE_PATH} characters")
    if not path.startswith("/") or not all("!" <= c <= "~" for c in path):
        raise ProbeSpecError(f"{PROBE_ANNOTATION}={_shown(text)}: the HTTP path must start with / and hold only "
                             "printable ASCII without spaces")
    return ProbeSpec("http", path)


def _shown(text: str) -> str:
    return repr(text[:80] + ("..." if len(text) > 80 else ""))


def probe_plan(snapshot: ClusterSnapshot, node: str, default_kind: str = "tcp") -> ProbePlan:
    """Every ready local endpoint of a LoadBalancer service, on its first port, unless the service opts
    out; a service with an invalid probe annotation is not probed (its endpoints count as the API says)
    and gets a problem instead."""
    found: set[ProbeTarget] = set()
    problems: list[BadInput] = []
    for key, endpoints in snapshot.endpoints.items():
        service = snapshot.services.get(key)
        if service is None:
            continue
        try:
            spec = parse_probe_spec(service.annotations.get(PROBE_ANNOTATION, default_kind))
        except ProbeSpecError as exc:
            problems.append(BadInput(key, "InvalidProbe", f"{exc}; not probed"))
            continue
        if spec.kind == "off":
            continue
        for endpoint in endpoints:
            if endpoint.node_name != node or not endpoint.ready:
                continue
            port = next((p.port for p in endpoint.ports if p.port), None)
            if port is None:
                continue
            found.update(ProbeTarget(address, port, spec.kind, spec.path) for address in endpoint.addresses)
    return ProbePlan(frozenset(found), tuple(problems))


def targets_for_node(snapshot: ClusterSnapshot, node: str, default_kind: str = "tcp") -> set[ProbeTarget]:
    """The targets of `probe_plan` (its problems dropped)."""
    return set(probe_plan(snapshot, node, default_kind).targets)


@dataclass
class ProbeScheduler:
    settings: ProbeSettings
    on_change: Callable[[], None]
    _health: dict[ProbeTarget, _Health] = field(default_factory=dict)
    _failing: frozenset[str] = frozenset()

    def set_targets(self, targets: Iterable[ProbeTarget]) -> None:
        wanted = set(targets)
        for gone in set(self._health) - wanted:
            del self._health[gone]
        for new in wanted - set(self._health):
            self._health[new] = _Health()
        self._publish()

    def verdicts(self) -> ProbeVerdicts:
        return ProbeVerdicts(self._failing)

    def observe(self, snapshot: ClusterSnapshot, node: str, default_kind: str = "tcp"
                ) -> tuple[ProbeVerdicts, tuple[BadInput, ...]]:
        """A pass's view: probe what `snapshot` asks of this node (probe_plan); the verdicts so far, and the
        probe annotations refused (reported with decide()'s problems)."""
        plan = probe_plan(snapshot, node, default_kind)
        self.set_targets(plan.targets)
        return self.verdicts(), plan.problems

    async def run(self) -> None:
        while True:
            await self.probe_all()
            await asyncio.sleep(self.settings.interval)

    async def probe_all(self) -> None:
        gate = asyncio.Semaphore(CONCURRENCY)

        async def one(target: ProbeTarget) -> tuple[ProbeTarget, str | None]:
            async with gate:
                return target, await self._probe(target)

        results = await asyncio.gather(*(one(t) for t in list(self._health)))
        for target, error in results:
            health = self._health.get(target)
            if health is not None:
                self._update(target, health, error)
        self._publish()

    def _update(self, target: ProbeTarget, health: _Health, error: str | None) -> None:
        ok = error is None
        if ok == health.up:
            health.streak = 0
            return
        health.streak += 1
        health.last_error = error or ""
        if health.streak >= (self.settings.rise if ok else self.settings.fall):
            health.up, health.streak = ok, 0
            log.log(logging.INFO if ok else logging.WARNING, "probe %s %s:%d %s%s", target.kind, target.address,
                    target.port, "up" if ok else "down", "" if ok else f" ({error})")

    def _publish(self) -> None:
        failing = frozenset(t.address for t, h in self._health.items() if not h.up)
        if failing != self._failing:
            self._failing = failing
            self.on_change()

    async def _probe(self, target: ProbeTarget) -> str | None:
        try:
            async with asyncio.timeout(self.settings.timeout):
                reader, writer = await asyncio.open_connection(target.address, target.port)
                try:
                    if target.kind == "http":
                        parse_probe_spec(f"http:{target.path}")  # raises before anything is written
                        host = f"[{target.address}]" if ":" in target.address else target.address
                        writer.write(f"GET {target.path} HTTP/1.0\r\nHost: {host}\r\n\r\n".encode())
                        await writer.drain()
                        status = (await reader.readline()).split()
                        if len(status) < 2 or not status[1].startswith(b"2"):
                            return f"HTTP {status[1].decode() if len(status) > 1 else '?'}"
                finally:
                    writer.close()
            return None
        except (OSError, TimeoutError, ProbeSpecError) as exc:
            return type(exc).__name__ if not str(exc) else str(exc)
