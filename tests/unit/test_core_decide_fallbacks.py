"""decide()'s defence in depth and the reports that name a VIP: a Service whose view breaks a helper costs
that Service alone, with a report saying what failed, and a report about a shared VIP names that VIP."""

from __future__ import annotations

import ipaddress
from collections.abc import Iterator, Mapping
from types import MappingProxyType

from kvip.core.decide import (
    ALLOW_WITHOUT_ENDPOINTS_ANNOTATION,
    IGNORE_ANNOTATION,
    SERVICE_INTERFACE_ANNOTATION,
    DecideConfig,
    decide,
)
from kvip.core.model import (
    ClusterSnapshot,
    EndpointView,
    PortView,
    ProbeVerdicts,
    ServiceDecision,
    ServiceKey,
    ServiceView,
)

IPS = "kube-vip.io/loadbalancerIPs"
GOOD, BROKEN = ServiceKey("default", "good"), ServiceKey("default", "broken")
CONFIG = DecideConfig(node_name="n1")


class UnreadableAnnotations(Mapping[str, str]):
    """Annotations that fail when read: stands for any bug a strange view could trip in a helper."""

    def __getitem__(self, key: str) -> str:
        raise LookupError("unreadable annotations")

    def get(self, key: str, default: object = None) -> str:  # type: ignore[override]
        raise LookupError("unreadable annotations")

    def __iter__(self) -> Iterator[str]:
        return iter(())

    def __len__(self) -> int:
        return 0


class UnreadablePorts(tuple):  # type: ignore[type-arg]
    def __iter__(self) -> Iterator[PortView]:
        raise OverflowError("unreadable ports")


def service(key: ServiceKey, vip: str, ports: tuple[PortView, ...] = (PortView("http", 80),),
            **annotations: str) -> ServiceView:
    return ServiceView(key, ports=ports, annotations=MappingProxyType({IPS: vip, **annotations}))


def snapshot(*services: ServiceView) -> ClusterSnapshot:
    return ClusterSnapshot(services={s.key: s for s in services},
                           endpoints={s.key: (EndpointView(("10.244.0.5",), "n1"),) for s in services})


def test_a_service_that_breaks_decide_is_withdrawn_and_reported_with_the_failure_others_unaffected() -> None:
    broken = ServiceView(BROKEN, annotations=UnreadableAnnotations())
    state = decide(CONFIG, snapshot(service(GOOD, "10.96.0.1"), broken))
    assert state.decisions[BROKEN] == ServiceDecision(BROKEN, (), False, False, "internal-error")
    reports = [p for p in state.problems if p.service == BROKEN]
    assert {p.reason for p in reports} == {"InternalError"}
    assert "cannot decide service 'default/broken': LookupError: 'unreadable annotations'; not advertised by this " \
           "node" in [p.message for p in reports]
    assert state.decisions[GOOD].advertised and set(state.advertisements) == {ipaddress.ip_address("10.96.0.1")}


def test_a_shared_vip_whose_port_check_fails_is_still_advertised_and_each_owner_gets_the_report() -> None:
    """The port-clash report is a report: its failure must never cost the VIP its route."""
    odd = service(BROKEN, "10.96.0.1", ports=UnreadablePorts((PortView("http", 80),)))
    state = decide(CONFIG, snapshot(service(GOOD, "10.96.0.1"), odd))
    assert state.advertisements[ipaddress.ip_address("10.96.0.1")].services == {GOOD, BROKEN}
    reports = sorted((p.service, p.reason) for p in state.problems)
    assert reports == [(BROKEN, "InternalError"), (GOOD, "InternalError")]
    assert all("OverflowError: 'unreadable ports'" in p.message for p in state.problems)


def test_a_port_clash_on_a_shared_vip_names_the_vip_and_the_port() -> None:
    state = decide(CONFIG, snapshot(service(GOOD, "10.96.0.1"), service(BROKEN, "10.96.0.1")))
    assert {p.message for p in state.problems} == {
        "VIP 10.96.0.1 port 80/TCP is also used by service default/good",
        "VIP 10.96.0.1 port 80/TCP is also used by service default/broken"}


