"""BGP mode settings: kube-vip's BGP variables (read by the option table) combined and checked.

kube-vip's names work as they are: `bgp_routerid`, `bgp_as`, `bgp_peeraddress`, `bgp_peeras`,
`bgp_peerpass`, `bgp_multihop`, `bgp_peers`, `bgp_sourceif`, `bgp_sourceip`, `bgp_holdtime`,
`bgp_keepalivetime`. kvip adds the daemon features kube-vip's embedded GoBGP does not expose: BFD,
graceful restart, and the make-before-break drain time. Each value is parsed by the table
(`kvip.config.options`); here only what needs several of them: the peer list, hold vs keepalive.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from typing import Any

from kvip.config.bgp_values import BgpPeer, BgpSettings, check_password, parse_peer
from kvip.config.options import read_options

__all__ = ["BgpPeer", "BgpSettings", "build_bgp_settings", "check_password", "load_bgp_settings", "parse_peer"]


def build_bgp_settings(values: Mapping[str, Any], failed: Collection[str], errors: list[str]) -> BgpSettings | None:
    """Settings for BGP mode from the table's typed values; problems are appended to `errors` (then
    None is returned). `failed` are the fields whose value was bad, already reported by the table."""
    before = len(errors)
    if values["bgp_as"] is None and "bgp_as" not in failed:
        errors.append("bgp_as: BGP mode needs this node's AS number")
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
        errors.append(f"bgp_holdtime ({hold}) must be 0 or >= 3 and greater than bgp_keepalivetime ({keepalive})")
    if len(errors) > before or failed or values["bgp_as"] is None:
        return None
    return BgpSettings(
        asn=values["bgp_as"],
        peers=tuple(peers),
        router_id=values["bgp_router_id"],
        source_ip=values["bgp_source_ip"],
        source_interface=values["bgp_source_interface"],
        hold_time=hold,
        keepalive_time=keepalive,
        bfd=values["bgp_bfd"],
        graceful_restart=values["bgp_graceful_restart"],
        drain_time=values["bgp_drain_time"],
        run_dir=values["bgp_run_dir"],
        bird_path=values["bird_path"],
    )


def load_bgp_settings(env: Mapping[str, str], errors: list[str]) -> BgpSettings | None:
    """BGP settings from the environment alone (kube-vip names); problems are appended to `errors`."""
    readout = read_options("agent", env)
    errors.extend(readout.problems.values())
    return build_bgp_settings(readout.values, readout.problems, errors)
