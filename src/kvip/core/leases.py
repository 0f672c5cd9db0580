"""Which Lease elects each Service, and what the Leases a node holds mean — pure, no I/O.

kube-vip's per-service Lease is `kubevip-<service>` in the Service's namespace, unless the Service names
one with `kube-vip.io/leaseName` (`name`, or `namespace/name`): Services naming the same Lease share it,
so one node leads them all (a VIP shared by several Services is then advertised from one node only).
`kube-vip.io/forcePerServiceElection: "true"` with `per_service_election_on_demand` puts one Service
under per-service election while the others follow the node's mode (none or global).

The agent (contending, reading what it holds) and `kvip audit` (reading every holder) both go through
`wanted_leases` and `leadership_from_leases`, so they cannot disagree about who leads what.
"""

from __future__ import annotations

import re
from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass

from kvip.core.election_rules import LeaseKey, service_lease_key
from kvip.core.model import (
    BadInput,
    ElectionMode,
    Leadership,
    ServiceKey,
    ServiceView,
    shown,
)

LEASE_NAME_ANNOTATION = "kube-vip.io/leaseName"
FORCE_ELECTION_ANNOTATION = "kube-vip.io/forcePerServiceElection"
# Kubernetes object names: a Lease name is a DNS-1123 subdomain, a namespace a DNS-1123 label.
_SUBDOMAIN = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*")
_LABEL = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?")


class InvalidLeaseName(ValueError):
    """A `kube-vip.io/leaseName` value that cannot name a Lease; the message says why."""


@dataclass(frozen=True)
class ElectionPlan:
    """The node's election settings, as far as Leases are concerned."""

    mode: ElectionMode
    per_service_on_demand: bool = False
    global_lease: LeaseKey | None = None  # set when mode is GLOBAL


def _annotation(service: ServiceView, name: str) -> str:
    value = service.annotations.get(name, "")
    return value.strip() if isinstance(value, str) else ""


def forces_per_service_election(service: ServiceView) -> bool:
    return _annotation(service, FORCE_ELECTION_ANNOTATION).lower() == "true"


def per_service_elected(service: ServiceView, mode: ElectionMode, on_demand: bool) -> bool:
    """Whether one Lease (its own or a shared one) gates this Service's advertisement."""
    return mode is ElectionMode.SERVICE or (on_demand and forces_per_service_election(service))


def shared_lease_name(service: ServiceView) -> str:
    """The `kube-vip.io/leaseName` value, stripped ('' when absent or empty: the Service's own Lease)."""
    return _annotation(service, LEASE_NAME_ANNOTATION)


def lease_of(service: ServiceView) -> LeaseKey:
    """The Lease electing this Service's leader; `InvalidLeaseName` when the annotation cannot name one."""
    value = shared_lease_name(service)
    if not value:
        return service_lease_key(service.key)
    namespace, _, name = value.rpartition("/") if "/" in value else (service.key.namespace, "", value)
    if "/" in namespace or not _LABEL.fullmatch(namespace) or len(namespace) > 63:
        raise InvalidLeaseName(f"{shown(namespace)} is not a namespace name")
    if not _SUBDOMAIN.fullmatch(name) or len(name) > 253:
        raise InvalidLeaseName(f"{shown(name)} is not a Lease name")
    return LeaseKey(namespace, name)


def election_refusal(service: ServiceView, mode: ElectionMode, on_demand: bool) -> tuple[str, BadInput] | None:
    """Why this Service's election annotations keep it from being advertised at all (decision reason and
    the problem to report), or None."""
    key = service.key
    if forces_per_service_election(service) and not per_service_elected(service, mode, on_demand):
        # kube-vip's own watcher skips such a Service when the on-demand election is off: no node serves it.
        return "per-service-election-off", BadInput(
            key, "ElectionUnavailable", f"{FORCE_ELECTION_ANNOTATION}=true needs per_service_election_on_demand=true "
                                        "(or svc_election=true); not advertised")
    if shared_lease_name(service) and service.external_traffic_policy != "Cluster":
        # The shared Lease's holder may have no local endpoint; kube-vip refuses the Service too.
        return "shared-lease-needs-cluster-policy", BadInput(
            key, "InvalidAnnotation", f"{LEASE_NAME_ANNOTATION} needs externalTrafficPolicy=Cluster; not advertised")
    if per_service_elected(service, mode, on_demand):
        try:
            lease_of(service)
        except InvalidLeaseName as why:
            return "invalid-lease-name", BadInput(key, "InvalidAnnotation",
                                                  f"{LEASE_NAME_ANNOTATION}: {why}; not advertised")
    return None


def _elected_leases(plan: ElectionPlan, services: Iterable[ServiceView]) -> Iterable[tuple[ServiceKey, LeaseKey]]:
    for service in services:
        if not per_service_elected(service, plan.mode, plan.per_service_on_demand):
            continue
        try:
            yield service.key, lease_of(service)
        except InvalidLeaseName:
            continue  # refused by decide() (election_refusal): no Lease to contend for


def wanted_leases(plan: ElectionPlan, services: Mapping[ServiceKey, ServiceView],
                  eligible: Collection[ServiceKey]) -> frozenset[LeaseKey]:
    """The Leases this node contends for: the global one, and the Lease of every per-service-elected
    Service decide() found it eligible for (a shared Lease once, however many of its Services are)."""
    wanted = {plan.global_lease} if plan.mode is ElectionMode.GLOBAL and plan.global_lease is not None else set()
    wanted.update(lease for key, lease in _elected_leases(plan, (services[k] for k in eligible if k in services)))
    return frozenset(wanted)


def leadership_from_leases(plan: ElectionPlan, held: Collection[LeaseKey],
                           services: Iterable[ServiceView]) -> Leadership:
    """The one reading of held Leases as leadership: every Service whose Lease is held is led."""
    is_global = plan.mode is ElectionMode.GLOBAL and plan.global_lease is not None and plan.global_lease in held
    led = frozenset(key for key, lease in _elected_leases(plan, services) if lease in held)
    return Leadership(is_global_leader=is_global, led_services=led)
