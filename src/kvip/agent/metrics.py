"""Prometheus metrics of one agent, fed by reconcile results and read from the cache at scrape time.

Owns a private CollectorRegistry (so tests and several in-process agents never collide). Never
decides anything: it only reports what the reconciler and the reflectors already know. Where kube-vip
exports the same quantity, it is also exported under kube-vip's name (`kube_vip_*`, same labels), so
dashboards built for kube-vip keep working.
"""

from __future__ import annotations

import collections
import time
from collections.abc import Callable, Collection, Iterable, Mapping
from operator import attrgetter

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from kvip import __version__
from kvip.core.model import CONTROL_PLANE_KEY, ServiceDecision, ServiceKey
from kvip.kube.handover import DIRECTIONS, HandoverReport
from kvip.kube.reflector import SourceState, SourceStatus
from kvip.reconcile import ReconcileResult


class _SourceCollector(Collector):
    def __init__(self, statuses: Callable[[], Iterable[SourceStatus]],
                 staleness: Callable[[], float] | None = None) -> None:
        self._statuses = statuses
        self._staleness = staleness

    def collect(self) -> Iterable[Metric]:
        state = GaugeMetricFamily(
            "kvip_source_state", "1 for the current state of each API source", labels=["resource", "state"]
        )
        objects = GaugeMetricFamily("kvip_source_objects", "Objects in the cache per source", labels=["resource"])
        last_list = GaugeMetricFamily(
            "kvip_source_last_list_timestamp_seconds", "Wall clock of the last successful list", labels=["resource"]
        )
        since = GaugeMetricFamily("kvip_source_seconds_since_list", "Seconds since the last successful list",
                                  labels=["resource"])
        relists = GaugeMetricFamily("kvip_source_relists", "Successful lists since start", labels=["resource"])
        restarts = GaugeMetricFamily("kvip_source_watch_restarts", "Watches resumed after an error",
                                     labels=["resource"])
        errors = GaugeMetricFamily("kvip_source_errors", "API errors by HTTP code ('network' for transport)",
                                   labels=["resource", "code"])
        checks, repairs, last_check = _consistency_families()
        for status in self._statuses():
            checks.add_metric([status.resource], status.checks)
            repairs.add_metric([status.resource], status.check_repairs)
            if status.last_check_at is not None:
                last_check.add_metric([status.resource], status.last_check_at)
            for candidate in SourceState:
                state.add_metric([status.resource, candidate.value], 1.0 if candidate is status.state else 0.0)
            objects.add_metric([status.resource], status.objects)
            last_list.add_metric([status.resource], status.last_list_at or 0.0)
            if status.last_list_at is not None:
                since.add_metric([status.resource], max(0.0, time.time() - status.last_list_at))
            relists.add_metric([status.resource], status.relists)
            restarts.add_metric([status.resource], status.watch_restarts)
            for code, count in status.errors.items():
                errors.add_metric([status.resource, code], count)
        yield from (state, objects, last_list, since, relists, restarts, errors, checks, repairs, last_check)
        if self._staleness is not None:
            stale = GaugeMetricFamily("kvip_api_staleness_seconds",
                                      "How long the cache has gone unconfirmed beyond normal (on_api_loss input)")
            stale.add_metric([], self._staleness())
            yield stale


def _consistency_families() -> tuple[CounterMetricFamily, CounterMetricFamily, GaugeMetricFamily]:
    """The consistency check of each source (kvip.kube.consistency): how often it ran, what it repaired."""
    return (CounterMetricFamily("kvip_consistency_checks", "Consistency checks completed (metadata list "
                                "compared with the cache)", labels=["resource"]),
            CounterMetricFamily("kvip_consistency_check_repairs", "Objects a consistency check found different "
                                "from the API server and fetched again", labels=["resource"]),
            GaugeMetricFamily("kvip_consistency_check_last_timestamp_seconds", "Wall clock of the last "
                              "completed consistency check", labels=["resource"]))


