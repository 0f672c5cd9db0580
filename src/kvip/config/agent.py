"""`kvip agent`'s configuration: the option table's values resolved into one `AgentConfig`.

Owns what needs several options at once (which mode, which election, BGP's peer list, Lease timing)
and the typed settings the agent passes on unchanged (`decide_config()`, `lease_timing`,
`probe_settings`, `route_table`, `arp`, `bgp`). Every problem is collected and reported at once, one
line naming the variable or flag, so a broken DaemonSet spec is fixed in one round trip. kube-vip's
variables kvip does not implement, and misspelt ones, are one notice line each (`kvip.config.kubevip`),
kept in `AgentConfig.notices` for the command to log.
"""

from __future__ import annotations

import argparse
from collections.abc import Mapping
from dataclasses import dataclass, fields
from typing import Any

from kvip.config.bgp import build_bgp_settings
from kvip.config.control_plane import control_plane_rules
from kvip.config.bgp_values import BgpSettings
from kvip.config.kubevip import (
    arp_global_election_notice,
    check_environment,
    node_name_or_host,
    services_interface,
    value_notices,
)
from kvip.config.options import (
    DEFAULTS,
    OPTIONS,
    ConfigError,
    add_arguments,
    flags_given,
    lease_timing,
    read_options,
)
from kvip.config.settings import ArpSettings, ProbeSettings, RouteTableSettings
from kvip.config.values import parse_duration
from kvip.core.decide import DecideConfig
from kvip.core.egress import DEFAULT_SERVICE_CIDR, EgressSettings
from kvip.core.election_rules import LeaseKey, LeaseTiming
from kvip.core.health import HealthCheckSettings, apiserver_check
from kvip.core.model import ElectionMode, Mode, NodeView
from kvip.core.node_selector import NodeSelector, node_selected
from kvip.core.preference import Preference
from kvip.core.vip_allow import Network, VipAllowList

__all__ = ["AgentConfig", "ConfigError", "Mode", "add_agent_arguments", "config_from_args", "load_config"]

D = DEFAULTS  # every default is the option table's


