"""Agent configuration from kube-vip's environment variable names (drop-in) and equivalent flags.

Owns parsing and validation only. Every problem is collected and reported at once, naming the
variable or flag, so a broken DaemonSet spec is fixed in one round trip. Unknown `vip_*` variables
(kube-vip features kvip does not have) are ignored, as kube-vip ignores unknown ones.
"""

from __future__ import annotations

import argparse
import enum
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, fields
from typing import Any

from kvip.config.bgp import BgpSettings, load_bgp_settings
from kvip.core.decide import DEFAULT_LB_CLASS, DecideConfig
from kvip.core.model import ElectionMode


class ConfigError(ValueError):
    """The configuration is invalid; the message lists every problem, one per line."""


class Mode(enum.Enum):
    TABLE = "table"
    ARP = "arp"
    BGP = "bgp"


ROUTE_TYPES = {"unicast": 1, "local": 2, "1": 1, "2": 2, "rtn_unicast": 1, "rtn_local": 2}
LOG_LEVELS = {"0": "critical", "1": "critical", "2": "error", "3": "warning", "4": "info", "5": "debug", "6": "debug"}


@dataclass(frozen=True)
class AgentConfig:
    node_name: str
    namespace: str = "kube-system"
    kubeconfig: str | None = None
    mode: Mode = Mode.TABLE
    routing_table_id: int = 198
    routing_protocol: int = 248
    routing_table_type: str = "unicast"
    clean_routing_table: bool = False
    interface: str = "lo"
    lb_class_only: bool = False
    lb_class_name: str = DEFAULT_LB_CLASS
    lb_class_legacy: bool = True
    election: ElectionMode = ElectionMode.NONE
    lease_name: str = "plndr-svcs-lock"
    lease_duration: float = 15.0
    renew_deadline: float = 10.0
    retry_period: float = 2.0
    resync_period: float = 30.0
    metrics_address: str = ":2112"
    serving_terminating: bool = False
    respect_node_state: bool = True
    on_api_loss: str = "keep"
    keep_routes_on_exit: bool = False
    log_level: str = "info"
    log_format: str = "text"
    drain_on_cordon: bool = True
    arp_rate: float = 3.0
    probes: str = "off"
    probe_interval: float = 1.0
    probe_timeout: float = 0.5
    probe_rise: int = 2
    probe_fall: int = 2
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


# --- value parsers: each returns the value or raises ValueError with a human reason ---------------

_TRUE = {"1", "t", "T", "TRUE", "true", "True"}
_FALSE = {"0", "f", "F", "FALSE", "false", "False"}


def parse_bool(text: str) -> bool:
    """Go's strconv.ParseBool, which is what kube-vip accepts."""
    if text in _TRUE:
        return True
    if text in _FALSE:
        return False
    raise ValueError(f"{text!r} is not a boolean (use true or false)")


def parse_duration(text: str) -> float:
    """Seconds from '30', '30s', '500ms', '2m', '1h'."""
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h)?\s*", text)
    if not match:
        raise ValueError(f"{text!r} is not a duration (e.g. 30s, 500ms, 2m)")
    value, unit = float(match.group(1)), match.group(2) or "s"
    return value * {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}[unit]


def _int_range(low: int, high: int) -> Callable[[str], int]:
    def parse(text: str) -> int:
        value = int(text)
        if not low <= value <= high:
            raise ValueError(f"{value} is outside {low}..{high}")
        return value

    return parse


def _route_type(text: str) -> str:
    key = text.strip().lower()
    if key not in ROUTE_TYPES:
        raise ValueError(f"{text!r} is not a route type (unicast or local)")
    return "unicast" if ROUTE_TYPES[key] == 1 else "local"


def _log_level(text: str) -> str:
    key = text.strip().lower()
    if key in LOG_LEVELS:
        return LOG_LEVELS[key]
    if key in ("debug", "info", "warning", "error", "critical"):
        return key
    raise ValueError(f"{text!r} is not a log level (kube-vip's 0-6 or debug/info/warning/error)")


def _probe_kind(text: str) -> str:
    if text not in ("off", "tcp") and not text.startswith("http"):
        raise ValueError(f"{text!r} is not a probe kind (off, tcp, http or http:/path)")
    return text


def _log_format(text: str) -> str:
    if text not in ("text", "json"):
        raise ValueError(f"{text!r} is not a log format (text or json)")
    return text


def _on_api_loss(text: str) -> str:
    if text == "keep":
        return text
    if text.startswith("withdraw-after="):
        parse_duration(text.split("=", 1)[1])
        return text
    raise ValueError(f"{text!r} is not a policy (keep or withdraw-after=DURATION)")


