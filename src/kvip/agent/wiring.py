"""Wiring of one node's agent: config → cache → decide → reconciler → dataplane backends.

Owns the tasks and their lifetimes: when the cache is trustworthy enough to act on (synced once),
and what shutdown does (withdraw unless told to keep). The drain window and API-loss withdrawal are
decided by `kvip.core.policy` with this agent's clock. Everything it runs is level-triggered: each
task only *fires the trigger*; the reconciler re-reads everything.

Fail-static: a task that raises (or returns) is logged, counted (`kvip_task_failures`) and restarted
with backoff; only `stop` ends the agent, so an unexpected exception never withdraws a VIP.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from lightkube import AsyncClient

from kvip.agent.backends import (
    AgentError,
    advertised_by_writer,
    control_plane_of,
    default_backends,
    probe_scheduler,
    service_elector,
)
from kvip.agent.dataplane_report import DataplaneReport, egress_table
from kvip.agent.dhcp import DhcpRunner
from kvip.agent.heartbeat_facts import heartbeat_publisher
from kvip.agent.http import AgentView, HttpLimits, serve_local, serve_public
from kvip.agent.metrics import AgentMetrics
from kvip.agent.status_doc import handover_sections, status_document, with_dataplane
from kvip.agent.supervise import supervise
from kvip.config.agent import AgentConfig
from kvip.core.control_plane import wants_lease
from kvip.core.incremental import IncrementalDecider
from kvip.core.leases import ElectionPlan, leadership_from_leases, wanted_leases
from kvip.core.model import (
    CONTROL_PLANE_KEY,
    BadInput,
    ClusterSnapshot,
    DesiredState,
    ElectionMode,
    Leadership,
    ProbeVerdicts,
)
from kvip.core.policy import (
    ApiLossChange,
    ApiLossState,
    DrainState,
    api_loss,
    drain_window,
)
from kvip.core.preference import lease_ranks
from kvip.dataplane.base import Dataplane
from kvip.kube.cache import ClusterCache
from kvip.kube.election import LeaseElector, LeaseKey, agent_clients, local_endpoint
from kvip.kube.events import EventRecorder
from kvip.kube.status_writer import ServiceStatusWriter
from kvip.reconcile import Reconciler, ReconcileResult, reported_vips
from kvip.runtime.tasks import Trigger, cancel_and_wait

if TYPE_CHECKING:  # loaded only by an agent configured to use it (kvip issue #21: memory)
    from kvip.agent.control_plane import ControlPlane

__all__ = ["Agent", "AgentError", "default_backends", "supervise"]

log = logging.getLogger("kvip.agent.wiring")


class Agent:
    def __init__(
        self,
        config: AgentConfig,
        *,
        client: AsyncClient | None = None,
        backends: Sequence[Dataplane[Any]] | None = None,
        control_plane: ControlPlane | None = None,
    ) -> None:
        self.config = config
        if client is None:
            client, self._elector_client = agent_clients(local_endpoint(
                config.kubeconfig, control_plane=config.cp_enable, port=config.cp_port,
                kubernetes_addr=config.kubernetes_addr), config.lease_timing)
        else:
            self._elector_client = client
        self.client = client
        self.trigger = Trigger()
        self.cache = ClusterCache(
            self.client, node_name=config.node_name, on_change=self._on_source_change,
            check_period=config.check_period, namespace=config.svc_namespace, services=config.svc_enable,
        )
        # The control-plane VIP (cp_enable): one more input of the same decide(), on its own Lease.
        self.control_plane = control_plane or control_plane_of(config, self.trigger.fire)
        self.backends = list(backends) if backends is not None else default_backends(config, self._on_conflict)
        self.metrics = AgentMetrics(config.node_name, self.cache.statuses, mode=config.mode.value,
                                    staleness=lambda: self.cache.stale_for(time.monotonic()))
        self.events = EventRecorder(self.client, node_name=config.node_name)
        self.status_writer = ServiceStatusWriter(self.client)
        self.heartbeat = heartbeat_publisher(self.client, config, self.backends)  # (+ node selector, BGP peers)
        self.elector: LeaseElector | None = None
        self.election_plan = ElectionPlan(config.election, config.per_service_election_on_demand,
                                          self.global_lease if config.election is ElectionMode.GLOBAL else None)
        if config.election is not ElectionMode.NONE or config.per_service_election_on_demand or config.cp_lease:
            self.elector = service_elector(config, self._elector_client, lambda: self.trigger.fire("lease"),
                                           lambda: self.reconciler.last_result, self.metrics.registry)
            self.elector.want(wanted_leases(self.election_plan, {}, ()) if config.node_selector is None else ())
        for backend in self.backends:
            for collector in backend.collectors():  # backend-specific metrics (BGP sessions)
                self.metrics.registry.register(collector)
        self.dhcp = DhcpRunner(config, lambda: self.cache.snapshot().services, self.client,
                               lambda: self.trigger.fire("dhcp"))
        self.dataplane = DataplaneReport(self.dhcp, self.metrics, egress_table(self.backends), config.resync_period)
        self.reconciler = Reconciler(
            compute=self.compute_desired,
            backends=self.backends,
            trigger=self.trigger,
            observers=[self.metrics.observe, self.dataplane.observe, self._after_pass, self.dhcp.observe],
        )
        self._decide_config = config.decide_config()
        self._decider = IncrementalDecider(self._decide_config)
        self.advertised_by = advertised_by_writer(config, self.client, self._decide_config)
        self.probes = probe_scheduler(config, lambda: self.trigger.fire("probe"))
        self.probe_problems: tuple[BadInput, ...] = ()
        self._api_loss = ApiLossState()
        self._memo: tuple[ClusterSnapshot, tuple[Any, ...], DesiredState] | None = None
        self._cp_seen: Any = None
        self._final: DesiredState | None = None  # shutdown with vip_preserve_on_leadership_loss: what stays
        # Make-before-break (BGP): seconds a leaving node keeps announcing with GRACEFUL_SHUTDOWN.
        self.drain_time = config.drain_time
        self._shutting_down = False
        self._drain = DrainState()
        self.ready = asyncio.Event()

    # -- the one computation ----------------------------------------------------------------

    def compute_desired(self) -> DesiredState | None:
        if self._final is not None:
            return self._final
        if not self.cache.synced:
            return None  # never act on a cache that has not listed everything once
        cp = self.control_plane.state() if self.control_plane is not None else None
        snapshot, lost = self.cache.snapshot(), self.api_lost()
        if lost:  # withdraw the Services; the control-plane VIP follows its API server's health, not the cache
            snapshot = ClusterSnapshot(services={}, endpoints={}, node=snapshot.node)
        leadership = self.leadership(snapshot)
        verdicts = ProbeVerdicts()
        if self.probes is not None:  # (refused probe annotations are reported with decide()'s problems)
            verdicts, self.probe_problems = self.probes.observe(snapshot, self.config.node_name, self.config.probes)
        # decide() is pure: the same inputs give the same answer, so a pass woken only by the
        # dataplane (netlink echo of our own change, tampering) skips straight to the diff; any other
        # pass decides again only what changed (kvip.core.incremental, proved equal to decide()).
        key = (leadership, verdicts, self.draining(snapshot), cp, self.dhcp.leases())
        if self._memo is not None and self._memo[0] is snapshot and self._memo[1] == key:
            return self._memo[2]
        state = self._decider.decide(snapshot, leadership, verdicts, key[2], control_plane=cp, dhcp=key[4])
        self._memo = (snapshot, key, state)
        if self.elector is not None and not lost:  # (nothing can be released while the API is lost)
            # Only eligible nodes contend; one that stops being (or whose API server fails: cp Lease) releases at once.
            wanted = (wanted_leases(self.election_plan, snapshot.services, state.eligible)
                      if self.config.selects_node(snapshot.node) else frozenset())  # else not the global Lease either
            cp_lease = self.config.cp_lease
            self.elector.want(wanted | {cp_lease} if cp_lease and cp and wants_lease(cp) else wanted, lease_ranks(
                self.election_plan, snapshot.services, state.eligible, snapshot.node, self.config.preferred_nodes))
        return state

    def api_lost(self) -> bool:
        """on_api_loss: whether to withdraw everything because the API has been unreachable too long."""
        limit = self.config.withdraw_after
        stale = self.cache.stale_for(asyncio.get_running_loop().time()) if limit is not None else 0.0
        decision, self._api_loss = api_loss(self._api_loss, stale_for=stale, withdraw_after=limit)
        if decision.change is ApiLossChange.WITHDRAWN:
            log.warning("API unreachable for %.0fs > %.0fs (on_api_loss): withdrawing", stale, limit)
        elif decision.change is ApiLossChange.RESTORED:
            log.info("API reachable again: advertising from a fresh cache")
        return decision.withdraw

    def draining(self, snapshot: ClusterSnapshot) -> bool:
        """Inside a drain window (kvip.core.policy.drain_window), seen with this agent's clock."""
        now = asyncio.get_running_loop().time()
        decision, self._drain = drain_window(
            self._drain, now=now, node=snapshot.node, drain_time=self.drain_time,
            cordon_withdraws=self.config.drain_on_cordon and self.config.respect_node_state,
            shutting_down=self._shutting_down)
        if decision.wake_at is not None:
            log.info("node cordoned: announcing with GRACEFUL_SHUTDOWN for %.1fs, then withdrawing",
                     self.drain_time)
            self.trigger.fire_later(decision.wake_at - now, "drain-window")
        return decision.draining

    @property
    def global_lease(self) -> LeaseKey:
        return LeaseKey(self.config.namespace, self.config.lease_name)

    def leadership(self, snapshot: ClusterSnapshot) -> Leadership:
        """What the elector holds *now* (fenced), as an input of decide()."""
        if self.elector is None:
            return Leadership()
        held = self.elector.held()
        found = leadership_from_leases(self.election_plan, held, snapshot.services.values())
        return replace(found, is_control_plane_leader=self.config.cp_lease in held)

    def _after_pass(self, result: ReconcileResult) -> None:
        # The control-plane VIP's problems and transitions are logged; Events name a Service it is not.
        self.events.report(tuple(p for p in result.desired.problems if p.service != CONTROL_PLANE_KEY)
                           + self.probe_problems)
        self.events.report_transitions(result.desired.decisions, result.changed_services)
        self._log_control_plane(result.desired.decisions.get(CONTROL_PLANE_KEY))
        if not self.config.disable_service_updates:  # kube-vip's disable_service_updates: never write status
            self.status_writer.report(result.desired, self.cache.snapshot().services, result.changed_services)
        if self.advertised_by is not None and self._memo is not None and self._memo[2] is result.desired:
            self.advertised_by.report(self._memo[0], result.desired)
        if self.elector is not None:
            self.metrics.observe_leases(key.name for key in self.elector.held())
        desired, actual = reported_vips(result)
        self.metrics.observe_actual(desired, actual)
        self.heartbeat.report(actual, desired, self.dataplane.drift())
        self.ready.set()

    def _log_control_plane(self, decision: Any) -> None:
        """One line when the control-plane VIP's decision changes, with its reason."""
        seen = None if decision is None else (decision.advertised, decision.reason, decision.vips)
        if decision is not None and seen != self._cp_seen:
            log.info("control-plane VIP %s: %s (%s)", ", ".join(map(str, decision.vips)) or "-",
                     "advertised" if decision.advertised else "not advertised", decision.reason)
        self._cp_seen = seen
        if self.control_plane is not None:
            lease = self.config.cp_lease
            leader = None if lease is None or self.elector is None else lease in self.elector.held()
            self.metrics.observe_control_plane(self.control_plane.health.healthy, leader,
                                               bool(decision and decision.advertised))

    def _on_conflict(self, vip: Any, other_mac: str) -> None:
        """Another MAC answers for a VIP we hold (layer-2 split brain): metric and an Event per owner."""
        self.metrics.conflicts.inc()
        last = self.reconciler.last_result
        owners = last.desired.advertisements[vip].services if last and vip in last.desired.advertisements else ()
        self.events.report_conflict(owners, f"VIP {vip} is also answered by {other_mac} (split brain)")

    def _on_source_change(self, source: str) -> None:
        self.trigger.fire(f"source:{source}")

    # -- lifecycle ---------------------------------------------------------------------------

    async def run(self, stop: asyncio.Event) -> None:
        """Run until `stop` is set; then withdraw (unless keep_routes_on_exit) and close.

        Nothing but `stop` ends this: a task that fails is restarted (see `supervise`), because
        withdrawing on a bug would turn a local fault into an outage of every VIP on this node."""
        tasks = [asyncio.create_task(supervise(name, start, on_failure=self.metrics.task_failures.labels(name).inc),
                                     name=name)
                 for name, start in self._tasks()]
        try:
            await stop.wait()
        finally:
            await cancel_and_wait(tasks)
            self.trigger.cancel_timers()
            await self._shutdown()

    def _tasks(self) -> list[tuple[str, Callable[[], Awaitable[None]]]]:
        """Every long-running task, by name, as a function that starts it afresh."""
        tasks: list[tuple[str, Callable[[], Awaitable[None]]]] = [
            ("cache", self.cache.run),
            ("events", self.events.run),
            ("heartbeat", self.heartbeat.run),
            ("status-writer", self.status_writer.run),
            ("reconciler", lambda: self.reconciler.run(self._first_sync())),
            ("timer", self._timer),
            ("dhcp", self.dhcp.run),  # one DHCP client per Service led here that asks for 0.0.0.0
            ("dataplane-report", self.dataplane.run),
        ]
        for backend in self.backends:
            tasks.append((f"watch-{backend.name}", functools.partial(self.reconciler.watch_dataplane, backend)))
            # Periodic announcements (ARP/NA), speaker supervision (BGP); a no-op elsewhere.
            tasks.append((f"maintain-{backend.name}", backend.maintain))
        if self.elector is not None:
            tasks.append(("elector", self.elector.run))
        if self.advertised_by is not None:
            tasks.append(("advertised-by", self.advertised_by.run))
        if self.probes is not None:
            tasks.append(("probes", self.probes.run))
        if self.control_plane is not None:
            tasks.extend(self.control_plane.tasks())
        # /healthz, /readyz, /metrics on the metrics address; /status and POST /resync only locally.
        config, view = self.config, self.http_view()
        if config.metrics_address:
            limits = HttpLimits(max_connections=config.http_max_connections)
            tasks.append(("http", lambda: serve_public(view, config.metrics_address, limits)))
        if config.status_socket or config.status_address:
            tasks.append(("http-local", lambda: serve_local(
                view, socket_path=config.status_socket, address=config.status_address,
                min_interval=config.resync_min_interval)))
        return tasks

    # -- what the HTTP endpoint sees -----------------------------------------------------------

    def http_view(self) -> AgentView:
        return AgentView(status=self.status_document, alive=self.alive, ready=self.ready.is_set,
                         metrics=self.metrics.render, resync=self.request_resync)

    def status_document(self) -> dict[str, Any]:
        doc = status_document(
            node=self.config.node_name, mode=self.config.mode.value, synced=self.cache.synced,
            passes=self.reconciler.passes, sources=self.cache.statuses(), result=self.reconciler.last_result,
            last_known_good_endpoint=self.reconciler.last_known_good_endpoint,
            backends={b.name: b.status() for b in self.backends}, control_plane=(self.control_plane.status(self.elector)
                                                                         if self.control_plane else None))
        doc = with_dataplane(with_dataplane(doc, self.dataplane.sections()), handover_sections(self.elector))
        if self.advertised_by is not None:  # kvip.io/advertised-by of the (bounded) Services listed
            doc["advertisedBy"] = self.advertised_by.shown(doc["services"])
        return doc

    def alive(self) -> bool:
        """The loop turns: after the first pass, one must complete every resync period (the timer
        guarantees a trigger), so three missed periods mean a stuck agent."""
        last = self.reconciler.last_result
        return last is None or time.time() - (last.started_at + last.duration) <= 3 * self.config.resync_period

    def request_resync(self) -> None:
        self.cache.request_relist()
        self.trigger.fire("manual")

    async def _drain_before_withdraw(self) -> None:
        """BGP make-before-break: re-announce with GRACEFUL_SHUTDOWN (and local-pref 0), hand over any
        Leases so a successor announces meanwhile, wait drain_time, and only then withdraw."""
        last = self.reconciler.last_result
        if self.drain_time <= 0 or last is None or not last.desired.advertisements:
            return
        self._shutting_down = True
        try:
            await self.reconciler.reconcile_once({"shutdown-drain": 1})
        except Exception as exc:  # noqa: BLE001 (draining is a courtesy; the withdraw below must still happen)
            log.warning("shutdown: could not re-announce for draining: %s", exc)
            return
        if self.elector is not None:
            # Overlapping announcements are normal in BGP (unlike two MACs in ARP mode).
            with contextlib.suppress(Exception):
                await self.elector.release_all()
        log.info("shutdown: draining %d VIP(s) for %.1fs before withdrawing",
                 len(last.desired.advertisements), self.drain_time)
        await asyncio.sleep(self.drain_time)

    async def _first_sync(self) -> None:
        await self.cache.wait_synced()
        log.info("cache synced (%d services, %d endpointslices); reconciling",
                 len(self.cache.services.store), len(self.cache.slices.store))

    async def _timer(self) -> None:
        # The dataplane is re-read on this period even if netlink were to miss a change.
        while True:
            await asyncio.sleep(self.config.resync_period)
            self.trigger.fire("timer")

    async def _withdraw_control_plane(self) -> None:
        """SIGTERM: the control-plane VIP goes at once, before any Service drain, so the next node's
        API server takes the traffic now; its Lease is released right after (below or in the drain)."""
        if self.control_plane is None:
            return
        self.control_plane.leaving = True
        last = self.reconciler.last_result
        if self.config.preserve_on_leadership_loss and last is not None:
            # kube-vip's vip_preserve_on_leadership_loss: the IPv4 address stays, no longer announced.
            kept = {v: a for v, a in last.desired.advertisements.items() if a.control_plane and v.version == 4}
            if kept:
                log.info("shutdown: keeping control-plane VIP %s (vip_preserve_on_leadership_loss)",
                         ", ".join(map(str, kept)))
                self._final = DesiredState(kept)
            return
        with contextlib.suppress(Exception):
            await self.reconciler.reconcile_once({"shutdown-control-plane": 1})

    async def _shutdown(self) -> None:
        if self.config.keep_routes_on_exit:
            log.info("shutdown: keeping advertisements (keep_routes_on_exit)")
        else:
            await self._withdraw_control_plane()
            await self._drain_before_withdraw()
            if self._final is not None:
                await self.reconciler.reconcile_once({"shutdown": 1})
            else:
                removed = await self.reconciler.withdraw_all()
                log.info("shutdown: withdrew %d item(s)", removed)
        if self.elector is not None and not self.config.keep_routes_on_exit:
            # After withdrawing: the next leader may start only once we have stopped.
            with contextlib.suppress(Exception):
                await self.elector.release_all()
        for backend in self.backends:
            with contextlib.suppress(Exception):
                await backend.close()
        for client in {id(c): c for c in (self.client, self._elector_client)}.values():
            with contextlib.suppress(Exception):
                await client.close()
