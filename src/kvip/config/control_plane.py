"""kube-vip's control-plane settings (cp_enable, address, port, dns_mode, vip_leasename, the health check).

The parsers the option table uses for them, and `control_plane_rules`: what needs several of them at
once (an address is required, which mode elects the control-plane VIP, svc_enable's default), one line
per problem or notice, as kube-vip's own startup checks say it. Pure.
"""

from __future__ import annotations

import re
import urllib.parse
from collections.abc import Collection, Mapping
from typing import Any

from kvip.core.control_plane import DNS_MODES, InvalidControlPlaneAddress, split_address
from kvip.core.model import Mode

_SUBDOMAIN = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*")


def parse_cp_address(value: str) -> str:
    """kube-vip's `address`: IPs and DNS names, comma separated (kept as text; resolved by the agent)."""
    try:
        split_address(value)
    except InvalidControlPlaneAddress as why:
        raise ValueError(str(why)) from None
    return value.strip()


def parse_dns_mode(value: str) -> str:
    """first, ipv4, ipv6 or dual; kube-vip's IPv4/IPv6 spellings too."""
    mode = value.strip().lower()
    if mode not in DNS_MODES:
        raise ValueError(f"{value!r} is not a DNS mode ({', '.join(DNS_MODES)})")
    return mode


def parse_lease_name(value: str) -> str:
    name = value.strip()
    if len(name) > 253 or not _SUBDOMAIN.fullmatch(name):
        raise ValueError(f"{value!r} is not a Lease name (lower-case DNS subdomain)")
    return name


def parse_health_url(value: str) -> str:
    """kube-vip's check: an absolute http or https URL."""
    url = urllib.parse.urlsplit(value.strip())
    if url.scheme.lower() not in ("http", "https") or not url.hostname:
        raise ValueError(f"{value!r} is not an http:// or https:// URL")
    return value.strip()


def control_plane_rules(values: Mapping[str, Any], env: Mapping[str, str], mode: Mode, failed: Collection[str],
                        errors: list[str], notices: list[str]) -> tuple[bool, bool]:
    """(svc_enable, control-plane election), appending one line per problem or notice; `failed`: the fields
    whose value was bad, already reported by the option table."""
    cp = bool(values["cp_enable"])
    # kube-vip runs Services only when told (svc_enable=true); kvip's default is Services, unless the
    # configuration is kube-vip's control-plane static Pod (cp_enable=true and no svc_enable).
    svc = values["svc_enable"] if values["svc_enable"] is not None else not cp
    if not cp and not svc:
        errors.append("svc_enable=false without cp_enable=true: no feature is enabled, nothing to do")
    if env.get("vip_address", "") and not env.get("address", ""):
        notices.append("vip_address is deprecated (kube-vip's name): read as address")
    elif env.get("vip_address", "") and env.get("address", ""):
        notices.append("vip_address and address both set: address wins, as in kube-vip")
    if not cp:
        return bool(svc), False
    if not values["cp_address"] and "cp_address" not in failed:
        errors.append("cp_enable=true needs address (or vip_address): the control-plane VIP, an IP or a DNS name")
    election = mode is Mode.ARP or bool(values["global_election"])
    if mode is Mode.ARP and values["global_election"] is False:
        notices.append("vip_leaderelection=false with vip_arp: the control-plane VIP is still elected "
                       f"(Lease {values['cp_lease_name']}), as kube-vip does: two nodes must never answer ARP for it")
    elif mode is Mode.TABLE and election:
        notices.append("vip_leaderelection=true in routing-table mode: kvip elects one node for the control-plane "
                       f"VIP (Lease {values['cp_lease_name']}); kube-vip would route it from every node")
    return bool(svc), election
