"""`kvip agent`'s configuration: the option table's values resolved into one `AgentConfig`.

Owns what needs several options at once (which mode, which election, BGP's peer list, Lease timing)
and the typed settings the agent passes on unchanged (`decide_config()`, `lease_timing`,
`probe_settings`, `route_table`, `arp`, `bgp`). Every problem is collected and reported at once, one
line naming the variable or flag, so a broken DaemonSet spec is fixed in one round trip. Unknown
`vip_*` variables (kube-vip features kvip does not have) are ignored, as kube-vip ignores unknown ones.
"""

from __future__ import annotations

import argparse
from collections.abc import Mapping
from dataclasses import dataclass, fields
from typing import Any

from kvip.config.bgp import build_bgp_settings
from kvip.config.bgp_values import BgpSettings
from kvip.config.options import (
    DEFAULTS,
    ConfigError,
    add_arguments,
    flags_given,
    lease_timing,
    read_options,
)
from kvip.config.settings import ArpSettings, ProbeSettings, RouteTableSettings
from kvip.config.values import parse_duration
from kvip.core.decide import DecideConfig
from kvip.core.election_rules import LeaseTiming
from kvip.core.model import ElectionMode, Mode

__all__ = ["AgentConfig", "ConfigError", "Mode", "add_agent_arguments", "config_from_args", "load_config"]

D = DEFAULTS  # every default is the option table's


@dataclass(frozen=True)
class AgentConfig:
    node_name: str
    namespace: str = D["namespace"]
    kubeconfig: str | None = D["kubeconfig"]
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
    lease_duration: float = D["lease_duration"]
    renew_deadline: float = D["renew_deadline"]
    retry_period: float = D["retry_period"]
    resync_period: float = D["resync_period"]
    metrics_address: str = D["metrics_address"]
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
    bgp: BgpSettings | None = None  # set exactly when mode is BGP

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
            serving_terminating=self.serving_terminating,
            respect_node_state=self.respect_node_state,
            drain_on_cordon=self.drain_on_cordon,
            bgp_attributes=self.mode is Mode.BGP,
            address_families=(frozenset(p.address.version for p in self.bgp.peers)
                              if self.mode is Mode.BGP and self.bgp else frozenset({4, 6})),
        )

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


def load_config(env: Mapping[str, str], flags: Mapping[str, str] | None = None) -> AgentConfig:
    """Config from `env` (kube-vip names) and `flags` (raw flag strings by field, which win)."""
    readout = read_options("agent", env, flags)
    values = readout.values
    errors = list(readout.problems.values())
    if values["svc_enable"] is False:
        errors.append("svc_enable: kvip only implements the Service load balancer; it cannot be false")
    mode = _mode(values, errors)
    election = values["election"] or (ElectionMode.SERVICE if values["service_election"]
                                       else ElectionMode.GLOBAL if values["global_election"] else ElectionMode.NONE)
    if mode is Mode.ARP and election is ElectionMode.NONE:
        errors.append("vip_arp=true needs vip_leaderelection=true or svc_election=true: without an election "
                      "several nodes would answer ARP for the same VIP from different MACs")
    bgp = build_bgp_settings(values, readout.problems, errors) if mode is Mode.BGP else None
    if not values["node_name"]:
        errors.append("node name missing: set --node-name, vip_nodename or NODE_NAME")
    lease_timing(values, errors)
    if errors:
        raise ConfigError("\n".join(errors))
    own: dict[str, Any] = {f.name: values[f.name] for f in fields(AgentConfig) if f.name in values}
    return AgentConfig(**{**own, "mode": mode, "election": election, "bgp": bgp})


def _mode(values: Mapping[str, Any], errors: list[str]) -> Mode:
    if values["mode"] is not None:
        return values["mode"]  # type: ignore[no-any-return]
    chosen = [(name, mode) for field, name, mode in MODE_SWITCHES if values[field]]
    if len(chosen) > 1:
        errors.append(f"conflicting modes: {', '.join(n for n, _ in chosen)} are all true; choose one")
    return chosen[0][1] if len(chosen) == 1 else Mode.TABLE


def add_agent_arguments(parser: argparse.ArgumentParser) -> None:
    add_arguments(parser, "agent")


def config_from_args(args: argparse.Namespace, env: Mapping[str, str]) -> AgentConfig:
    """Flags override env; flag values are strings and go through the same parsers."""
    return load_config(env, flags_given(args, "agent"))
