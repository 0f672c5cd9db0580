"""Wiring of one node's agent: config → cache → decide → reconciler → dataplane backends.

Owns the tasks and their lifetimes, and the policy choices that are not product logic: when the
cache is trustworthy enough to act on (synced once), what API loss means (`on_api_loss`), and what
shutdown does (withdraw unless told to keep). Everything it runs is level-triggered: each task only
*fires the trigger*; the reconciler re-reads everything.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import time
from collections.abc import Callable, Sequence
from typing import Any

from lightkube import AsyncClient

from kvip.agent.metrics import AgentMetrics
from kvip.agent.probes import ProbeScheduler, ProbeSettings, targets_for_node
from kvip.config.agent import AgentConfig, Mode
from kvip.core.decide import decide
from kvip.core.model import (
    ClusterSnapshot,
    DesiredState,
    ElectionMode,
    Leadership,
    ProbeVerdicts,
)
from kvip.dataplane.base import Dataplane
from kvip.kube.cache import ClusterCache
from kvip.kube.client import make_client
from kvip.kube.election import LeaseElector, LeaseKey, LeaseTiming, service_lease_key
from kvip.kube.events import EventRecorder
from kvip.kube.heartbeat import HeartbeatPublisher
from kvip.kube.status_writer import ServiceStatusWriter
from kvip.reconcile import Reconciler, ReconcileResult
from kvip.runtime.tasks import Trigger, cancel_and_wait

log = logging.getLogger("kvip.agent.wiring")


class AgentError(Exception):
    """The agent cannot start with this configuration on this machine."""


def default_backends(config: AgentConfig, on_conflict: Callable[[Any, str], None]) -> list[Dataplane[Any]]:
    if config.mode is Mode.TABLE:
        from kvip.dataplane.routes import RouteTable

        return [
            RouteTable(
                table=config.routing_table_id,
                protocol=config.routing_protocol,
                interface=config.interface,
                route_type=config.routing_table_type,
            )
        ]
    if config.mode is Mode.ARP:
        from kvip.dataplane.arp import ArpBackend

        interface = config.interface if config.interface != "lo" else default_route_interface()
        return [ArpBackend(interface=interface, protocol=config.routing_protocol, arp_rate=config.arp_rate,
                           on_conflict=on_conflict)]
    if config.mode is Mode.BGP and config.bgp is not None:
        from kvip.dataplane.bird.speaker import BgpSpeaker

        return [BgpSpeaker(config.bgp)]
    raise AgentError(f"mode {config.mode.value!r} has no settings")


def default_route_interface() -> str:
    """kube-vip's default for layer 2: the interface of the IPv4 default route."""
    from pyroute2 import IPRoute

    with IPRoute() as ipr:
        for route in ipr.get_default_routes(family=socket.AF_INET):
            index = route.get("RTA_OIF") if hasattr(route, "get") else None
            if index:
                return ipr.get_links(index)[0].get("IFLA_IFNAME")
    raise AgentError("vip_arp=true but no vip_interface given and no IPv4 default route to take it from")


def actual_vips(result: ReconcileResult) -> set[str]:
    """What the dataplane holds after a pass: desired, minus adds that failed, plus removes that failed."""
    held = {str(v) for v in result.desired.vips}
    for diff in result.diffs:
        for item in diff.failed:
            vip = (getattr(item, "address", None) or getattr(getattr(item, "dst", None), "network_address", None)
                   or getattr(getattr(item, "prefix", None), "network_address", None))
            if vip is None:
                continue
            if item in diff.added:
                held.discard(str(vip))
            elif item in diff.removed:
                held.add(str(vip))
    return held