@dataclass(frozen=True)
class AgentConfig:
    node_name: str
    namespace: str = D["namespace"]
    kubeconfig: str | None = D["kubeconfig"]
    kubernetes_addr: str | None = D["kubernetes_addr"]
    mode: Mode = Mode.TABLE
    routing_table_id: int = D["routing_table_id"]
    routing_protocol: int = D["routing_protocol"]
    routing_table_type: str = D["routing_table_type"]
    clean_routing_table: bool = D["clean_routing_table"]
    interface: str = D["interface"]
    lb_class_only: bool = D["lb_class_only"]
    lb_class_name: str = D["lb_class_name"]
    lb_class_legacy: bool = D["lb_class_legacy"]
    election: ElectionMode = ElectionMode.NONE
    lease_name: str = D["lease_name"]
    per_service_election_on_demand: bool = D["per_service_election_on_demand"]
    lease_duration: float = D["lease_duration"]
    renew_deadline: float = D["renew_deadline"]
    retry_period: float = D["retry_period"]
    resync_period: float = D["resync_period"]
    check_period: float = D["check_period"]  # kvip_check_period, else a set kvip_resync_period (_check_period)
    metrics_address: str = D["metrics_address"]
    status_socket: str = D["status_socket"]
    status_address: str = D["status_address"]
    resync_min_interval: float = D["resync_min_interval"]
    http_max_connections: int = D["http_max_connections"]
    serving_terminating: bool = D["serving_terminating"]
    respect_node_state: bool = D["respect_node_state"]
    on_api_loss: str = D["on_api_loss"]
    keep_routes_on_exit: bool = D["keep_routes_on_exit"]
    log_level: str = D["log_level"]
    log_format: str = D["log_format"]
    drain_on_cordon: bool = D["drain_on_cordon"]
    arp_rate: float = D["arp_rate"]
    probes: str = D["probes"]
    probe_interval: float = D["probe_interval"]
    probe_timeout: float = D["probe_timeout"]
    probe_rise: int = D["probe_rise"]
    probe_fall: int = D["probe_fall"]
    vip_allow: tuple[Network, ...] | None = D["vip_allow"]
    vip_allow_namespaces: tuple[tuple[str, tuple[Network, ...]], ...] = D["vip_allow_namespaces"]
    node_selector: NodeSelector | None = D["node_selector"]  # kvip_node_selector (None: every node)
    preference_holddown: float = D["preference_holddown"]  # kvip.io/preferred-nodes' hysteresis (kube.handover)
    preferred_nodes: Preference | None = D["preferred_nodes"]  # kvip_preferred_nodes: the global Lease's preference
    svc_namespace: str | None = D["svc_namespace"]  # None: every namespace
    preserve_on_leadership_loss: bool = D["preserve_on_leadership_loss"]
    lose_leadership: bool = D["lose_leadership"]
    disable_service_updates: bool = D["disable_service_updates"]
    egress_pod_cidrs: tuple[Network, ...] | None = D["egress_pod_cidrs"]  # None: Service egress off
    egress_service_cidrs: tuple[Network, ...] | None = D["egress_service_cidrs"]
    egress_cluster_cidrs: tuple[Network, ...] = D["egress_cluster_cidrs"]
    instance_name: str = D["instance_name"]  # names the egress nftables table
    advertised_by: bool = D["advertised_by"]  # kvip_advertised_by (off with disable_service_updates too)
    services_interface_auto: bool = False  # vip_servicesinterface=auto (kvip.config.kubevip says what it does)
    bgp: BgpSettings | None = None  # set exactly when mode is BGP
    # -- the control-plane VIP (kvip.config.control_plane; `namespace` is cp_namespace) --------------
    cp_enable: bool = D["cp_enable"]
    svc_enable: bool = True  # unset: on, unless cp_enable (kube-vip's control-plane static Pod)
    cp_address: str = D["cp_address"]  # IPs and DNS names, comma separated
    cp_port: int = D["cp_port"]
    dns_mode: str = D["dns_mode"]
    dns_refresh: float = D["dns_refresh"]
    cp_lease_name: str = D["cp_lease_name"]
    cp_election: bool = False  # one holder of the control-plane Lease (ARP always; else vip_leaderelection)
    cp_health_address: str = D["cp_health_address"]
    cp_health_period: int = D["cp_health_period"]
    cp_health_timeout: int = D["cp_health_timeout"]
    cp_health_failure_threshold: int = D["cp_health_failure_threshold"]
    cp_health_rise: int = D["cp_health_rise"]
    cp_health_ca_path: str = D["cp_health_ca_path"]
    notices: tuple[str, ...] = ()  # warnings to log at start, one line each: kube-vip settings kvip ignores
    infos: tuple[str, ...] = ()  # lines to log at start: how kvip read a kube-vip setting

    @property
    def withdraw_after(self) -> float | None:
        """Seconds of API loss after which everything is withdrawn; None = fail-static (`keep`)."""
        if self.on_api_loss == "keep":
            return None
        return parse_duration(self.on_api_loss.split("=", 1)[1])

    def decide_config(self) -> DecideConfig:
        return DecideConfig(
            node_name=self.node_name,
            election=self.election,
            lb_class_name=self.lb_class_name,
            lb_class_only=self.lb_class_only,
            lb_class_legacy=self.lb_class_legacy,
            per_service_election_on_demand=self.per_service_election_on_demand,
            serving_terminating=self.serving_terminating,
            respect_node_state=self.respect_node_state,
            drain_on_cordon=self.drain_on_cordon,
            bgp_attributes=self.mode is Mode.BGP,
            address_families=(self.bgp.address_families  # MP-BGP peers carry both families
                              if self.mode is Mode.BGP and self.bgp else frozenset({4, 6})),
            vip_allow=self.vip_allow_list,
            control_plane_election=self.cp_election,
            egress=self.egress,
            node_selector=self.node_selector,
        )

    @property
    def cp_health(self) -> HealthCheckSettings:
        """The check of this node's own kube-apiserver (kvip.core.health.apiserver_check)."""
        return apiserver_check(self.cp_health_address, port=self.cp_port, period=float(self.cp_health_period),
                               timeout=float(self.cp_health_timeout),
                               failure_threshold=self.cp_health_failure_threshold,
                               ca_path=self.cp_health_ca_path or None, rise=self.cp_health_rise)

    @property
    def cp_lease(self) -> LeaseKey | None:
        """The control-plane Lease, when the control-plane VIP is elected (separate from svc_leasename's)."""
        return LeaseKey(self.namespace, self.cp_lease_name) if self.cp_enable and self.cp_election else None

    def selects_node(self, node: NodeView | None) -> bool:
        """Inside kvip_node_selector (always, when unset): outside, a node contends for no Lease at all."""
        return node_selected(self.node_selector, node)

    @property
    def egress(self) -> EgressSettings | None:
        """Service egress SNAT: on once the pod CIDRs are known (kvip does not discover them)."""
        if self.egress_pod_cidrs is None or not self.svc_enable:
            return None
        service = self.egress_service_cidrs if self.egress_service_cidrs is not None else (DEFAULT_SERVICE_CIDR,)
        return EgressSettings(self.egress_pod_cidrs, service, self.egress_cluster_cidrs)

    @property
    def vip_allow_list(self) -> VipAllowList | None:
        """On when either allow-list option is set; None (off, kube-vip's behaviour) otherwise."""
        if self.vip_allow is None and not self.vip_allow_namespaces:
            return None
        return VipAllowList(self.vip_allow, self.vip_allow_namespaces)

    @property
    def lease_timing(self) -> LeaseTiming:
        return LeaseTiming(self.lease_duration, self.renew_deadline, self.retry_period)

    @property
    def probe_settings(self) -> ProbeSettings | None:
        """None when probing is off (kvip_probes=off)."""
        if self.probes == "off":
            return None
        return ProbeSettings(self.probe_interval, self.probe_timeout, self.probe_rise, self.probe_fall, self.probes)

    @property
    def route_table(self) -> RouteTableSettings:
        return RouteTableSettings(self.routing_table_id, self.routing_protocol, self.interface,
                                  self.routing_table_type)

    @property
    def arp(self) -> ArpSettings:
        # kube-vip's layer 2 defaults to the default route's interface; `lo` is only table mode's default.
        interface = self.interface if self.interface != "lo" else None
        return ArpSettings(interface, self.routing_protocol, self.arp_rate)

    @property
    def drain_time(self) -> float:
        """BGP make-before-break: seconds a leaving node keeps announcing with GRACEFUL_SHUTDOWN."""
        return self.bgp.drain_time if self.mode is Mode.BGP and self.bgp is not None else 0.0


