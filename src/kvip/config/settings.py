"""The typed settings the configuration hands to the adapters, which take them as they are.

Defined here, below `kube`, `dataplane` and `agent`, so that config can build them without importing
the layers that use them (BGP's are in `kvip.config.bgp_values`, Lease timing is
`kvip.core.election_rules.LeaseTiming`).
"""

from __future__ import annotations

from dataclasses import dataclass

# Kernel route types by name (rtnetlink's RTN_*). The one definition: the route-table backend maps
# names to numbers with it, the configuration accepts these names and ROUTE_TYPE_ALIASES.
ROUTE_TYPES: dict[str, int] = {"unicast": 1, "local": 2}
# kube-vip's vip_routingtabletype spellings, by the canonical name they mean.
ROUTE_TYPE_ALIASES: dict[str, str] = {"1": "unicast", "2": "local", "rtn_unicast": "unicast",
                                      "rtn_local": "local", "unicast": "unicast", "local": "local"}


@dataclass(frozen=True)
class RouteTableSettings:
    """Routing-table mode: one /32 or /128 route per VIP in `table`, marked with `protocol`."""

    table: int = 198
    protocol: int = 248
    interface: str = "lo"
    route_type: str = "unicast"  # a key of ROUTE_TYPES


@dataclass(frozen=True)
class ArpSettings:
    """Layer-2 mode: VIPs on `interface` (None: the IPv4 default route's), announced every `rate` s."""

    interface: str | None = None
    protocol: int = 248
    rate: float = 3.0


@dataclass(frozen=True)
class ProbeSettings:
    """Local endpoint probes; `default_kind` is kvip_probes (tcp, http or http:/path)."""

    interval: float = 1.0
    timeout: float = 0.5
    rise: int = 2
    fall: int = 2
    default_kind: str = "tcp"
