"""`kvip audit`'s view of the DHCP leases and egress rules (kvip issue #19), pure:

- `dataplane_drift`: what each node's heartbeat says drifts there (`kvip.core.dataplane_report`: a Service
  led there that asks for DHCP but holds no lease, a macvlan of kvip's that no Service uses, an egress rule
  nftables refused). Only fresh heartbeats count (a stale node is reported as stale already).
- `leases_from_status`: the audit's decide() must know each DHCP Service's leased address, or it expects
  nothing where the leader advertises the lease and calls that node's (right) heartbeat unresolved. The
  address is the one kvip wrote into the Service's status after leasing it; only the node leading the
  Service advertises it, as decide() already rules.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping

from kvip.core.dhcp import DhcpLease, Leases
from kvip.core.model import ServiceKey, ServiceView
from kvip.core.vips import dhcp_families
from kvip.kube.heartbeat import NodeView


def dataplane_drift(views: Mapping[str, NodeView | None]) -> tuple[str, ...]:
    """`node: line` for every drift line of every node's heartbeat, by node."""
    return tuple(f"{node}: {line}" for node, view in sorted(views.items()) if view is not None
                 for line in view.drift)


def leases_from_status(views: Mapping[ServiceKey, ServiceView]) -> Leases:
    """Each DHCP Service (`0.0.0.0` asked) with an IPv4 address in its status, as decide()'s lease input."""
    found = {}
    for key, view in views.items():
        if 4 not in dhcp_families(view):
            continue
        for text in view.ingress_ips:
            try:
                address = ipaddress.ip_address(text)
            except ValueError:
                continue
            if address.version == 4 and not address.is_unspecified:
                found[key] = DhcpLease(address, "")
                break
    return found