class AgentMetrics:
    def __init__(self, node_name: str, statuses: Callable[[], Iterable[SourceStatus]], mode: str = "table",
                 staleness: Callable[[], float] | None = None) -> None:
        self._mode = mode
        self._drifting: set[str] = set()
        self.registry = CollectorRegistry()
        r = self.registry
        self.reconciles = Counter("kvip_reconcile", "Reconcile passes", ["result"], registry=r)
        self.duration = Histogram(
            "kvip_reconcile_duration_seconds", "Time of one reconcile pass", registry=r,
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5),
        )
        self.changes = Counter(
            "kvip_dataplane_changes", "Items added/removed in the dataplane", ["backend", "op"], registry=r
        )
        self.failures = Counter(
            "kvip_dataplane_failures", "Items that could not be changed (retried)", ["backend"], registry=r
        )
        self.drift = Gauge(
            "kvip_drift_items",
            "Items by which the dataplane still differs from the desired state after the last pass (should be 0)",
            ["backend"], registry=r,
        )
        self.repairs = Counter(
            "kvip_repairs",
            "Dataplane items changed, by what woke the pass (source, dataplane, timer, start, retry)",
            ["backend", "cause"], registry=r,
        )
        self.desired_vips = Gauge("kvip_desired_vips", "VIPs this node should advertise", ["mode"], registry=r)
        self.actual_vips = Gauge("kvip_actual_vips", "VIPs the dataplane holds after the last pass", ["mode"],
                                 registry=r)
        self.vip_drift = Gauge("kvip_drift", "1 for a VIP whose dataplane state differs from the desired state",
                               ["vip"], registry=r)
        self.eligible_services = Gauge("kvip_eligible_services", "Services this node may advertise", registry=r)
        self.bad_input = Gauge("kvip_bad_input_services", "Services with input kvip could not use", registry=r)
        self.last_reconcile = Gauge(
            "kvip_last_reconcile_timestamp_seconds", "Wall clock of the last completed pass", registry=r
        )
        self.convergence = Histogram(
            "kvip_convergence_seconds",
            "From the first trigger of a pass (API event, netlink change, lease) to its changes being applied",
            ["backend"], registry=r, buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
        )
        self.conflicts = Counter("kvip_vip_conflicts", "Another MAC answered for a VIP this node holds",
                                 registry=r)
        self.leader = Gauge("kvip_leases_held", "Leases this node holds (fenced)", registry=r)
        self.task_failures = Counter(
            "kvip_task_failures",
            "Agent tasks that raised or ended unexpectedly and were restarted (advertisements kept)",
            ["task"], registry=r,
        )
        self.info = Gauge("kvip_agent_info", "Static facts about this agent", ["node"], registry=r)
        self.info.labels(node_name).set(1)
        # kube-vip's names for the same quantities (its pkg/metrics).
        self._node = node_name
        self._held: set[str] = set()
        self._per_namespace: collections.Counter[str] = collections.Counter()
        self._shown_namespaces: set[str] = set()
        self._eligible = 0
        self._decisions: Mapping[ServiceKey, ServiceDecision] | None = None
        self.kube_vip_active_services = Gauge("kube_vip_active_services", "How many LB services are currently "
                                              "managed", ["namespace"], registry=r)
        self.kube_vip_is_leader = Gauge("kube_vip_is_leader", "1 if this node currently holds the lease",
                                        ["node", "lease_name"], registry=r)
        self.kube_vip_transitions = Counter("kube_vip_leader_election_transitions", "Leases this node acquired",
                                            ["lease_name"], registry=r)
        Gauge("kube_vip_build_info", "Constant 1; kvip's version", ["version", "build", "node"],
              registry=r).labels(f"kvip-{__version__}", "kvip", node_name).set(1)
        r.register(_SourceCollector(statuses, staleness))
        # The control-plane VIP (cp_enable); kube-vip's own is kube_vip_is_leader{lease_name=vip_leasename}.
        self.apiserver_healthy = Gauge("kvip_apiserver_healthy", "1 while this node's kube-apiserver passes its "
                                       "health check (rise/fall applied)", registry=r)
        self.control_plane_leader = Gauge("kvip_control_plane_leader", "1 while this node holds the control-plane "
                                          "Lease (election) or, anycast, advertises the control-plane VIP", registry=r)
        self.control_plane_advertised = Gauge("kvip_control_plane_advertised", "1 while this node should advertise "
                                              "the control-plane VIP", registry=r)

    def observe(self, result: ReconcileResult) -> None:
        self.reconciles.labels("error" if result.error or result.failed else "ok").inc()
        self.duration.observe(result.duration)
        cause = _cause(result.reasons)
        for diff in result.diffs:
            self.drift.labels(diff.backend).set(len(diff.failed))
            if diff.added or diff.removed:
                self.repairs.labels(diff.backend, cause).inc(len(diff.added) + len(diff.removed))
                if result.first_trigger_at is not None:
                    self.convergence.labels(diff.backend).observe(
                        max(0.0, result.started_at + result.duration - result.first_trigger_at))
            if diff.added:
                self.changes.labels(diff.backend, "add").inc(len(diff.added))
            if diff.removed:
                self.changes.labels(diff.backend, "remove").inc(len(diff.removed))
            if diff.failed:
                self.failures.labels(diff.backend).inc(len(diff.failed))
        self.desired_vips.labels(self._mode).set(len(result.desired.advertisements))
        self._count_services(result.desired.decisions, result.changed_services)
        self.bad_input.set(len({p.service for p in result.desired.problems}))
        self.last_reconcile.set(time.time())

    def _count_services(self, decisions: Mapping[ServiceKey, ServiceDecision],
                        changed: Collection[ServiceKey] | None) -> None:
        """Services per namespace and eligible ones, counted again only for `changed` (kvip issue #21); a
        labels().inc() per Service on every pass cost milliseconds at 10,000."""
        previous, self._decisions = self._decisions, decisions
        if previous is None or changed is None:
            self._per_namespace = collections.Counter(map(attrgetter("namespace"), decisions))
            self._eligible = sum(map(attrgetter("eligible"), decisions.values()))
            self._per_namespace[CONTROL_PLANE_KEY.namespace] -= CONTROL_PLANE_KEY in decisions
            self._eligible -= bool((cp := decisions.get(CONTROL_PLANE_KEY)) and cp.eligible)
            touched: Iterable[str] = self._per_namespace.keys() | self._shown_namespaces
        else:
            touched = set()
            for key in changed:
                if key == CONTROL_PLANE_KEY:
                    continue
                old, new = previous.get(key), decisions.get(key)
                self._per_namespace[key.namespace] += (new is not None) - (old is not None)
                self._eligible += bool(new and new.eligible) - bool(old and old.eligible)
                touched.add(key.namespace)
        for namespace in touched:
            if self._per_namespace[namespace] > 0:
                self.kube_vip_active_services.labels(namespace).set(self._per_namespace[namespace])
                self._shown_namespaces.add(namespace)
            elif namespace in self._shown_namespaces:
                self.kube_vip_active_services.remove(namespace)
                self._shown_namespaces.discard(namespace)
        self.eligible_services.set(self._eligible)

    def observe_control_plane(self, healthy: bool, leader: bool | None, advertised: bool) -> None:
        """`leader` None: anycast (no Lease), where every advertising node counts as a leader."""
        self.apiserver_healthy.set(1 if healthy else 0)
        self.control_plane_leader.set(1 if (advertised if leader is None else leader) else 0)
        self.control_plane_advertised.set(1 if advertised else 0)

    def observe_leases(self, held: Iterable[str]) -> None:
        """The Leases this node holds now (by name): kvip_leases_held, kube_vip_is_leader and a transition for
        each newly acquired one; a lost Lease stays at 0, as kube-vip leaves it."""
        now = set(held)
        self.leader.set(len(now))
        for name in now - self._held:
            self.kube_vip_transitions.labels(name).inc()
        for name in now | self._held:
            self.kube_vip_is_leader.labels(self._node, name).set(1 if name in now else 0)
        self._held = now

    def observe_actual(self, desired: set[str], actual: set[str]) -> None:
        self.actual_vips.labels(self._mode).set(len(actual))
        drifting = desired ^ actual
        for vip in self._drifting - drifting:
            self.vip_drift.labels(vip).set(0)
            self.vip_drift.remove(vip)
        for vip in drifting:
            self.vip_drift.labels(vip).set(1)
        self._drifting = drifting

    def render(self) -> bytes:
        return generate_latest(self.registry)