def test_a_local_pref_conflict_on_a_shared_vip_names_the_vip() -> None:
    config = DecideConfig(node_name="n1", bgp_attributes=True)
    state = decide(config, snapshot(service(GOOD, "10.96.0.1", (PortView("a", 80),), **{"kvip.io/bgp-local-pref": "200"}),
                                    service(BROKEN, "10.96.0.1", (PortView("b", 81),), **{"kvip.io/bgp-local-pref": "100"})))
    conflicts = [p for p in state.problems if p.reason == "BGPAttributeConflict"]
    assert {p.service for p in conflicts} == {GOOD, BROKEN}
    assert all(p.message.startswith("VIP 10.96.0.1 is shared") for p in conflicts)
    assert state.advertisements[ipaddress.ip_address("10.96.0.1")].attributes.local_pref == 100


def test_a_service_whose_only_vip_no_peer_can_carry_is_not_advertised() -> None:
    config = DecideConfig(node_name="n1", address_families=frozenset({4}))
    state = decide(config, snapshot(service(GOOD, "fd00:96::1")))
    assert state.advertisements == {} and state.decisions[GOOD].vips == ()
    assert [(p.service, p.reason) for p in state.problems] == [(GOOD, "NoPeerForFamily")]


def test_a_service_interface_that_is_no_interface_name_is_reported_and_ignored() -> None:
    state = decide(CONFIG, snapshot(service(GOOD, "10.96.0.1", **{SERVICE_INTERFACE_ANNOTATION: "eth0/evil"})))
    [problem] = state.problems
    assert (problem.service, problem.reason) == (GOOD, "InvalidAnnotation")
    assert problem.message.startswith(f"{SERVICE_INTERFACE_ANNOTATION}='eth0/evil' is not an interface name")
    assert state.advertisements[ipaddress.ip_address("10.96.0.1")].interface is None


def test_a_local_endpoint_our_probes_fail_does_not_count_a_remote_ready_one_still_does() -> None:
    """Cluster policy: our own probe verdicts rule out our endpoint; a remote one we cannot probe counts."""
    local_down = EndpointView(("10.244.0.5",), "n1")
    remote = EndpointView(("10.244.1.5",), "n2")
    probes = ProbeVerdicts(failing=frozenset({"10.244.0.5"}))
    web = service(GOOD, "10.96.0.1")
    alone = ClusterSnapshot(services={GOOD: web}, endpoints={GOOD: (local_down,)})
    assert decide(CONFIG, alone, probes=probes).decisions[GOOD].reason == "no-ready-endpoint"
    both = ClusterSnapshot(services={GOOD: web}, endpoints={GOOD: (local_down, remote)})
    assert decide(CONFIG, both, probes=probes).decisions[GOOD].advertised


def test_each_annotation_report_names_its_service_and_says_what_is_ignored() -> None:
    auto = service(GOOD, "10.96.0.1", **{SERVICE_INTERFACE_ANNOTATION: "auto"})
    local = ServiceView(BROKEN, external_traffic_policy="Local", annotations=MappingProxyType(
        {IPS: "10.96.0.2", ALLOW_WITHOUT_ENDPOINTS_ANNOTATION: "true"}))
    odd = ServiceView(ServiceKey("default", "odd"), annotations=MappingProxyType(
        {IPS: "10.96.0.3", IGNORE_ANNOTATION: "perhaps"}))
    state = decide(CONFIG, snapshot(auto, local, odd))
    assert sorted((p.service.name, p.reason, p.message) for p in state.problems) == [
        ("broken", "InvalidAnnotation", (f"{ALLOW_WITHOUT_ENDPOINTS_ANNOTATION} only applies to "
                                         "externalTrafficPolicy=Cluster; ignored")),
        ("good", "UnsupportedAnnotation", (f"{SERVICE_INTERFACE_ANNOTATION}=auto is not supported (no interface is "
                                           "chosen by subnet); the VIP goes on vip_interface")),
        ("odd", "InvalidAnnotation", f"{IGNORE_ANNOTATION}='perhaps' is not a boolean; not ignoring")]


def test_a_decision_names_its_service_and_the_local_endpoints_it_found() -> None:
    state = decide(CONFIG, snapshot(service(GOOD, "10.96.0.1")))
    assert (state.decisions[GOOD].service, state.decisions[GOOD].local_endpoints) == (GOOD, ("10.244.0.5",))