MODE_SWITCHES = (("table_switch", "vip_routingtable", Mode.TABLE), ("arp_switch", "vip_arp", Mode.ARP),
                 ("bgp_switch", "bgp_enable", Mode.BGP))


KNOWN_VARIABLES = frozenset(name for option in OPTIONS for name in option.env)


def load_config(env: Mapping[str, str], flags: Mapping[str, str] | None = None, *,
                host_name: str | None = None) -> AgentConfig:
    """Config from `env` (kube-vip names) and `flags` (raw flag strings by field, which win); `host_name` is
    kube-vip's fallback identity when no node name is set."""
    readout = read_options("agent", env, flags)
    values = readout.values
    errors = list(readout.problems.values())
    checks = check_environment(env, KNOWN_VARIABLES)
    notices = [*checks.notices, *value_notices(values, env)]
    if values["preserve_on_leadership_loss"]:
        notices.append("vip_preserve_on_leadership_loss=true: honoured only when the agent stops (the control-plane "
                       "VIP's IPv4 address stays on the interface, unannounced); kvip removes a VIP from a running "
                       "node that loses leadership, since a kept IPv4 address is still answered by ARP (two MACs)")
    if values["lose_leadership"]:
        notices.append("vip_loseleadership=true: not implemented; a leader whose VIP interface goes down keeps "
                       "its Leases (kvip does not watch the link), so remove it or expect no failover on link loss")
    infos: list[str] = []
    errors += checks.errors
    mode = _mode(values, errors)
    svc_enable, cp_election = control_plane_rules(values, env, mode, readout.problems, errors, notices)
    # In BGP mode kube-vip's vip_leaderelection is about the control plane, not Services (kvip.config.bgp).
    election = values["election"] or (ElectionMode.SERVICE if values["service_election"]
                                       else ElectionMode.GLOBAL if values["global_election"] and mode is not Mode.BGP
                                       else ElectionMode.NONE)
    if not svc_enable:
        election = ElectionMode.NONE  # no Service to elect for: only the control-plane Lease (cp_lease)
    elif mode is Mode.ARP and election is ElectionMode.NONE and values["election"] is None:
        # kube-vip's ARP mode without svc_election always elects one node for all Services on svc_leasename.
        election = ElectionMode.GLOBAL
        infos.append(arp_global_election_notice(values["lease_name"]))
    elif mode is Mode.ARP and election is ElectionMode.NONE:
        errors.append("--election none with ARP mode: several nodes would answer ARP for the same VIP from "
                      "different MACs; use global or service")
    if values["preferred_nodes"] is not None and election is not ElectionMode.GLOBAL:
        notices.append("kvip_preferred_nodes: ignored without global election (per-service Leases take "
                       "the kvip.io/preferred-nodes annotation of their Service)")
    bgp = build_bgp_settings(values, readout.problems, errors) if mode is Mode.BGP else None
    node_name = node_name_or_host(values["node_name"], host_name, notices, errors)
    interface, interface_auto = services_interface(values["interface"], env, D["interface"])
    lease_timing(values, errors)
    values["check_period"] = _check_period(values, env, flags or {}, infos)
    if errors:
        raise ConfigError("\n".join(errors))
    own: dict[str, Any] = {f.name: values[f.name] for f in fields(AgentConfig) if f.name in values}
    return AgentConfig(**{**own, "node_name": node_name, "mode": mode, "election": election, "bgp": bgp,
                          "interface": interface, "services_interface_auto": interface_auto,
                          "svc_enable": svc_enable, "cp_election": cp_election,
                          "notices": tuple(notices), "infos": tuple(infos)})


