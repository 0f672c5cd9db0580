"""The dataplane backends of an agent's mode (routes, ARP/NDP, BGP) and of Service egress, its Lease
elector, and its optional parts (control-plane VIP, advertised-by writer, health probes), built from its
configuration. Each optional part's modules are imported only when configured (kvip issue #21: memory)."""

from __future__ import annotations

import socket
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from prometheus_client import CollectorRegistry

from kvip.agent.metrics import HandoverCollector
from kvip.config.agent import AgentConfig, Mode
from kvip.core.decide import DecideConfig
from kvip.dataplane.base import Dataplane
from kvip.kube.election import LeaseElector
from kvip.reconcile import ReconcileResult

if TYPE_CHECKING:
    from lightkube import AsyncClient

    from kvip.agent.control_plane import ControlPlane
    from kvip.agent.probes import ProbeScheduler
    from kvip.kube.advertised_by import AdvertisedByWriter


class AgentError(Exception):
    """The agent cannot start with this configuration on this machine."""


def default_backends(config: AgentConfig, on_conflict: Callable[[Any, str], None]) -> list[Dataplane[Any]]:
    backends = mode_backends(config, on_conflict)
    if config.egress is not None:  # Service egress SNAT (egress_podcidr set): kvip.dataplane.egress
        from kvip.dataplane.egress import NftEgress

        backends.append(NftEgress(instance_name=config.instance_name))
    return backends


def service_elector(config: AgentConfig, client: Any, on_change: Callable[[], None],
                    last_pass: Callable[[], ReconcileResult | None],
                    registry: CollectorRegistry | None = None) -> LeaseElector:
    """The agent's elector. kvip.io/preferred-nodes: a holder hands a Lease over only once a dataplane pass
    that started after it stopped counting the Lease as held has applied (the VIP is gone here); its
    handover counts go to `registry` (kvip_lease_handovers_total)."""

    def withdrawn(since: float) -> bool:
        last = last_pass()
        return last is not None and last.started_at >= since and not last.failed and last.error is None

    elector = LeaseElector(client, identity=config.node_name, timing=config.lease_timing, on_change=on_change,
                           holddown=config.preference_holddown, withdrawn=withdrawn)
    if registry is not None:
        registry.register(HandoverCollector(elector.handovers.report))
    return elector


def control_plane_of(config: AgentConfig, on_change: Callable[[str], None]) -> ControlPlane | None:
    """The control-plane VIP's health and state (cp_enable), else None."""
    if not config.cp_enable:
        return None
    from kvip.agent.control_plane import ControlPlane

    return ControlPlane(config, on_change=on_change)


def advertised_by_writer(config: AgentConfig, client: AsyncClient, decide: DecideConfig) -> AdvertisedByWriter | None:
    """kvip.io/advertised-by on the Services (kvip_advertised_by, unless disable_service_updates), else None."""
    if not config.advertised_by or config.disable_service_updates:
        return None
    from kvip.kube.advertised_by import AdvertisedByWriter

    return AdvertisedByWriter(client, node_name=config.node_name, namespace=config.namespace, config=decide,
                              period=config.resync_period)


def probe_scheduler(config: AgentConfig, on_change: Callable[[], None]) -> ProbeScheduler | None:
    """The health probes of the Services that ask for them (probe settings configured), else None."""
    if config.probe_settings is None:
        return None
    from kvip.agent.probes import ProbeScheduler

    return ProbeScheduler(config.probe_settings, on_change=on_change)


def mode_backends(config: AgentConfig, on_conflict: Callable[[Any, str], None]) -> list[Dataplane[Any]]:
    if config.mode is Mode.TABLE:
        from kvip.dataplane.routes import RouteTable

        routes = config.route_table
        return [RouteTable(table=routes.table, protocol=routes.protocol, interface=routes.interface,
                           route_type=routes.route_type)]
    if config.mode is Mode.ARP:
        from kvip.dataplane.arp import ArpBackend

        arp = config.arp
        return [ArpBackend(interface=arp.interface or default_route_interface(), protocol=arp.protocol,
                           arp_rate=arp.rate, on_conflict=on_conflict)]
    if config.mode is Mode.BGP and config.bgp is not None:
        from kvip.dataplane.bird.speaker import BgpSpeaker

        return [BgpSpeaker(config.bgp)]
    raise AgentError(f"mode {config.mode.value!r} has no settings")


def default_route_interface() -> str:
    """kube-vip's default for layer 2: the interface of the IPv4 default route."""
    import concurrent.futures

    # pyroute2's IPRoute runs an event loop of its own, which cannot start inside the agent's running one.
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        return pool.submit(_default_route_interface).result()


def _default_route_interface() -> str:
    from pyroute2 import IPRoute

    with IPRoute() as ipr:
        for route in ipr.get_default_routes(family=socket.AF_INET):
            index = route.get("RTA_OIF")
            if index:
                return ipr.get_links(index)[0].get("IFLA_IFNAME")
    raise AgentError("vip_arp=true but no vip_interface given and no IPv4 default route to take it from")
