"""kube-vip's own configurations, read as kube-vip reads them: what kvip refuses, warns about or notes.

The option table (`kvip.config.options`) holds every setting kvip implements. This module holds the
rest of kube-vip's variables (features kvip does not have, so a DaemonSet that sets them is told in one
line what kvip does instead), the checks that need several raw variables at once (vip_cidr's rename,
vip_loglevel's old scale, vip_subnet's meaning for Services), and the warning for a misspelt variable,
naming the closest known one. Pure: it reads the mapping it is given and returns lines.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

# Values of a kube-vip switch that mean "off" (Go's strconv.ParseBool false spellings): no warning then.
OFF = frozenset({"0", "f", "F", "false", "FALSE", "False"})
CONTROL_PLANE = "kvip's control-plane VIP (cp_enable) has no such setting"
DDNS = "dynamic DNS is not supported by kvip: DHCP Services (0.0.0.0, ::) are, without DNS updates (docs/dhcp.md)"
# Variables with these prefixes are kube-vip's or kvip's: an unknown one is probably misspelt.
PREFIXES = ("vip_", "svc_", "bgp_", "cp_", "lb_", "kvip_", "egress_", "dns_", "dhcp_", "prometheus_", "zebra_",
            "mpbgp_", "control_plane_")


@dataclass(frozen=True)
class NotSupported:
    """A kube-vip variable kvip does not implement: setting it (to anything but `off`) warns with `why`,
    or is refused when kvip would otherwise do something else entirely."""

    name: str
    why: str
    off: frozenset[str] = OFF
    refuse: bool = False


N = NotSupported
NOT_SUPPORTED: tuple[NotSupported, ...] = (
    N("vip_leaseannotations", "annotations on kube-vip's Leases: kvip's Leases carry none", frozenset()),
    N("vip_loseleadership_timeout_seconds", "kvip does not time interface loss; see vip_loseleadership",
      frozenset()),
    N("vip_interfaceloglobal", "kvip adds no address to lo in table mode (it adds routes), so there is no scope "
      "to choose"),
    N("vip_allow_interface_not_up", "kvip starts whatever the interface state and retries until it can add "
      "its VIPs"),
    N("vip_ddns", DDNS),
    N("vip_singlenode", f"{CONTROL_PLANE}: a single control-plane node simply holds the Lease alone"),
    N("vip_startleader", f"{CONTROL_PLANE}: the first node still wins the Lease (or advertises at once in anycast)"),
    N("cp_detect", "kvip does not probe loopback for a working API address: it uses the kubeconfig's server"),
    N("vip_configmap", "kube-vip's control-plane ConfigMap: kvip's agent reads none (the address pools are "
      "`kvip controller --configmap`)", frozenset()),
    N("egress_withnftables", "kvip's egress always writes nftables rules (its own table), never iptables",
      frozenset({"1", "t", "T", "true", "TRUE", "True"})),
    N("vip_wireguard", "WireGuard mode is not supported by kvip (modes: routing table, ARP, BGP)", refuse=True),
    N("vip_skipdad", "kvip adds IPv6 VIPs with the kernel's duplicate address detection"),
    N("zebra_enable", "Zebra (FRR) integration: kvip runs its own BIRD"),
    N("zebra_url", "Zebra (FRR) integration: kvip runs its own BIRD", frozenset()),
    N("zebra_version", "Zebra (FRR) integration: kvip runs its own BIRD", frozenset()),
    N("zebra_software_name", "Zebra (FRR) integration: kvip runs its own BIRD", frozenset()),
    N("lb_enable", "IPVS load balancing on the VIP is not supported by kvip: it advertises VIPs and "
      "kube-proxy forwards"),
    N("lb_port", "IPVS load balancing (lb_enable) is not supported by kvip", frozenset({"6443"})),
    N("lb_fwdmethod", "IPVS load balancing (lb_enable) is not supported by kvip", frozenset({"local"})),
    N("enable_service_security", "kvip installs no firewall rules: traffic to other ports of the VIP is NOT "
      "dropped"),
    N("enable_node_labeling", "kvip labels no Node (kube-vip.io/has-ip): each node's heartbeat Lease "
      "(annotation kvip.io/advertised) and `kvip audit` say which node advertises which VIP"),
    N("dhcp_mode", "the DHCP families of a DDNS (host name) VIP, and kvip has no DDNS; a Service asks DHCPv4 "
      "with `0.0.0.0`, DHCPv6 with `::`", frozenset({"ipv4"})),
    N("dhcp_backoff_attempts", "kvip's DHCP client retries forever (4, 8, then every 16 s)", frozenset()),
    N("enable_endpoints", "kvip reads EndpointSlices only (Endpoints are deprecated since Kubernetes 1.33)"),
    N("mirror_dest_interface", "traffic mirroring is not supported by kvip", frozenset()),
    N("iptables_backend", "kvip writes no iptables rules (egress: nftables, its own table)", frozenset()),
    N("backend_health_check_interval", "kvip probes endpoints with kvip_probes instead", frozenset()),
    N("health_check_port", "kvip serves /healthz and /readyz on prometheus_server", frozenset()),
    N("enable_upnp", "UPnP port forwarding is not supported by kvip"),
    N("config_file", "kvip reads no configuration file: set the variables or flags", frozenset()),
    N("debounce_time", "kvip batches events by level-triggered passes, not a debounce timer", frozenset()),
)
NOT_SUPPORTED_BY_NAME: Mapping[str, NotSupported] = {n.name: n for n in NOT_SUPPORTED}


@dataclass(frozen=True)
class Checks:
    notices: tuple[str, ...]
    errors: tuple[str, ...]


def check_environment(env: Mapping[str, str], known: Iterable[str]) -> Checks:
    """Lines for every kube-vip variable kvip does not implement, and for every misspelt one."""
    notices: list[str] = []
    errors: list[str] = []
    implemented = set(known)
    names = sorted(implemented | set(NOT_SUPPORTED_BY_NAME))
    for name in sorted(env):
        value = env[name]
        if name in implemented:  # the option table wins over a stale NOT_SUPPORTED row
            continue
        unsupported = NOT_SUPPORTED_BY_NAME.get(name)
        if unsupported is not None:
            if value != "" and value not in unsupported.off:
                line = f"{name}={value}: not supported: {unsupported.why}"
                (errors if unsupported.refuse else notices).append(line if unsupported.refuse else
                                                                   line + "; ignored")
            continue
        if name.startswith(PREFIXES) and name not in names:
            notices.append(unknown_variable(name, names))
    return Checks(tuple(notices), tuple(errors))


def unknown_variable(name: str, known: Iterable[str]) -> str:
    close = difflib.get_close_matches(name, list(known), n=1, cutoff=0.6)
    hint = f"; did you mean {close[0]}?" if close else ""
    return f"{name}: unknown variable, ignored{hint}"


# -- checks needing the parsed values and the raw variables together ---------------------------

SLOG_SCALE = "kube-vip's slog scale: -4 debug, 0 info, 4 warning, 8 error"


def value_notices(values: Mapping[str, Any], env: Mapping[str, str]) -> list[str]:
    """One line each for the settings kvip reads like kube-vip but where the reader may expect otherwise."""
    notices: list[str] = []
    level = env.get("vip_loglevel", "").strip()
    if level.isascii() and level.isdigit() and 1 <= int(level) <= 7:
        notices.append(f"vip_loglevel={level} is read on {SLOG_SCALE} (the old 0-6 scale, where 5 was "
                       f"debug, is gone): kvip logs {values['log_level']} and above")
    if env.get("vip_cidr", "") and not env.get("vip_subnet", ""):
        notices.append("vip_cidr is deprecated (kube-vip renamed it vip_subnet): read as vip_subnet")
    subnet = values.get("vip_subnet")
    if subnet is not None and subnet != HOST_PREFIXES:
        shown = ",".join(subnet)
        notices.append(f"vip_subnet={shown}: kvip gives every VIP (Services' and the control plane's) a /32 (IPv4) "
                       f"or /128 (IPv6) route or address, whatever the prefix kube-vip would put on the interface; "
                       "ignored")
    if values.get("interface") == "auto":
        notices.append("vip_servicesinterface=auto: kvip puts VIPs on vip_interface (else the default route's "
                       "interface) or the Service's kube-vip.io/serviceInterface, not on the interface whose "
                       "subnet holds each VIP")
    return notices


HOST_PREFIXES = ("32", "128")


def parse_subnet(value: str) -> tuple[str, str]:
    """kube-vip's vip_subnet: 'v4[,v6]' prefix lengths (a leading '/' allowed) or 'auto'; missing = host."""
    parts = [p.strip().lstrip("/") for p in value.split(",")]
    if len(parts) > 2:
        raise ValueError(f"{value!r} has more than two prefixes (IPv4,IPv6)")
    parts += [""] * (2 - len(parts))
    for part, top in zip(parts, (32, 128), strict=True):
        if part in ("", "auto"):
            continue
        if not (part.isascii() and part.isdigit() and len(part) <= 3 and int(part) <= top):
            raise ValueError(f"{value!r} is not a prefix length (0-{top}) or auto")
    return (parts[0] or "32", parts[1] or "128")