def _positive_seconds(text: str) -> float:
    value = parse_duration(text)
    if value <= 0:
        raise ValueError("must be positive")
    return value


# --- the table: field ← env names (first set wins), flag, parser ---------------------------------


@dataclass(frozen=True)
class Option:
    field: str
    env: tuple[str, ...]
    flag: str
    parse: Callable[[str], Any]
    help: str


OPTIONS: tuple[Option, ...] = (
    Option("node_name", ("vip_nodename", "NODE_NAME"), "--node-name", str, "this node's name"),
    Option("namespace", ("cp_namespace", "POD_NAMESPACE"), "--namespace", str, "namespace of the global Lease"),
    Option("kubeconfig", ("k8s_config_file", "KUBECONFIG"), "--kubeconfig", str, "kubeconfig (default: in-cluster)"),
    Option("routing_table_id", ("vip_routingtableid", "routing_table_id"), "--routing-table-id",
           _int_range(1, 2**32 - 2), "kernel routing table"),
    Option("routing_protocol", ("vip_routingprotocol", "routing_protocol"), "--routing-protocol",
           _int_range(1, 255), "route protocol that marks routes as kvip's"),
    Option("routing_table_type", ("vip_routingtabletype",), "--routing-table-type", _route_type,
           "route type: unicast or local"),
    Option("clean_routing_table", ("vip_cleanroutingtable",), "--clean-routing-table", parse_bool,
           "accepted for compatibility: kvip always removes stale owned routes at start"),
    Option("interface", ("vip_servicesinterface", "vip_interface"), "--interface", str, "device of the routes"),
    Option("lb_class_only", ("lb_class_only",), "--lb-class-only", parse_bool, "only services with our class"),
    Option("lb_class_name", ("lb_class_name",), "--lb-class-name", str, "our loadBalancerClass"),
    Option("lb_class_legacy", ("lb_class_legacy_handling",), "--lb-class-legacy-handling", parse_bool,
           "kube-vip's legacy class handling"),
    Option("lease_name", ("svc_leasename",), "--lease-name", str, "global Lease name"),
    Option("lease_duration", ("vip_leaseduration",), "--lease-duration", _positive_seconds, "Lease duration (s)"),
    Option("renew_deadline", ("vip_renewdeadline",), "--renew-deadline", _positive_seconds, "renew deadline (s)"),
    Option("retry_period", ("vip_retryperiod",), "--retry-period", _positive_seconds, "retry period (s)"),
    Option("resync_period", ("kvip_resync_period",), "--resync-period", _positive_seconds,
           "full relist and dataplane re-read period (s)"),
    Option("metrics_address", ("prometheus_server",), "--metrics-address", str, "metrics/health address; '' = off"),
    Option("serving_terminating", ("kvip_serving_terminating",), "--serving-terminating", parse_bool,
           "count serving-but-terminating endpoints"),
    Option("respect_node_state", ("kvip_respect_node_state",), "--respect-node-state", parse_bool,
           "withdraw on cordoned/excluded/network-unavailable nodes"),
    Option("on_api_loss", ("kvip_on_api_loss",), "--on-api-loss", _on_api_loss, "keep | withdraw-after=DURATION"),
    Option("keep_routes_on_exit", ("kvip_keep_routes_on_exit",), "--keep-routes-on-exit", parse_bool,
           "leave routes in place on SIGTERM"),
    Option("log_level", ("vip_loglevel",), "--log-level", _log_level, "debug, info, warning, error"),
    Option("arp_rate", ("vip_arpRate",), "--arp-rate", lambda t: _int_range(1, 3_600_000)(t) / 1000.0,
           "milliseconds between gratuitous ARP / NA announcements"),
    Option("drain_on_cordon", ("kvip_drain_on_cordon",), "--drain-on-cordon", parse_bool,
           "withdraw while the node is cordoned"),
    Option("probes", ("kvip_probes",), "--probes", _probe_kind, "local endpoint probes: off, tcp or http[:path]"),
    Option("probe_interval", ("kvip_probe_interval",), "--probe-interval", _positive_seconds, "probe interval"),
    Option("probe_timeout", ("kvip_probe_timeout",), "--probe-timeout", _positive_seconds, "probe timeout"),
    Option("probe_rise", ("kvip_probe_rise",), "--probe-rise", _int_range(1, 100), "successes to mark up"),
    Option("probe_fall", ("kvip_probe_fall",), "--probe-fall", _int_range(1, 100), "failures to mark down"),
    Option("log_format", ("kvip_log_format",), "--log-format", _log_format, "text or json (one object per line)"),
)

