"""Which Lease a Service is elected by, at the edges: Kubernetes name lengths, a path with two slashes,
the exact refusal decide() reports for each election annotation, and the global Lease only in global mode."""

from __future__ import annotations

from types import MappingProxyType

import pytest

from kvip.core.election_rules import LeaseKey
from kvip.core.leases import (
    ElectionPlan,
    InvalidLeaseName,
    election_refusal,
    leadership_from_leases,
    lease_of,
    wanted_leases,
)
from kvip.core.model import BadInput, ElectionMode, Leadership, ServiceKey, ServiceView

LEASE_NAME, FORCE = "kube-vip.io/leaseName", "kube-vip.io/forcePerServiceElection"
GLOBAL = LeaseKey("kube-system", "plndr-svcs-lock")


def service(name: str = "web", policy: str = "Cluster", **annotations: str) -> ServiceView:
    return ServiceView(ServiceKey("shop", name), external_traffic_policy=policy,
                       annotations=MappingProxyType(annotations))


def named(value: str) -> ServiceView:
    return service(**{LEASE_NAME: value})


def test_the_longest_namespace_and_lease_names_kubernetes_allows_are_accepted_one_more_is_not() -> None:
    assert lease_of(named("n" * 63 + "/web")) == LeaseKey("n" * 63, "web")
    assert lease_of(named("l" * 253)) == LeaseKey("shop", "l" * 253)
    with pytest.raises(InvalidLeaseName, match="is not a namespace name"):
        lease_of(named("n" * 64 + "/web"))
    with pytest.raises(InvalidLeaseName, match="is not a Lease name"):
        lease_of(named("l" * 254))


def test_a_lease_path_with_two_slashes_is_refused_for_its_namespace_part() -> None:
    with pytest.raises(InvalidLeaseName, match="^'infra/team' is not a namespace name$"):
        lease_of(named("infra/team/web"))
    with pytest.raises(InvalidLeaseName, match="^'Web' is not a Lease name$"):
        lease_of(named("Web"))


@pytest.mark.parametrize("mode, on_demand, annotations, refusal", [
    (ElectionMode.NONE, False, {FORCE: "true"}, ("per-service-election-off", "ElectionUnavailable",
     f"{FORCE}=true needs per_service_election_on_demand=true (or svc_election=true); not advertised")),
    (ElectionMode.SERVICE, False, {LEASE_NAME: "shared"}, None),
    (ElectionMode.SERVICE, False, {LEASE_NAME: "Bad!"}, ("invalid-lease-name", "InvalidAnnotation",
     f"{LEASE_NAME}: 'Bad!' is not a Lease name; not advertised")),
    (ElectionMode.NONE, True, {FORCE: "true", LEASE_NAME: "Bad!"}, ("invalid-lease-name", "InvalidAnnotation",
     f"{LEASE_NAME}: 'Bad!' is not a Lease name; not advertised")),
    (ElectionMode.NONE, False, {LEASE_NAME: "Bad!"}, None),  # not elected: the name is never used
])
def test_each_election_refusal_names_the_service_and_why(mode: ElectionMode, on_demand: bool,
                                                          annotations: dict[str, str],
                                                          refusal: tuple[str, str, str] | None) -> None:
    got = election_refusal(service(**annotations), mode, on_demand)
    key = ServiceKey("shop", "web")
    assert got == (None if refusal is None else (refusal[0], BadInput(key, refusal[1], refusal[2])))


def test_a_shared_lease_on_a_local_policy_service_is_refused_naming_the_service() -> None:
    got = election_refusal(service(policy="Local", **{LEASE_NAME: "shared"}), ElectionMode.SERVICE, False)
    assert got == ("shared-lease-needs-cluster-policy", BadInput(
        ServiceKey("shop", "web"), "InvalidAnnotation", f"{LEASE_NAME} needs externalTrafficPolicy=Cluster; "
                                                        "not advertised"))


def test_a_service_with_an_unusable_lease_name_does_not_hide_the_leases_of_the_next() -> None:
    bad, good = service("bad", **{LEASE_NAME: "Bad!"}), service("good", **{LEASE_NAME: "shared"})
    plan = ElectionPlan(ElectionMode.SERVICE)
    services = {bad.key: bad, good.key: good}
    assert wanted_leases(plan, services, [bad.key, good.key]) == {LeaseKey("shop", "shared")}
    assert leadership_from_leases(plan, {LeaseKey("shop", "shared")}, [bad, good]).led_services == {good.key}


def test_only_global_mode_contends_for_and_leads_by_the_global_lease() -> None:
    for mode in (ElectionMode.NONE, ElectionMode.SERVICE):
        plan = ElectionPlan(mode, global_lease=GLOBAL)
        assert wanted_leases(plan, {}, []) == set()
        assert leadership_from_leases(plan, {GLOBAL}, []) == Leadership()
    plan = ElectionPlan(ElectionMode.GLOBAL, global_lease=GLOBAL)
    assert wanted_leases(plan, {}, []) == {GLOBAL}
    assert leadership_from_leases(plan, {GLOBAL}, []) == Leadership(is_global_leader=True)
    assert leadership_from_leases(plan, set(), []) == Leadership(is_global_leader=False)
    assert leadership_from_leases(ElectionPlan(ElectionMode.GLOBAL), {GLOBAL}, []) == Leadership()


def test_with_on_demand_election_a_service_not_forced_does_not_hide_the_lease_of_a_forced_one() -> None:
    plain, forced = service("a-plain"), service("b-forced", **{FORCE: "true"})
    plan = ElectionPlan(ElectionMode.NONE, per_service_on_demand=True)
    lease = LeaseKey("shop", "kubevip-b-forced")
    assert wanted_leases(plan, {plain.key: plain, forced.key: forced}, [plain.key, forced.key]) == {lease}
    assert leadership_from_leases(plan, {lease}, [plain, forced]).led_services == {forced.key}


def test_a_lease_annotation_that_is_not_text_reads_as_absent() -> None:
    """Views built outside the conversion may carry any value; it must not break the election."""
    odd = ServiceView(ServiceKey("shop", "web"), annotations=MappingProxyType({LEASE_NAME: 42}))  # type: ignore[dict-item]
    assert lease_of(odd) == LeaseKey("shop", "kubevip-web")
