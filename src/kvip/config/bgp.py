"""BGP mode settings: kube-vip's BGP variables (read by the option table) combined and checked.

kube-vip's names work as they are: `bgp_routerid`, `bgp_routerinterface`, `bgp_as` (default 65000),
`bgp_peeraddress`, `bgp_peeras`, `bgp_peerpass`, `bgp_multihop`, `bgp_peers`, `bgp_sourceif`,
`bgp_sourceip`, `bgp_hold_time`, `bgp_keepalive_interval` (kvip's older `bgp_holdtime` and
`bgp_keepalivetime` stay accepted), `mpbgp_nexthop`, `mpbgp_ipv4`, `mpbgp_ipv6`. kvip adds the daemon
features kube-vip's embedded GoBGP does not expose: BFD on every session, graceful restart, and the
make-before-break drain time. Each value is parsed by the table (`kvip.config.options`); here only
what needs several of them. kube-vip settings kvip cannot honour are refused here, one line each.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from typing import Any

from kvip.config.bgp_values import (
    BgpPeer,
    BgpSettings,
    Mpbgp,
    check_password,
    parse_peer,
)
from kvip.config.options import read_options

__all__ = ["BgpPeer", "BgpSettings", "build_bgp_settings", "check_password", "load_bgp_settings", "parse_peer"]

ELECTION_NOTE = ("vip_leaderelection=true: in BGP mode every node announces its Services, as kube-vip does "
                 "(its leader election is for the control plane); use svc_election=true for one speaker "
                 "per Service")


def build_bgp_settings(values: Mapping[str, Any], failed: Collection[str], errors: list[str]) -> BgpSettings | None:
    """Settings for BGP mode from the table's typed values; problems are appended to `errors` (then
    None is returned). `failed` are the fields whose value was bad, already reported by the table."""
    before = len(errors)
    peers = list(values["bgp_peers"])
    if values["bgp_peer_address"] is not None:
        peers.insert(0, BgpPeer(values["bgp_peer_address"], values["bgp_peer_as"], values["bgp_peer_password"],
                                values["bgp_multihop"]))
    if not peers and not {"bgp_peers", "bgp_peer_address"} & set(failed):
        errors.append("bgp_peers / bgp_peeraddress: BGP mode needs at least one peer")
    if len({p.address for p in peers}) != len(peers):
        errors.append("bgp_peers: a peer address is listed twice")
    hold, keepalive = values["bgp_hold_time"], values["bgp_keepalive_time"]
    if hold != 0 and not (3 <= hold and keepalive < hold):
        errors.append(f"bgp_hold_time ({hold}) must be 0 or >= 3 and greater than bgp_keepalive_interval "
                      f"({keepalive})")
    if values["bgp_annotations"]:
        errors.append("annotation: kvip does not read its BGP settings from Node annotations; set bgp_as and "
                      "bgp_peers (or bgp_peeraddress/bgp_peeras/bgp_peerpass) in the DaemonSet instead")
    if values["bgp_attach_ip"]:
        errors.append("bgp_attach_ip_to_interface=true: kvip's BGP mode only announces VIPs, it never adds them "
                      "to an interface; unset it (kube-proxy accepts traffic for LoadBalancer IPs)")
    glob = None
    if values["bgp_mpbgp_nexthop"] is not None:
        glob = Mpbgp(values["bgp_mpbgp_nexthop"], values["bgp_mpbgp_ipv4"], values["bgp_mpbgp_ipv6"])
    settings = BgpSettings(
        asn=values["bgp_as"],
        peers=tuple(peers),
        router_id=values["bgp_router_id"],
        router_interface=values["bgp_router_interface"],
        source_ip=values["bgp_source_ip"],
        source_interface=values["bgp_source_interface"],
        hold_time=hold,
        keepalive_time=keepalive,
        bfd=values["bgp_bfd"],
        graceful_restart=values["bgp_graceful_restart"],
        drain_time=values["bgp_drain_time"],
        run_dir=values["bgp_run_dir"],
        bird_path=values["bird_path"],
        mpbgp=glob,
        notes=(ELECTION_NOTE,) if global_election_ignored(values) else (),
    )
    errors.extend(mpbgp_problems(settings))
    if len(errors) > before or failed:
        return None
    return settings


def global_election_ignored(values: Mapping[str, Any]) -> bool:
    """vip_leaderelection alone (no --election, no svc_election): kube-vip's BGP mode announces from
    every node, so kvip elects nothing for Services either (kvip.config.agent derives the mode)."""
    return values["election"] is None and bool(values["global_election"]) and not values["service_election"]


def mpbgp_problems(settings: BgpSettings) -> list[str]:
    """MP-BGP settings that could never give a next hop. kube-vip logs these when it adds the peer and
    then peers without MP-BGP; kvip refuses them at start instead, one line per peer."""
    problems = []
    for peer in settings.peers:
        mp = settings.peer_mpbgp(peer)
        if mp is None:
            continue
        if mp.mode == "fixed" and mp.ipv4 is None and mp.ipv6 is None:
            problems.append(f"bgp_peers {peer}: mpbgp_nexthop=fixed needs mpbgp_ipv4 or mpbgp_ipv6")
        elif mp.mode == "auto_sourceip" and settings.source_ip is None:
            problems.append(f"bgp_peers {peer}: mpbgp_nexthop=auto_sourceip needs bgp_sourceip")
        elif mp.mode == "auto_sourceif" and not settings.source_interface:
            problems.append(f"bgp_peers {peer}: mpbgp_nexthop=auto_sourceif needs bgp_sourceif")
    return problems


def load_bgp_settings(env: Mapping[str, str], errors: list[str]) -> BgpSettings | None:
    """BGP settings from the environment alone (kube-vip names); problems are appended to `errors`."""
    readout = read_options("agent", env)
    errors.extend(readout.problems.values())
    return build_bgp_settings(readout.values, readout.problems, errors)