MODE_SWITCHES = (("vip_routingtable", Mode.TABLE), ("vip_arp", Mode.ARP), ("bgp_enable", Mode.BGP))


def load_config(env: Mapping[str, str], overrides: Mapping[str, object] | None = None) -> AgentConfig:
    """Config from `env` (kube-vip names); `overrides` are already-typed field values (from flags)."""
    overrides = dict(overrides or {})
    values: dict[str, Any] = {}
    errors: list[str] = []
    for option in OPTIONS:
        if option.field in overrides:
            continue
        for name in option.env:
            if name in env and env[name] != "":
                try:
                    values[option.field] = option.parse(env[name])
                except ValueError as exc:
                    errors.append(f"{name}: {exc}")
                break
    values.update(overrides)
    _modes(env, values, errors)
    _election(env, values, errors)
    if values.get("mode") is Mode.ARP and values.get("election", ElectionMode.NONE) is ElectionMode.NONE:
        errors.append("vip_arp=true needs vip_leaderelection=true or svc_election=true: without an election "
                      "several nodes would answer ARP for the same VIP from different MACs")
    if values.get("mode") is Mode.BGP and "bgp" not in values:
        values["bgp"] = load_bgp_settings(env, errors)
    if not values.get("node_name"):
        errors.append("node name missing: set --node-name, vip_nodename or NODE_NAME")
    defaults = {f.name: f.default for f in fields(AgentConfig)}
    timing = [values.get(k, defaults[k]) for k in ("retry_period", "renew_deadline", "lease_duration")]
    if not timing[0] < timing[1] < timing[2]:
        errors.append(f"lease timing must satisfy vip_retryperiod ({timing[0]}) < vip_renewdeadline "
                      f"({timing[1]}) < vip_leaseduration ({timing[2]})")
    if errors:
        raise ConfigError("\n".join(errors))
    return AgentConfig(**values)


def _modes(env: Mapping[str, str], values: dict[str, Any], errors: list[str]) -> None:
    if "mode" in values:
        return
    if "svc_enable" in env:
        try:
            if not parse_bool(env["svc_enable"]):
                errors.append("svc_enable: kvip only implements the Service load balancer; it cannot be false")
        except ValueError as exc:
            errors.append(f"svc_enable: {exc}")
    chosen = []
    for name, mode in MODE_SWITCHES:
        if name in env:
            try:
                if parse_bool(env[name]):
                    chosen.append((name, mode))
            except ValueError as exc:
                errors.append(f"{name}: {exc}")
    if len(chosen) > 1:
        errors.append(f"conflicting modes: {', '.join(n for n, _ in chosen)} are all true; choose one")
    elif chosen:
        values["mode"] = chosen[0][1]


def _election(env: Mapping[str, str], values: dict[str, Any], errors: list[str]) -> None:
    if "election" in values:
        return
    on = {}
    for name in ("svc_election", "vip_leaderelection"):
        if name in env:
            try:
                on[name] = parse_bool(env[name])
            except ValueError as exc:
                errors.append(f"{name}: {exc}")
    if on.get("svc_election"):
        values["election"] = ElectionMode.SERVICE
    elif on.get("vip_leaderelection"):
        values["election"] = ElectionMode.GLOBAL


def add_agent_arguments(parser: argparse.ArgumentParser) -> None:
    for option in OPTIONS:
        env = " / ".join(option.env)
        switch = {"nargs": "?", "const": "true"} if option.parse is parse_bool else {}
        parser.add_argument(option.flag, dest=option.field, default=None, help=f"{option.help} (env {env})",
                            **switch)
    parser.add_argument("--mode", dest="mode", choices=[m.value for m in Mode], default=None,
                        help="table, arp or bgp (env vip_routingtable / vip_arp / bgp_enable)")
    parser.add_argument("--election", dest="election", choices=[m.value for m in ElectionMode], default=None,
                        help="none, global or service (env vip_leaderelection / svc_election)")


def config_from_args(args: argparse.Namespace, env: Mapping[str, str]) -> AgentConfig:
    """Flags override env. Flag values are strings and go through the same parsers."""
    overrides: dict[str, object] = {}
    errors: list[str] = []
    for option in OPTIONS:
        raw = getattr(args, option.field, None)
        if raw is None:
            continue
        try:
            overrides[option.field] = option.parse(raw)
        except ValueError as exc:
            errors.append(f"{option.flag}: {exc}")
    if getattr(args, "mode", None):
        overrides["mode"] = Mode(args.mode)
    if getattr(args, "election", None):
        overrides["election"] = ElectionMode(args.election)
    if errors:
        raise ConfigError("\n".join(errors))
    return load_config(env, overrides)
