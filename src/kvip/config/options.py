"""The one option table: every setting of `kvip agent` and `kvip controller`, with its kube-vip names.

A row is a setting: its field, the environment variables that set it (kube-vip's names first; the
first one set wins; empty counts as unset), the flag that overrides them, the parser both go through
(`kvip.config.values`), the default and the help. Adding a kube-vip variable that means an existing
setting is adding its name to `env`; a new setting is one row plus its typed field where it is used.
`read_options` turns env and flags into typed values, one error line per bad variable or flag.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from kvip.config.bgp_values import (
    check_password,
    parse_asn,
    parse_interface_name,
    parse_peers,
    parse_router_id,
)
from kvip.config.settings import ROUTE_TYPE_ALIASES
from kvip.config.values import (
    choice,
    int_range,
    ip_address,
    milliseconds_as_seconds,
    parse_bool,
    parse_duration,
    positive_seconds,
    text,
)
from kvip.core.decide import DEFAULT_LB_CLASS
from kvip.core.election_rules import ElectionConfigError, LeaseTiming
from kvip.core.model import ElectionMode, Mode


class ConfigError(ValueError):
    """The configuration is invalid; the message lists every problem, one per line."""


AGENT = frozenset({"agent"})
CONTROLLER = frozenset({"controller"})
BOTH = AGENT | CONTROLLER


@dataclass(frozen=True)
class Option:
    field: str
    env: tuple[str, ...]  # first set wins
    flag: str | None  # None: environment only (kube-vip's switches that `--mode`/`--election` cover)
    parse: Callable[[str], Any]  # raises ValueError only
    default: Any
    help: str
    commands: frozenset[str] = AGENT

    @property
    def names(self) -> str:
        return " / ".join(self.env)


def _route_type(value: str) -> str:
    key = value.strip().lower()
    if key not in ROUTE_TYPE_ALIASES:
        raise ValueError(f"{value!r} is not a route type (unicast or local)")
    return ROUTE_TYPE_ALIASES[key]


_LOG_LEVELS = {"0": "critical", "1": "critical", "2": "error", "3": "warning", "4": "info", "5": "debug",
               "6": "debug", **{name: name for name in ("debug", "info", "warning", "error", "critical")}}


def _log_level(value: str) -> str:
    key = value.strip().lower()
    if key not in _LOG_LEVELS:
        raise ValueError(f"{value!r} is not a log level (kube-vip's 0-6 or debug/info/warning/error)")
    return _LOG_LEVELS[key]


def _log_format(value: str) -> str:
    if value not in ("text", "json"):
        raise ValueError(f"{value!r} is not a log format (text or json)")
    return value


def _probe_kind(value: str) -> str:
    if value not in ("off", "tcp") and not value.startswith("http"):
        raise ValueError(f"{value!r} is not a probe kind (off, tcp, http or http:/path)")
    return value


def _on_api_loss(value: str) -> str:
    if value == "keep":
        return value
    if value.startswith("withdraw-after="):
        parse_duration(value.split("=", 1)[1])
        return value
    raise ValueError(f"{value!r} is not a policy (keep or withdraw-after=DURATION)")


O = Option
OPTIONS: tuple[Option, ...] = (
    # -- both commands ---------------------------------------------------------------------------
    O("kubeconfig", ("k8s_config_file", "KUBECONFIG"), "--kubeconfig", text, None, "kubeconfig (unset: in-cluster)",
      BOTH),
    O("namespace", ("cp_namespace", "POD_NAMESPACE"), "--namespace", text, "kube-system",
      "namespace of the global Lease (agent) or of the ConfigMap and Lease (controller)", BOTH),
    O("lease_duration", ("vip_leaseduration",), "--lease-duration", positive_seconds, 15.0, "Lease duration", BOTH),
    O("renew_deadline", ("vip_renewdeadline",), "--renew-deadline", positive_seconds, 10.0, "renew deadline", BOTH),
    O("retry_period", ("vip_retryperiod",), "--retry-period", positive_seconds, 2.0, "retry period", BOTH),
    # -- the agent -------------------------------------------------------------------------------
    O("node_name", ("vip_nodename", "NODE_NAME"), "--node-name", text, None, "this node's name (required)"),
    O("mode", (), "--mode", choice(Mode), None, "table, arp or bgp (unset: from vip_routingtable / vip_arp / "
      "bgp_enable, else table)"),
    O("table_switch", ("vip_routingtable",), None, parse_bool, None, "routing-table mode"),
    O("arp_switch", ("vip_arp",), None, parse_bool, None, "layer-2 mode"),
    O("bgp_switch", ("bgp_enable",), None, parse_bool, None, "BGP mode"),
    O("svc_enable", ("svc_enable",), None, parse_bool, None, "Service load balancing; kvip cannot turn it off"),
    O("election", (), "--election", choice(ElectionMode), None,
      "none, global or service (unset: from vip_leaderelection / svc_election, else none)"),
    O("service_election", ("svc_election",), None, parse_bool, None, "one Lease per Service"),
    O("global_election", ("vip_leaderelection",), None, parse_bool, None, "one global Lease"),
    O("routing_table_id", ("vip_routingtableid", "routing_table_id"), "--routing-table-id", int_range(1, 2**32 - 2),
      198, "kernel routing table"),
    O("routing_protocol", ("vip_routingprotocol", "routing_protocol"), "--routing-protocol", int_range(1, 255), 248,
      "route protocol that marks routes as kvip's"),
    O("routing_table_type", ("vip_routingtabletype",), "--routing-table-type", _route_type, "unicast",
      "route type: unicast or local"),
    O("clean_routing_table", ("vip_cleanroutingtable",), "--clean-routing-table", parse_bool, False,
      "accepted for compatibility: kvip always removes stale owned routes at start"),
    O("interface", ("vip_servicesinterface", "vip_interface"), "--interface", text, "lo",
      "device of the routes; in ARP mode of the VIPs (lo: the default route's)"),
    O("arp_rate", ("vip_arpRate",), "--arp-rate", milliseconds_as_seconds(1, 3_600_000), 3.0,
      "milliseconds between gratuitous ARP / NA announcements (default shown in seconds)"),
    O("lb_class_only", ("lb_class_only",), "--lb-class-only", parse_bool, False, "only services with our class"),
    O("lb_class_name", ("lb_class_name",), "--lb-class-name", text, DEFAULT_LB_CLASS, "our loadBalancerClass"),
    O("lb_class_legacy", ("lb_class_legacy_handling",), "--lb-class-legacy-handling", parse_bool, True,
      "kube-vip's legacy class handling"),
    O("lease_name", ("svc_leasename",), "--lease-name", text, "plndr-svcs-lock", "global Lease name"),
    O("resync_period", ("kvip_resync_period",), "--resync-period", positive_seconds, 30.0,
      "full relist and dataplane re-read period"),
    O("metrics_address", ("prometheus_server",), "--metrics-address", text, ":2112",
      "metrics/health address; '' = off"),
    O("serving_terminating", ("kvip_serving_terminating",), "--serving-terminating", parse_bool, False,
      "count serving-but-terminating endpoints"),
    O("respect_node_state", ("kvip_respect_node_state",), "--respect-node-state", parse_bool, True,
      "withdraw on cordoned/excluded/network-unavailable nodes"),
    O("drain_on_cordon", ("kvip_drain_on_cordon",), "--drain-on-cordon", parse_bool, True,
      "withdraw while the node is cordoned"),
    O("on_api_loss", ("kvip_on_api_loss",), "--on-api-loss", _on_api_loss, "keep", "keep | withdraw-after=DURATION"),
    O("keep_routes_on_exit", ("kvip_keep_routes_on_exit",), "--keep-routes-on-exit", parse_bool, False,
      "leave routes in place on SIGTERM"),
    O("log_level", ("vip_loglevel",), "--log-level", _log_level, "info", "debug, info, warning, error"),
    O("log_format", ("kvip_log_format",), "--log-format", _log_format, "text", "text or json (one object per line)"),
    O("probes", ("kvip_probes",), "--probes", _probe_kind, "off", "local endpoint probes: off, tcp or http[:path]"),
    O("probe_interval", ("kvip_probe_interval",), "--probe-interval", positive_seconds, 1.0, "probe interval"),
    O("probe_timeout", ("kvip_probe_timeout",), "--probe-timeout", positive_seconds, 0.5, "probe timeout"),
    O("probe_rise", ("kvip_probe_rise",), "--probe-rise", int_range(1, 100), 2, "successes to mark up"),
    O("probe_fall", ("kvip_probe_fall",), "--probe-fall", int_range(1, 100), 2, "failures to mark down"),
    # -- the agent in BGP mode (kvip.config.bgp combines them) ------------------------------------
    O("bgp_as", ("bgp_as",), "--bgp-as", parse_asn, None, "this node's AS number (required in BGP mode)"),
    O("bgp_peers", ("bgp_peers",), "--bgp-peers", parse_peers, (),
      "peers: addr:as[:password[:multihop[:port]]], IPv6 as [addr], comma separated"),
    O("bgp_peer_address", ("bgp_peeraddress",), "--bgp-peer-address", ip_address, None, "a single peer's address"),
    O("bgp_peer_as", ("bgp_peeras",), "--bgp-peer-as", parse_asn, 65000, "the single peer's AS"),
    O("bgp_peer_password", ("bgp_peerpass",), "--bgp-peer-pass", check_password, "", "the single peer's password"),
    O("bgp_multihop", ("bgp_multihop",), "--bgp-multihop", parse_bool, False, "the single peer is multihop"),
    O("bgp_router_id", ("bgp_routerid",), "--bgp-router-id", parse_router_id, None,
      "router id (unset: the source address, else the host's first IPv4)"),
    O("bgp_source_ip", ("bgp_sourceip",), "--bgp-source-ip", ip_address, None, "source address of the sessions"),
    O("bgp_source_interface", ("bgp_sourceif",), "--bgp-source-if", parse_interface_name, None,
      "source interface of the sessions"),
    O("bgp_hold_time", ("bgp_holdtime",), "--bgp-hold-time", int_range(0, 65535), 30, "hold time (s; 0 or >= 3)"),
    O("bgp_keepalive_time", ("bgp_keepalivetime",), "--bgp-keepalive-time", int_range(0, 65535), 10,
      "keepalive time (s)"),
    O("bgp_bfd", ("kvip_bgp_bfd",), "--bgp-bfd", parse_bool, False, "BFD on every session"),
    O("bgp_graceful_restart", ("kvip_bgp_graceful_restart",), "--bgp-graceful-restart", int_range(0, 4095), 0,
      "graceful restart time (s; 0 = off)"),
    O("bgp_drain_time", ("kvip_bgp_drain_time",), "--bgp-drain-time", parse_duration, 5.0,
      "make-before-break: announce with GRACEFUL_SHUTDOWN this long before withdrawing"),
    O("bgp_run_dir", ("kvip_bgp_rundir",), "--bgp-run-dir", text, "/run/kvip/bgp", "the speaker's directory"),
    O("bird_path", ("kvip_bird_path",), "--bird-path", text, "/usr/sbin/bird", "the BIRD 2 binary"),
    # -- the controller --------------------------------------------------------------------------
    O("identity", ("POD_NAME",), "--identity", text, None, "Lease holder identity (unset: the host name)",
      CONTROLLER),
    O("configmap", (), "--configmap", text, "kubevip", "ConfigMap with the address pools", CONTROLLER),
)

DEFAULTS: Mapping[str, Any] = {option.field: option.default for option in OPTIONS}


def options_for(command: str) -> tuple[Option, ...]:
    return tuple(option for option in OPTIONS if command in option.commands)


def add_arguments(parser: argparse.ArgumentParser, command: str) -> None:
    """One flag per option of `command`. Flags stay strings (default None = not given) so that they go
    through the same parsers as the environment and fail the same way, one line each."""
    for option in options_for(command):
        if option.flag is None:
            continue
        switch = {"nargs": "?", "const": "true"} if option.parse is parse_bool else {}
        shown = "unset" if option.default in (None, (), "") else option.default
        env = f"env {option.names}; " if option.env else ""
        help_text = f"{option.help} [{env}default {shown}]".replace("%", "%%")
        parser.add_argument(option.flag, dest=option.field, default=None, help=help_text, **switch)


def flags_given(args: argparse.Namespace, command: str) -> dict[str, str]:
    """The flags of `command` that were given on the command line, as their raw strings."""
    given = vars(args)
    return {option.field: given[option.field] for option in options_for(command)
            if option.flag is not None and given.get(option.field) is not None}


@dataclass(frozen=True)
class Readout:
    """Every option's typed value, and by field the line naming each flag or variable that was bad
    (its value is then the default, so that the remaining checks can still run)."""

    values: Mapping[str, Any]
    problems: Mapping[str, str]


def read_options(command: str, env: Mapping[str, str], flags: Mapping[str, str] | None = None) -> Readout:
    """Typed value of every option of `command`: the flag, else the first env name set, else the default."""
    flags = flags or {}
    values: dict[str, Any] = {}
    problems: dict[str, str] = {}
    for option in options_for(command):
        values[option.field] = option.default
        source, raw = _raw(option, env, flags)
        if source is None:
            continue
        try:
            values[option.field] = option.parse(raw)
        except ValueError as exc:
            problems[option.field] = f"{source}: {exc}"
    return Readout(values, problems)


def _raw(option: Option, env: Mapping[str, str], flags: Mapping[str, str]) -> tuple[str | None, str]:
    if option.field in flags and option.flag is not None:
        return option.flag, flags[option.field]
    for name in option.env:
        if env.get(name, "") != "":
            return name, env[name]
    return None, ""


def lease_timing(values: Mapping[str, Any], errors: list[str]) -> LeaseTiming:
    """The Lease timing of both commands; an unusable one is one line in `errors` (and the default)."""
    try:
        return LeaseTiming(values["lease_duration"], values["renew_deadline"], values["retry_period"])
    except ElectionConfigError:
        errors.append(f"lease timing must satisfy vip_retryperiod ({values['retry_period']}) < vip_renewdeadline "
                      f"({values['renew_deadline']}) < vip_leaseduration ({values['lease_duration']})")
        return LeaseTiming()
