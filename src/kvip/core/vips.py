"""Reading a Service's VIPs out of its spec, annotations and status — pure, no I/O.

kube-vip reads the first non-empty of: the `kube-vip.io/loadbalancerIPs` annotation (comma separated),
`spec.loadBalancerIP`, `status.loadBalancer.ingress[].ip`. kvip reads the same sources in the same
order. An entry that is not a usable host address (garbage, a prefix, the wrong family for the
Service, multicast, loopback, unspecified, link-local) is dropped with a `BadInput` naming it; the
valid entries of that service still count, and no other service is affected.
"""

from __future__ import annotations

import functools
import ipaddress

from kvip.core.model import BadInput, IPAddress, ServiceView

LOADBALANCER_IPS_ANNOTATION = "kube-vip.io/loadbalancerIPs"

_FAMILY_NAME = {4: "IPv4", 6: "IPv6"}


def _entries(service: ServiceView) -> tuple[str, tuple[str, ...]]:
    """The first non-empty VIP source and its raw entries."""
    annotated = service.annotations.get(LOADBALANCER_IPS_ANNOTATION)
    if annotated is not None:
        entries = tuple(part.strip() for part in annotated.split(",") if part.strip())
        if entries:
            return f"annotation {LOADBALANCER_IPS_ANNOTATION}", entries
    if service.load_balancer_ip and service.load_balancer_ip.strip():
        return "spec.loadBalancerIP", (service.load_balancer_ip.strip(),)
    ingress = tuple(ip.strip() for ip in service.ingress_ips if ip and ip.strip())
    return "status.loadBalancer.ingress", ingress


def _why_unusable(address: IPAddress) -> str | None:
    if address.is_unspecified:
        return "is the unspecified address"
    if address.is_loopback:
        return "is a loopback address"
    if address.is_multicast:
        return "is a multicast address"
    if address.is_link_local:
        return "is a link-local address"
    if address.version == 4 and address == ipaddress.IPv4Address("255.255.255.255"):
        return "is the broadcast address"
    return None


@functools.lru_cache(maxsize=65536)
def service_vips(service: ServiceView) -> tuple[tuple[IPAddress, ...], tuple[BadInput, ...]]:
    """The VIPs a service asks for, in order, deduplicated, and what was wrong with the rest.

    Memoized on the (immutable) view: every reconcile re-decides every service, and parsing
    addresses was most of decide()'s cost at 10,000 services.
    """
    source, entries = _entries(service)
    vips: list[IPAddress] = []
    problems: list[BadInput] = []
    annotated = service.annotations.get(LOADBALANCER_IPS_ANNOTATION, "")
    if annotated.strip() and not source.startswith("annotation"):
        problems.append(BadInput(service.key, "InvalidVIP",
                                 f"annotation {LOADBALANCER_IPS_ANNOTATION}={annotated!r} lists no address; ignored"))
    families = {f for f in service.ip_families if f in ("IPv4", "IPv6")}
    for raw in entries:
        try:
            address = ipaddress.ip_address(raw)
        except ValueError:
            problems.append(
                BadInput(service.key, "InvalidVIP", f"{source}: {raw!r} is not an IP address; ignored")
            )
            continue
        if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
            problems.append(
                BadInput(service.key, "InvalidVIP", f"{source}: {raw!r} is an IPv4-mapped IPv6 address; ignored")
            )
            continue
        why = _why_unusable(address)
        if why is not None:
            problems.append(BadInput(service.key, "InvalidVIP", f"{source}: {raw} {why}; ignored"))
            continue
        family = _FAMILY_NAME[address.version]
        if families and family not in families:
            problems.append(
                BadInput(
                    service.key,
                    "WrongIPFamily",
                    f"{source}: {raw} is {family} but the service's ipFamilies are "
                    f"{', '.join(sorted(families))}; ignored",
                )
            )
            continue
        if address not in vips:
            vips.append(address)
    return tuple(vips), tuple(problems)