def _cause(reasons: Mapping[str, int]) -> str:
    """The kind of trigger that woke a pass; dataplane beats source beats timer when several did."""
    kinds = {reason.split(":", 1)[0] for reason in reasons}
    for kind in ("dataplane", "source", "retry", "start", "manual", "timer"):
        if kind in kinds:
            return kind
    return "other"


class DataplaneMetrics:
    """DHCP leases and egress rules (kvip issue #19): registered on the agent's registry beside the rest.
    The gauges are set from each pass's report (`kvip.agent.dataplane_report`); drift items go to
    `kvip_drift_items{backend="dhcp"}` (egress's are the egress backend's own, set by `observe`)."""

    STATES = ("init", "selecting", "requesting", "bound", "renewing", "rebinding", "no-client")

    def __init__(self, registry: CollectorRegistry) -> None:
        r = registry
        self.leases = Gauge("kvip_dhcp_leases", "DHCPv4 and DHCPv6 clients of Services led here, by state (bound, "
                            "renewing, rebinding hold an address; no-client: its macvlan could not be made)", ["state"],
                            registry=r)
        self.renewals = Counter("kvip_dhcp_renewals", "DHCP leases extended (at T1 or T2)", registry=r)
        self.lost = Counter("kvip_dhcp_lease_lost", "DHCP leases lost (expired or refused): the address withdrawn",
                            registry=r)
        self.egress_rules = Gauge("kvip_egress_rules", "Egress SNAT rules this node should hold", registry=r)
        self.egress_repairs = Counter("kvip_egress_repairs", "Egress rules put back or removed because the "
                                      "nftables table differed from what kvip had written (flush, edit, delete)",
                                      registry=r)

    def observe_leases(self, states: Iterable[str], renewals: int, lost: int) -> None:
        counts = dict.fromkeys(self.STATES, 0)
        for state in states:
            counts[state] = counts.get(state, 0) + 1
        for state, count in counts.items():
            self.leases.labels(state).set(count)
        if renewals:
            self.renewals.inc(renewals)
        if lost:
            self.lost.inc(lost)

    def observe_egress(self, rules: int, repairs: int) -> None:
        self.egress_rules.set(rules)
        if repairs:
            self.egress_repairs.inc(repairs)


class HandoverCollector(Collector):
    """kvip.io/preferred-nodes handovers (kvip issue #20), read from the elector at scrape time."""

    def __init__(self, report: Callable[[], HandoverReport]) -> None:
        self._report = report

    def collect(self) -> Iterable[Metric]:
        report = self._report()
        total = CounterMetricFamily(
            "kvip_lease_handovers", "Lease handovers (kvip.io/preferred-nodes) by direction: asked (this node "
            "requested a Lease), received / refused (a request of ours granted / not), granted (handed over)",
            labels=["direction"])
        for direction in DIRECTIONS:
            total.add_metric([direction], report.counts.get(direction, 0))
        pending = GaugeMetricFamily("kvip_lease_handover_requests_pending",
                                    "Handover requests of this node awaiting an answer")
        pending.add_metric([], len(report.pending))
        yield from (total, pending)