def _check_period(values: Mapping[str, Any], env: Mapping[str, str], flags: Mapping[str, str],
                  infos: list[str]) -> float:
    """kvip_resync_period used to be the full relist period, i.e. how long a lost watch event could go
    uncorrected. Set on its own, it keeps that meaning: the consistency check runs on it."""
    if "check_period" in flags or env.get("kvip_check_period", ""):
        return float(values["check_period"])
    if "resync_period" in flags or env.get("kvip_resync_period", ""):
        infos.append(f"kvip_resync_period={values['resync_period']:g}: the API consistency check runs every "
                     f"{values['resync_period']:g}s too (kvip_check_period unset); there is no periodic relist")
        return float(values["resync_period"])
    return float(values["check_period"])


def _mode(values: Mapping[str, Any], errors: list[str]) -> Mode:
    if values["mode"] is not None:
        return values["mode"]  # type: ignore[no-any-return]
    chosen = [(name, mode) for field, name, mode in MODE_SWITCHES if values[field]]
    if len(chosen) > 1:
        errors.append(f"conflicting modes: {', '.join(n for n, _ in chosen)} are all true; choose one")
    return chosen[0][1] if len(chosen) == 1 else Mode.TABLE


def add_agent_arguments(parser: argparse.ArgumentParser) -> None:
    add_arguments(parser, "agent")


def config_from_args(args: argparse.Namespace, env: Mapping[str, str], host_name: str | None = None
                     ) -> AgentConfig:
    """Flags override env; flag values are strings and go through the same parsers."""
    return load_config(env, flags_given(args, "agent"), host_name=host_name)