class Agent:
    def __init__(
        self,
        config: AgentConfig,
        *,
        client: AsyncClient | None = None,
        backends: Sequence[Dataplane[Any]] | None = None,
    ) -> None:
        self.config = config
        self.client = client or make_client(config.kubeconfig)
        self.trigger = Trigger()
        self.cache = ClusterCache(
            self.client, node_name=config.node_name, on_change=self._on_source_change,
            resync_period=config.resync_period,
        )
        self.backends = list(backends) if backends is not None else default_backends(config, self._on_conflict)
        self.metrics = AgentMetrics(config.node_name, self.cache.statuses, mode=config.mode.value,
                                    staleness=lambda: self.cache.stale_for(time.monotonic()))
        self.events = EventRecorder(self.client, node_name=config.node_name)
        self.status_writer = ServiceStatusWriter(self.client)
        self.heartbeat = HeartbeatPublisher(self.client, node_name=config.node_name, namespace=config.namespace,
                                            mode=config.mode.value, period=config.resync_period)
        self.elector: LeaseElector | None = None
        if config.election is not ElectionMode.NONE:
            timing = LeaseTiming(config.lease_duration, config.renew_deadline, config.retry_period)
            self.elector = LeaseElector(self.client, identity=config.node_name, timing=timing,
                                        on_change=lambda: self.trigger.fire("lease"))
            if config.election is ElectionMode.GLOBAL:
                self.elector.want([self.global_lease])
        for backend in self.backends:
            collector = getattr(backend, "collector", None)
            if collector is not None:  # backend-specific metrics (BGP sessions)
                self.metrics.registry.register(collector())
        self.reconciler = Reconciler(
            compute=self.compute_desired,
            backends=self.backends,
            trigger=self.trigger,
            observers=[self.metrics.observe, self._after_pass],
        )
        self._decide_config = config.decide_config()
        self.probes: ProbeScheduler | None = None
        if config.probes != "off":
            settings = ProbeSettings(config.probe_interval, config.probe_timeout, config.probe_rise,
                                     config.probe_fall, config.probes)
            self.probes = ProbeScheduler(settings, on_change=lambda: self.trigger.fire("probe"))
        self._withdrawn_for_api_loss = False
        self._memo: tuple[ClusterSnapshot, tuple[Leadership, ProbeVerdicts, bool], DesiredState] | None = None
        # Make-before-break (BGP): seconds a leaving node keeps announcing with GRACEFUL_SHUTDOWN.
        self.drain_time = config.bgp.drain_time if config.mode is Mode.BGP and config.bgp else 0.0
        self._shutting_down = False
        self._cordoned_since: float | None = None
        self._seen_uncordoned = False
        self.ready = asyncio.Event()

    # -- the one computation ----------------------------------------------------------------

    def compute_desired(self) -> DesiredState | None:
        if not self.cache.synced:
            return None  # never act on a cache that has not listed everything once
        limit = self.config.withdraw_after
        if limit is not None:
            stale = self.cache.stale_for(asyncio.get_running_loop().time())
            if stale > limit:
                if not self._withdrawn_for_api_loss:
                    log.warning("API unreachable for %.0fs > %.0fs (on_api_loss): withdrawing", stale, limit)
                    self._withdrawn_for_api_loss = True
                return DesiredState(advertisements={})
            if self._withdrawn_for_api_loss and stale == 0:
                self._withdrawn_for_api_loss = False
                log.info("API reachable again: advertising from a fresh cache")
        snapshot = self.cache.snapshot()
        leadership = self.leadership(snapshot)
        verdicts = ProbeVerdicts()
        if self.probes is not None:
            self.probes.set_targets(targets_for_node(snapshot, self.config.node_name, self.config.probes))
            verdicts = self.probes.verdicts()
        # decide() is pure: the same inputs give the same answer, so a pass woken only by the
        # dataplane (netlink echo of our own change, tampering) skips straight to the diff.
        key = (leadership, verdicts, self.draining(snapshot))
        if self._memo is not None and self._memo[0] is snapshot and self._memo[1] == key:
            return self._memo[2]
        state = decide(self._decide_config, snapshot, leadership, verdicts, key[2])
        self._memo = (snapshot, key, state)
        if self.elector is not None and self.config.election is ElectionMode.SERVICE:
            # Only nodes decide() finds eligible contend; one that stops being eligible releases at once.
            self.elector.want(service_lease_key(key) for key in state.eligible)
        return state

    def draining(self, snapshot: ClusterSnapshot) -> bool:
        """Inside a drain window: shutting down, or cordoned less than drain_time ago (as seen by us).

        A cordon already in place when the agent starts gets no window: re-announcing a VIP just to
        drain it again would pull traffic back to a node that is leaving.
        """
        if self.drain_time <= 0:
            return False
        if self._shutting_down:
            return True
        node = snapshot.node
        cordoned = (node is not None and node.unschedulable and self.config.drain_on_cordon
                    and self.config.respect_node_state)
        now = asyncio.get_running_loop().time()
        if not cordoned:
            self._cordoned_since = None
            self._seen_uncordoned = node is not None or self._seen_uncordoned
            return False
        if self._cordoned_since is None:
            self._cordoned_since = now if self._seen_uncordoned else now - self.drain_time
            if self._seen_uncordoned:
                log.info("node cordoned: announcing with GRACEFUL_SHUTDOWN for %.1fs, then withdrawing",
                         self.drain_time)
                self.trigger.fire_later(self.drain_time, "drain-window")
        return now - self._cordoned_since < self.drain_time

    @property
    def global_lease(self) -> LeaseKey:
        return LeaseKey(self.config.namespace, self.config.lease_name)

    def leadership(self, snapshot: ClusterSnapshot) -> Leadership:
        """What the elector holds *now* (fenced), as an input of decide()."""
        if self.elector is None:
            return Leadership()
        held = self.elector.held()
        if self.config.election is ElectionMode.GLOBAL:
            return Leadership(is_global_leader=self.global_lease in held)
        return Leadership(led_services=frozenset(k for k in snapshot.services if service_lease_key(k) in held))

    def _after_pass(self, result: ReconcileResult) -> None:
        self.events.report(result.desired.problems)
        self.events.report_transitions(result.desired.decisions)
        self.status_writer.report(result.desired, self.cache.services.store)
        if self.elector is not None:
            self.metrics.leader.set(len(self.elector.held()))
        desired = {str(v) for v in result.desired.vips}
        actual = actual_vips(result)
        self.metrics.observe_actual(desired, actual)
        self.heartbeat.report(actual, desired)
        self.ready.set()

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
        """Run until `stop` is set; then withdraw (unless keep_routes_on_exit) and close."""
        tasks: list[asyncio.Task[Any]] = []
        try:
            tasks.append(asyncio.create_task(self.cache.run(), name="cache"))
            tasks.append(asyncio.create_task(self.events.run(), name="events"))
            tasks.append(asyncio.create_task(self.heartbeat.run(), name="heartbeat"))
            tasks.append(asyncio.create_task(self.status_writer.run(), name="status-writer"))
            tasks.append(asyncio.create_task(self.reconciler.run(self._first_sync()), name="reconciler"))
            for backend in self.backends:
                tasks.append(asyncio.create_task(self.reconciler.watch_dataplane(backend),
                                                 name=f"watch-{backend.name}"))
            tasks.append(asyncio.create_task(self._timer(), name="timer"))
            if self.elector is not None:
                tasks.append(asyncio.create_task(self.elector.run(), name="elector"))
            if self.probes is not None:
                tasks.append(asyncio.create_task(self.probes.run(), name="probes"))
            for backend in self.backends:
                maintain = getattr(backend, "maintain", None)
                if maintain is not None:  # periodic announcements (ARP/NA), session keeping (BGP)
                    tasks.append(asyncio.create_task(maintain(), name=f"maintain-{backend.name}"))
            if self.config.metrics_address:
                from kvip.agent.http import serve_agent_http

                tasks.append(asyncio.create_task(serve_agent_http(self, self.config.metrics_address),
                                                 name="http"))
            stopper = asyncio.create_task(stop.wait())
            done, _ = await asyncio.wait([stopper, *tasks], return_when=asyncio.FIRST_COMPLETED)
            for task in done:
                if task is stopper:
                    continue
                # Every task is meant to run forever: one that ends is a bug, never a clean exit.
                if task.exception() is not None:
                    raise task.exception()  # type: ignore[misc]
                raise AgentError(f"task {task.get_name()} ended unexpectedly")
            stopper.cancel()
        finally:
            await cancel_and_wait(tasks)
            self.trigger.cancel_timers()
            await self._shutdown()

    async def _drain_before_withdraw(self) -> None:
        """BGP make-before-break: re-announce with GRACEFUL_SHUTDOWN (and local-pref 0), hand over any
        Leases so a successor announces meanwhile, wait drain_time, and only then withdraw."""
        last = self.reconciler.last_result
        if self.drain_time <= 0 or last is None or not last.desired.advertisements:
            return
        self._shutting_down = True
        try:
            await self.reconciler.reconcile_once({"shutdown-drain": 1})
        except Exception as exc:  # draining is a courtesy; the withdraw below must still happen
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

    async def _shutdown(self) -> None:
        if self.config.keep_routes_on_exit:
            log.info("shutdown: keeping advertisements (keep_routes_on_exit)")
        else:
            await self._drain_before_withdraw()
            removed = await self.reconciler.withdraw_all()
            log.info("shutdown: withdrew %d item(s)", removed)
        if self.elector is not None and not self.config.keep_routes_on_exit:
            # After withdrawing: the next leader may start only once we have stopped.
            with contextlib.suppress(Exception):
                await self.elector.release_all()
        for backend in self.backends:
            with contextlib.suppress(Exception):
                await backend.close()
        with contextlib.suppress(Exception):
            await self.client.close()