# -- kube-vip's rules that decide what runs (cp_enable and svc_enable: kvip.config.control_plane) --

def arp_global_election_notice(lease_name: str) -> str:
    return (f"vip_arp=true without svc_election: one global Lease {lease_name} (svc_leasename) elects the node "
            "that answers ARP for every Service, as kube-vip does")


def node_name_or_host(given: str | None, host_name: str | None, notices: list[str], errors: list[str]) -> str:
    """kube-vip's identity: the given node name, else the host name (os.Hostname), lower-cased either way."""
    if given:
        return given.lower()
    if host_name:
        notices.append(f"node name not set (vip_nodename, NODE_NAME, --node-name): using the host name "
                       f"{host_name.lower()!r}, as kube-vip does; set vip_nodename from spec.nodeName to be sure "
                       "it is the Node's name")
        return host_name.lower()
    errors.append("node name missing: set --node-name, vip_nodename or NODE_NAME (no host name to fall back to)")
    return ""


def services_interface(interface: str, env: Mapping[str, str], default: str) -> tuple[str, bool]:
    """vip_servicesinterface=auto: the device is then vip_interface's (or the default); True = auto was asked."""
    if interface != "auto":
        return interface, False
    fallback = env.get("vip_interface", "")
    return (fallback if fallback not in ("", "auto") else default), True
