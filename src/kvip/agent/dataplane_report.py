"""The agent's report on its DHCP leases and egress rules (kvip issue #19): status rows, metrics, drift.

Fed by each reconcile pass (`observe`, a reconciler observer placed before the heartbeat is told) and
by a read of kvip's macvlans (`run`: after each pass, at most once a second, and every resync period).
The decisions are `kvip.core.dataplane_report`'s; this only gathers the inputs: the DHCP runner's
clients, the pass's egress diff, the links present.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Hashable, Iterable, Mapping
from typing import Any

from kvip.agent.dhcp import DhcpRunner
from kvip.agent.metrics import AgentMetrics, DataplaneMetrics
from kvip.agent.status_doc import StatusLimits, dataplane_sections
from kvip.core.dataplane_report import (
    EgressView,
    LeaseView,
    bounded,
    dhcp_drift,
    egress_drift,
    egress_repairs,
    egress_views,
    lease_events,
    lease_view,
    other_view,
)
from kvip.core.dhcp import DHCP_PENDING
from kvip.core.dhcp_timers import LeaseState
from kvip.core.model import EgressRule, ServiceKey
from kvip.dataplane.base import Dataplane
from kvip.dataplane.dhcp import macvlan
from kvip.reconcile import ReconcileResult
from kvip.runtime.tasks import wait_event

log = logging.getLogger("kvip.dataplane_report")

EGRESS_BACKEND = "egress"
MIN_READ_INTERVAL = 1.0


def egress_table(backends: Iterable[Dataplane[Any]]) -> str | None:
    """The egress backend's table (`inet kvip_egress...`), None when egress is off."""
    return next((str(b.status().get("table", "")) for b in backends if b.name == EGRESS_BACKEND), None)


class DataplaneReport:
    def __init__(self, dhcp: DhcpRunner, metrics: AgentMetrics, table: str | None, period: float) -> None:
        self._dhcp = dhcp
        self._metrics = metrics
        self._counters = DataplaneMetrics(metrics.registry)
        self._table = table
        self._period = period
        self._sampled: dict[tuple[ServiceKey, int], LeaseState] = {}  # by Service and family
        self._pending: tuple[ServiceKey, ...] = ()
        self._rules: frozenset[EgressRule] | None = None
        self._egress_drift: tuple[str, ...] = ()
        self._refused: frozenset[Hashable] = frozenset()  # egress items the last pass could not change
        self._seen_links: frozenset[str] | None = None  # kvip's macvlans at the last read
        self._orphans: frozenset[str] = frozenset()  # ours, unused at two reads in a row
        self._wake = asyncio.Event()

    # -- inputs ----------------------------------------------------------------------------------

    def observe(self, result: ReconcileResult) -> None:
        self._pending = tuple(k for k, d in result.desired.decisions.items() if d.reason == DHCP_PENDING)
        clients = {key: state for key, (_, state) in self._dhcp.clients().items()}
        events = lease_events(self._sampled, clients)
        self._sampled = clients
        served = {service for service, _ in clients}
        states = [state.phase.value for state in clients.values()]  # DHCPv4 and DHCPv6 clients alike
        states += [other_view(k, lease).state for k, lease in self._dhcp.leases().items() if k not in served]
        self._counters.observe_leases(states, events.renewals, events.lost)
        rules = result.desired.egress
        diff = next((d for d in result.diffs if d.backend == EGRESS_BACKEND), None)
        changed = (diff.added | diff.removed) - set(diff.failed) if diff is not None else frozenset()
        self._counters.observe_egress(len(rules), egress_repairs(self._rules, rules, changed, self._refused))
        self._rules, self._refused = rules, frozenset(diff.failed) if diff is not None else frozenset()
        self._egress_drift = egress_drift({str(k): v for k, v in diff.failed.items()} if diff is not None else {})
        self._metrics.drift.labels("dhcp").set(len(self._dhcp_drift()))
        self._wake.set()

    async def run(self) -> None:
        """Reads kvip's macvlans: one that no client uses at two reads in a row is drift."""
        while True:
            await wait_event(self._wake, self._period)
            self._wake.clear()
            try:
                links = frozenset(await macvlan.ours())
            except Exception as exc:  # noqa: BLE001 (a report: never more than a log line)
                log.debug("cannot list macvlans: %s", exc)
                links = frozenset()
            in_use = {lease.interface for lease in self._dhcp.leases().values()}  # DHCPv4 or v6 clients
            unused = links - in_use
            self._orphans = unused & (self._seen_links or frozenset())
            self._seen_links = unused
            self._metrics.drift.labels("dhcp").set(len(self._dhcp_drift()))
            await asyncio.sleep(MIN_READ_INTERVAL)

    # -- outputs ---------------------------------------------------------------------------------

    def _dhcp_drift(self) -> tuple[str, ...]:
        return dhcp_drift(self._pending, self._dhcp.leases(), self._orphans, ())

    def drift(self) -> tuple[str, ...]:
        """What the heartbeat carries and /status lists (bounded)."""
        return bounded((*self._dhcp_drift(), *self._egress_drift))

    def leases(self, now: float) -> tuple[LeaseView, ...]:
        """A row per client (a Service asking for both families has two, DHCPv4's first), and one per
        Service whose client could not start."""
        clients = self._dhcp.clients()
        rows = [lease_view(key, ask, state, now) for (key, _), (ask, state) in clients.items()]
        served = {service for service, _ in clients}
        rows += [other_view(k, lease) for k, lease in self._dhcp.leases().items() if k not in served]
        return tuple(sorted(rows, key=lambda row: row.service))

    def egress(self) -> tuple[EgressView, ...]:
        return egress_views(self._rules or (), self._table or "")

    def sections(self, limits: StatusLimits | None = None) -> Mapping[str, Any]:
        now = asyncio.get_running_loop().time()
        return dataplane_sections(self.leases(now), self.egress(), self.drift(), limits or StatusLimits())

