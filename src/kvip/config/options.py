"""The one option table: every setting of `kvip agent` and `kvip controller`, with its kube-vip names.

A row is a setting: its field, the environment variables that set it (kube-vip's names first; the
first one set wins; empty counts as unset), the flag that overrides them, the parser both go through
(`kvip.config.values`), the default and the help. Adding a kube-vip variable that means an existing
setting is adding its name to `env`; a new setting is one row plus its typed field where it is used.
`read_options` turns env and flags into typed values, one error line per bad variable or flag.
"""

from __future__ import annotations

import argparse
import ipaddress
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from kvip.config.bgp_values import (
    check_password,
    parse_asn,
    parse_interface_name,
    parse_ipv4,
    parse_ipv6,
    parse_mpbgp_mode,
    parse_peers,
    parse_router_id,
)
from kvip.config.control_plane import parse_cp_address, parse_dns_mode, parse_health_url, parse_lease_name
from kvip.config.kubevip import parse_subnet
from kvip.config.settings import ROUTE_TYPE_ALIASES
from kvip.config.values import (
    api_server_address,
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
from kvip.core.egress import parse_instance_name
from kvip.core.election_rules import ElectionConfigError, LeaseTiming
from kvip.core.model import ElectionMode, Mode
from kvip.core.node_selector import parse_selector
from kvip.core.preference import parse_preference
from kvip.core.vip_allow import parse_cidrs, parse_namespace_cidrs


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
    empty_counts: bool = False  # kube-vip reads it with LookupEnv: set-but-empty is a value, not unset

    @property
    def names(self) -> str:
        return " / ".join(self.env)


def _route_type(value: str) -> str:
    key = value.strip().lower()
    if key not in ROUTE_TYPE_ALIASES:
        raise ValueError(f"{value!r} is not a route type (unicast or local)")
    return ROUTE_TYPE_ALIASES[key]


_LOG_NAMES = {"debug": "debug", "info": "info", "warn": "warning", "warning": "warning", "error": "error",
              "critical": "critical"}
# kube-vip hands vip_loglevel to Go's slog as a level: records at or above it are logged.
_SLOG_LEVELS = ((-4, "debug"), (0, "info"), (4, "warning"), (8, "error"))
_slog_int = int_range(-(2**31), 2**31 - 1)


def _log_level(value: str) -> str:
    """kube-vip's slog scale (-4 debug, 0 info, 4 warning, 8 error; in between: the next level up) or a name."""
    key = value.strip().lower()
    if key in _LOG_NAMES:
        return _LOG_NAMES[key]
    try:
        level = _slog_int(key)
    except ValueError:
        raise ValueError(f"{value!r} is not a log level (kube-vip's slog scale: -4 debug, 0 info, 4 warning, "
                         "8 error; or a name)") from None
    return next((name for bound, name in _SLOG_LEVELS if level <= bound), "critical")


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


def _loopback_address(value: str) -> str:
    """host:port on a loopback address ('' = off): /status and /resync must never be reachable from
    another machine (kvip issue #17, rows 5 and 6)."""
    if value == "":
        return value
    host, _, port = value.rpartition(":")
    try:
        loopback = ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        loopback = False
    if not loopback:
        raise ValueError(f"{value!r} is not a loopback host:port (e.g. 127.0.0.1:2113 or [::1]:2113)")
    int_range(1, 65535)(port)
    return value


O = Option
OPTIONS: tuple[Option, ...] = (
    # -- both commands ---------------------------------------------------------------------------
    O("kubeconfig", ("k8s_config_file", "KUBECONFIG"), "--kubeconfig", text, None, "kubeconfig (unset: in-cluster)",
      BOTH),
    O("kubernetes_addr", ("kubernetes_addr",), "--kubernetes-addr", api_server_address, None,
      "API server address that replaces the kubeconfig's (e.g. https://127.0.0.1:6443); with cp_enable and "
      "/etc/kubernetes/admin.conf it defaults to kubernetes:<port>, as in kube-vip"),
    O("namespace", ("cp_namespace", "POD_NAMESPACE"), "--namespace", text, "kube-system",
      "namespace of the agent's Leases (global, control-plane) or of the controller's ConfigMap and Lease", BOTH),
    O("lease_duration", ("vip_leaseduration",), "--lease-duration", positive_seconds, 15.0, "Lease duration", BOTH),
    O("renew_deadline", ("vip_renewdeadline",), "--renew-deadline", positive_seconds, 10.0, "renew deadline", BOTH),
    O("retry_period", ("vip_retryperiod",), "--retry-period", positive_seconds, 2.0, "retry period", BOTH),
    # -- the agent -------------------------------------------------------------------------------
    O("node_name", ("vip_nodename", "NODE_NAME"), "--node-name", text, None,
      "this node's name (unset: the host name, lower-cased, as kube-vip)"),
    O("mode", (), "--mode", choice(Mode), None, "table, arp or bgp (unset: from vip_routingtable / vip_arp / "
      "bgp_enable, else table)"),
    O("table_switch", ("vip_routingtable",), None, parse_bool, None, "routing-table mode"),
    O("arp_switch", ("vip_arp",), None, parse_bool, None, "layer-2 mode"),
    O("bgp_switch", ("bgp_enable",), None, parse_bool, None, "BGP mode"),
    O("svc_enable", ("svc_enable",), None, parse_bool, None,
      "Service load balancing (unset: on, unless cp_enable=true)"),
    O("election", (), "--election", choice(ElectionMode), None,
      "none, global or service (unset: from vip_leaderelection / svc_election, else none)"),
    O("service_election", ("svc_election", "enableServicesElection"), None, parse_bool, None, "one Lease per Service"),
    O("global_election", ("vip_leaderelection",), None, parse_bool, None, "one global Lease"),
    O("per_service_election_on_demand", ("per_service_election_on_demand",), "--per-service-election-on-demand",
      parse_bool, False, "one Lease per Service annotated kube-vip.io/forcePerServiceElection=true, in any mode"),
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
    O("lb_class_name", ("lb_class_name",), "--lb-class-name", text, DEFAULT_LB_CLASS,
      "our loadBalancerClass ('' = Services without a class)", empty_counts=True),
    O("lb_class_legacy", ("lb_class_legacy_handling",), "--lb-class-legacy-handling", parse_bool, True,
      "kube-vip's legacy class handling"),
    # -- kube-vip's switches kvip reads as kube-vip does (kvip.config.kubevip explains the others) ------
    # -- the control-plane VIP (kvip.config.control_plane combines them) ------------------------------
    O("cp_enable", ("cp_enable",), "--control-plane", parse_bool, False,
      "the control-plane VIP in front of the kube-apiservers (static Pod or hybrid DaemonSet)"),
    O("cp_address", ("address", "vip_address"), "--address", parse_cp_address, "",
      "the control-plane VIP: IPs or DNS names, comma separated (vip_address: deprecated name)"),
    O("cp_port", ("port",), "--port", int_range(1, 65535), 6443, "the kube-apiserver port behind the VIP"),
    O("dns_mode", ("dns_mode",), "--dns-mode", parse_dns_mode, "first",
      "which resolved addresses of a DNS name address: first, ipv4, ipv6 or dual"),
    O("cp_lease_name", ("vip_leasename",), "--cp-lease-name", parse_lease_name, "plndr-cp-lock",
      "the control-plane Lease (in cp_namespace)"),
    O("cp_health_address", ("control_plane_health_check_address",), "--cp-health-address", parse_health_url, "",
      "URL of this node's API server check (unset: https://127.0.0.1:<port>/livez)"),
    O("cp_health_period", ("control_plane_health_check_period_seconds",), "--cp-health-period",
      int_range(1, 3600), 5, "seconds between API server checks"),
    O("cp_health_timeout", ("control_plane_health_check_timeout_seconds",), "--cp-health-timeout",
      int_range(1, 3600), 3, "seconds each API server check may take"),
    O("cp_health_failure_threshold", ("control_plane_health_check_failure_threshold",), "--cp-health-fall",
      int_range(1, 100), 3, "consecutive failed checks before the VIP is withdrawn (or the Lease released)"),
    O("cp_health_rise", ("kvip_control_plane_health_check_rise",), "--cp-health-rise", int_range(1, 100), 1,
      "consecutive good checks before it is advertised again"),
    O("cp_health_ca_path", ("control_plane_health_check_ca_path",), "--cp-health-ca-path", text, "",
      "CA bundle verifying the check (unset: the kubeconfig's CA, else in-cluster)"),
    O("dns_refresh", ("kvip_dns_refresh",), "--dns-refresh", positive_seconds, 3.0,
      "seconds between re-resolutions of a DNS name address"),
    O("svc_namespace", ("svc_namespace",), "--svc-namespace", text, None,
      "watch Services and EndpointSlices of this namespace only (unset: all namespaces)"),
    O("vip_subnet", ("vip_subnet", "vip_cidr"), None, parse_subnet, None,
      "prefix kube-vip gives Service VIPs on the interface: kvip always uses /32 and /128"),
    O("preserve_on_leadership_loss", ("vip_preserve_on_leadership_loss",), None, parse_bool, False,
      "ARP: keep the VIP addresses when leadership is lost, only stop announcing"),
    O("lose_leadership", ("vip_loseleadership",), None, parse_bool, False,
      "give up leadership while the VIP interface is down"),
    O("disable_service_updates", ("disable_service_updates",), "--disable-service-updates", parse_bool, False,
      "never write the Services' status.loadBalancer.ingress"),
    O("advertised_by", ("kvip_advertised_by",), "--advertised-by", parse_bool, True,
      "keep the annotation kvip.io/advertised-by (the nodes carrying each Service) up to date"),
    O("lease_name", ("svc_leasename",), "--lease-name", text, "plndr-svcs-lock", "global Lease name"),
    O("resync_period", ("kvip_resync_period",), "--resync-period", positive_seconds, 30.0,
      "dataplane re-read and heartbeat period; no longer relists the API (kvip issue #21), and sets "
      "kvip_check_period when that is unset"),
    O("check_period", ("kvip_check_period",), "--check-period", positive_seconds, 600.0,
      "API consistency check period: a metadata-only list compared with the cache; a watch event the "
      "server never sent is corrected within it (default: kvip_resync_period if set, else 600)"),
    O("metrics_address", ("prometheus_server",), "--metrics-address", text, ":2112",
      "metrics/health address; '' = off"),
    O("status_socket", ("kvip_status_socket",), "--status-socket", text, "/run/kvip/agent.sock",
      "unix socket (mode 0600) serving /status and POST /resync; '' = off"),
    O("status_address", ("kvip_status_address",), "--status-address", _loopback_address, "",
      "loopback host:port also serving /status and POST /resync (e.g. 127.0.0.1:2113); '' = off"),
    O("resync_min_interval", ("kvip_resync_min_interval",), "--resync-min-interval", positive_seconds, 10.0,
      "POST /resync relists at most once per this many seconds; requests in between are coalesced"),
    O("http_max_connections", ("kvip_http_max_connections",), "--http-max-connections", int_range(4, 4096), 64,
      "open connections on the metrics address; beyond, the oldest idle one is closed"),
    O("serving_terminating", ("kvip_serving_terminating",), "--serving-terminating", parse_bool, False,
      "count serving-but-terminating endpoints"),
    O("respect_node_state", ("kvip_respect_node_state",), "--respect-node-state", parse_bool, True,
      "withdraw on cordoned/excluded/network-unavailable nodes"),
    O("drain_on_cordon", ("kvip_drain_on_cordon",), "--drain-on-cordon", parse_bool, True,
      "withdraw while the node is cordoned"),
    O("on_api_loss", ("kvip_on_api_loss",), "--on-api-loss", _on_api_loss, "keep", "keep | withdraw-after=DURATION"),
    O("keep_routes_on_exit", ("kvip_keep_routes_on_exit",), "--keep-routes-on-exit", parse_bool, False,
      "leave routes in place on SIGTERM"),
    O("log_level", ("vip_loglevel",), "--log-level", _log_level, "info",
      "kube-vip's slog scale (-4 debug, 0 info, 4 warning, 8 error) or debug, info, warning, error"),
    O("log_format", ("kvip_log_format",), "--log-format", _log_format, "text", "text or json (one object per line)"),
    O("probes", ("kvip_probes",), "--probes", _probe_kind, "off", "local endpoint probes: off, tcp or http[:path]"),
    O("probe_interval", ("kvip_probe_interval",), "--probe-interval", positive_seconds, 1.0, "probe interval"),
    O("probe_timeout", ("kvip_probe_timeout",), "--probe-timeout", positive_seconds, 0.5, "probe timeout"),
    O("probe_rise", ("kvip_probe_rise",), "--probe-rise", int_range(1, 100), 2, "successes to mark up"),
    O("probe_fall", ("kvip_probe_fall",), "--probe-fall", int_range(1, 100), 2, "failures to mark down"),
    O("vip_allow", ("kvip_vip_allow",), "--vip-allow", parse_cidrs, None,
      "VIP allow-list: CIDRs a Service's VIPs must be in, comma separated (unset: no list, as kube-vip)"),
    O("vip_allow_namespaces", ("kvip_vip_allow_namespaces",), "--vip-allow-namespaces", parse_namespace_cidrs, (),
      "per-namespace VIP allow-list: ns=CIDR[,CIDR];ns=..., replacing kvip_vip_allow for that namespace"),
    O("node_selector", ("kvip_node_selector",), "--node-selector", parse_selector, None,
      "only nodes whose labels match this selector (kubectl -l syntax) advertise Services or contend "
      "for their Leases; unset: every node"),
    O("preference_holddown", ("kvip_preference_holddown",), "--preference-holddown", positive_seconds, 30.0,
      "kvip.io/preferred-nodes: seconds a preferred node must stay ready before it asks the holder for the Lease"),
    O("preferred_nodes", ("kvip_preferred_nodes",), "--preferred-nodes", parse_preference, None,
      "global election only: kvip.io/preferred-nodes for the global services Lease (WEIGHT:SELECTOR;...)"),
    O("egress_pod_cidrs", ("egress_podcidr",), "--egress-podcidr", parse_cidrs, None,
      "pod CIDRs, never SNATed to; Service egress (kube-vip.io/egress) is on when set (kvip does not discover it)"),
    O("egress_service_cidrs", ("egress_servicecidr",), "--egress-servicecidr", parse_cidrs, None,
      "service CIDRs, never SNATed to (unset: kube-vip's 10.96.0.0/12)"),
    O("egress_cluster_cidrs", ("egress_clustercidr",), "--egress-clustercidr", parse_cidrs, (),
      "further cluster-internal CIDRs (e.g. the nodes' network), never SNATed to"),
    O("egress_clean", ("egress_clean", "EGRESS_CLEAN", "egress_enableinternalsnat"), None, parse_bool, False,
      "accepted: kvip removes egress rules it no longer wants and never SNATs to the pod/service/cluster CIDRs"),
    O("instance_name", ("instance_name", "INSTANCE_NAME"), "--instance-name", parse_instance_name, "",
      "names the egress nftables table (inet kvip_egress_<name>) so deployments never clobber each other"),
    # -- the agent in BGP mode (kvip.config.bgp combines them) ------------------------------------
    O("bgp_as", ("bgp_as",), "--bgp-as", parse_asn, 65000, "this node's AS number (kube-vip's default)"),
    O("bgp_peers", ("bgp_peers",), "--bgp-peers", parse_peers, (),
      "peers: addr:as[:password[:multihop[:port[:mpbgp[:bfd]]]]], IPv6 as [addr], comma separated"),
    O("bgp_peer_address", ("bgp_peeraddress",), "--bgp-peer-address", ip_address, None, "a single peer's address"),
    O("bgp_peer_as", ("bgp_peeras",), "--bgp-peer-as", parse_asn, 65000, "the single peer's AS"),
    O("bgp_peer_password", ("bgp_peerpass",), "--bgp-peer-pass", check_password, "", "the single peer's password"),
    O("bgp_multihop", ("bgp_multihop",), "--bgp-multihop", parse_bool, False, "the single peer is multihop"),
    O("bgp_router_id", ("bgp_routerid",), "--bgp-router-id", parse_router_id, None,
      "router id (unset: bgp_routerinterface's, else the source address, else the host's first IPv4)"),
    O("bgp_router_interface", ("bgp_routerinterface",), "--bgp-router-interface", parse_interface_name, None,
      "take the router id from this interface's first IPv4 address (bgp_routerid wins)"),
    O("bgp_source_ip", ("bgp_sourceip",), "--bgp-source-ip", ip_address, None, "source address of the sessions"),
    O("bgp_source_interface", ("bgp_sourceif",), "--bgp-source-if", parse_interface_name, None,
      "source interface of the sessions"),
    O("bgp_hold_time", ("bgp_hold_time", "bgp_holdtime"), "--bgp-hold-time", int_range(0, 65535), 30,
      "hold time (s; 0 or >= 3)"),
    O("bgp_keepalive_time", ("bgp_keepalive_interval", "bgp_keepalivetime"), "--bgp-keepalive-time",
      int_range(0, 65535), 10, "keepalive time (s)"),
    O("bgp_mpbgp_nexthop", ("mpbgp_nexthop",), "--mpbgp-nexthop", parse_mpbgp_mode, None,
      "MP-BGP for every peer (a peer's own field wins): fixed, auto_sourceip or auto_sourceif"),
    O("bgp_mpbgp_ipv4", ("mpbgp_ipv4",), "--mpbgp-ipv4", parse_ipv4, None, "IPv4 next hop of mpbgp_nexthop=fixed"),
    O("bgp_mpbgp_ipv6", ("mpbgp_ipv6",), "--mpbgp-ipv6", parse_ipv6, None, "IPv6 next hop of mpbgp_nexthop=fixed"),
    O("bgp_annotations", ("annotation",), None, text, None, "kube-vip's Node-annotation BGP config: refused"),
    O("bgp_attach_ip", ("bgp_attach_ip_to_interface",), None, parse_bool, False,
      "kube-vip's VIP-on-interface in BGP mode: refused when true"),
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
        if env.get(name, "") != "" or (option.empty_counts and name in env):
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
