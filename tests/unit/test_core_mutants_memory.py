"""What today's memory savings must not change (mutation run 6): the VIP memo, a decision reusing the
memo's and an endpoint's tuples, and the status writer forgetting writes whose echo wait has passed.

Every Service here has a key of its own (namespace `mutants-memory`): the VIP memo is keyed by value, so a
view equal to one another test keeps alive would be answered from the memo without parsing anything.
"""

from __future__ import annotations

import asyncio
import ipaddress
from typing import Any

import pytest

from kvip.core.decide_service import (
    DecideConfig,
    decide_service,
    local_usable_addresses,
)
from kvip.core.model import (
    DesiredState,
    ElectionMode,
    EndpointView,
    Leadership,
    ProbeVerdicts,
    ServiceDecision,
    ServiceKey,
    ServiceView,
)
from kvip.core.policy import ApiLossChange, ApiLossDecision, ApiLossState, api_loss
from kvip.core.vips import LOADBALANCER_IPS_ANNOTATION, memoized_per_view, service_vips
from kvip.kube import status_writer
from kvip.kube.status_writer import ECHO_WAIT, ServiceStatusWriter

NS = "mutants-memory"
NODE = "n1"
CONFIG = DecideConfig(node_name=NODE)
PREFERRED = "kvip.io/preferred-nodes"
FORCE = "kube-vip.io/forcePerServiceElection"


def key(name: str) -> ServiceKey:
    return ServiceKey(NS, name)


def ip(text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address:
    return ipaddress.ip_address(text)


# --- the VIP memo -------------------------------------------------------------------------------------


def test_a_decorated_function_computes_once_per_live_view_and_keeps_its_doc_and_memo() -> None:
    calls: list[ServiceView] = []

    def first_port_count(service: ServiceView) -> int:
        """How many ports."""
        calls.append(service)
        return len(service.ports) + 7

    memoized = memoized_per_view(first_port_count)
    view = ServiceView(key("memo-once"))
    assert memoized(view) == 7 and memoized(view) == 7
    assert calls == [view]  # the second call was the memo's answer
    assert memoized.__doc__ == "How many ports."
    assert dict(memoized.memo) == {view: 7}  # type: ignore[attr-defined]


def test_a_view_that_cannot_be_hashed_is_computed_every_time_without_a_memo() -> None:
    calls: list[ServiceView] = []

    def ingress(service: ServiceView) -> tuple[str, ...]:
        calls.append(service)
        return tuple(service.ingress_ips)

    memoized = memoized_per_view(ingress)
    view = ServiceView(key("memo-unhashable"), ingress_ips=["192.0.2.9"])  # type: ignore[arg-type]
    assert memoized(view) == ("192.0.2.9",) and memoized(view) == ("192.0.2.9",)
    assert calls == [view, view] and len(memoized.memo) == 0  # type: ignore[attr-defined]


def test_a_blank_annotation_falls_back_to_the_spec_and_is_reported_naming_its_value() -> None:
    view = ServiceView(key("blank-annotation"), load_balancer_ip="192.0.2.10",
                       annotations={LOADBALANCER_IPS_ANNOTATION: " , "})
    vips, problems = service_vips(view)
    assert vips == (ip("192.0.2.10"),)
    assert [(p.service, p.reason) for p in problems] == [(view.key, "InvalidVIP")]
    assert LOADBALANCER_IPS_ANNOTATION in problems[0].message and "' , '" in problems[0].message


def test_a_dhcp_wildcard_before_an_address_does_not_hide_the_address() -> None:
    view = ServiceView(key("wildcard-first"), annotations={LOADBALANCER_IPS_ANNOTATION: "0.0.0.0,192.0.2.11"})
    assert service_vips(view) == ((ip("192.0.2.11"),), ())


def test_a_garbage_entry_is_reported_by_its_text_and_the_next_entry_still_counts() -> None:
    view = ServiceView(key("garbage-entry"), annotations={LOADBALANCER_IPS_ANNOTATION: "not-an-ip,192.0.2.12"})
    vips, problems = service_vips(view)
    assert vips == (ip("192.0.2.12"),)
    assert [(p.service, p.reason) for p in problems] == [(view.key, "InvalidVIP")]
    assert "'not-an-ip'" in problems[0].message


def test_an_address_of_the_wrong_family_is_reported_and_the_right_family_after_it_is_kept() -> None:
    view = ServiceView(key("wrong-family"), ip_families=("IPv4",),
                       annotations={LOADBALANCER_IPS_ANNOTATION: "2001:db8::7,192.0.2.13"})
    vips, problems = service_vips(view)
    assert vips == (ip("192.0.2.13"),)
    assert [(p.service, p.reason) for p in problems] == [(view.key, "WrongIPFamily")]
    assert "2001:db8::7" in problems[0].message and "IPv6" in problems[0].message and "IPv4" in problems[0].message


def test_a_dual_stack_service_keeps_both_families_in_order() -> None:
    view = ServiceView(key("dual-stack"), ip_families=("IPv6", "IPv4"),
                       annotations={LOADBALANCER_IPS_ANNOTATION: "192.0.2.14,2001:db8::14"})
    assert service_vips(view) == ((ip("192.0.2.14"), ip("2001:db8::14")), ())


# --- one Service's decision ---------------------------------------------------------------------------


NO_LEADERS = Leadership()


def decide(service: ServiceView, config: DecideConfig = CONFIG, leadership: Leadership = NO_LEADERS,
           reserved: frozenset[Any] = frozenset()) -> tuple[ServiceDecision | None, list[Any]]:
    problems: list[Any] = []
    ready = (EndpointView(("10.244.0.1",), NODE),)
    decision = decide_service(config, service, ready, None, leadership, ProbeVerdicts(), problems, reserved)
    return decision, problems


def test_a_preference_is_accepted_without_complaint_under_per_service_election() -> None:
    view = ServiceView(key("prefers-service-mode"), load_balancer_ip="192.0.2.21", annotations={PREFERRED: "100:zone=a"})
    decision, problems = decide(view, DecideConfig(node_name=NODE, election=ElectionMode.SERVICE),
                                Leadership(led_services=frozenset({view.key})))
    assert decision is not None and decision.advertised and problems == []


def test_a_preference_is_accepted_for_a_service_forced_to_per_service_election_on_demand() -> None:
    view = ServiceView(key("prefers-forced"), load_balancer_ip="192.0.2.22",
                       annotations={PREFERRED: "100:zone=a", FORCE: "true"})
    decision, problems = decide(view, DecideConfig(node_name=NODE, per_service_election_on_demand=True),
                                Leadership(led_services=frozenset({view.key})))
    assert decision is not None and decision.advertised and problems == []


def test_a_preference_without_a_lease_is_reported_and_the_service_still_advertised() -> None:
    view = ServiceView(key("prefers-no-lease"), load_balancer_ip="192.0.2.20", annotations={PREFERRED: "100:zone=a"})
    decision, problems = decide(view)
    assert decision is not None and decision.advertised
    assert [(p.service, p.reason) for p in problems] == [(view.key, "UnsupportedAnnotation")]


def test_a_forced_dhcp_service_led_here_waits_for_its_lease_unadvertised() -> None:
    view = ServiceView(key("dhcp-forced"), uid="0f3a9c1e-0000-4000-8000-000000000001",
                       annotations={LOADBALANCER_IPS_ANNOTATION: "0.0.0.0", FORCE: "true"})
    decision, problems = decide(view, DecideConfig(node_name=NODE, per_service_election_on_demand=True),
                                Leadership(led_services=frozenset({view.key})))
    assert problems == []
    assert decision is not None and (decision.eligible, decision.advertised, decision.reason) == (
        True, False, "dhcp-pending")


def test_the_control_plane_vip_is_refused_to_a_service_naming_it() -> None:
    view = ServiceView(key("takes-cp-vip"), annotations={LOADBALANCER_IPS_ANNOTATION: "192.0.2.30,192.0.2.31"})
    decision, problems = decide(view, reserved=frozenset({ip("192.0.2.30")}))
    assert decision is not None and decision.vips == (ip("192.0.2.31"),)
    assert [(p.service, p.reason) for p in problems] == [(view.key, "VIPConflict")]
    assert "192.0.2.30" in problems[0].message


def test_a_decision_keeps_the_memos_vip_tuple_when_the_control_plane_vip_is_another() -> None:
    view = ServiceView(key("beside-cp-vip"), load_balancer_ip="192.0.2.32")
    decision, problems = decide(view, reserved=frozenset({ip("192.0.2.33")}))
    assert problems == [] and decision is not None
    assert decision.vips is service_vips(view)[0]


# --- a Service's local endpoint addresses -------------------------------------------------------------


def test_the_addresses_of_one_local_endpoint_are_its_own_tuple_even_beside_a_duplicate() -> None:
    one = EndpointView(("10.244.1.1", "10.244.1.2"), NODE)
    again = EndpointView(("10.244.1.2",), NODE)  # adds nothing new
    assert local_usable_addresses(CONFIG, (one,), ProbeVerdicts()) is one.addresses
    assert local_usable_addresses(CONFIG, (one, again), ProbeVerdicts()) is one.addresses


def test_a_second_local_endpoint_adds_its_new_addresses_after_the_first_in_endpoint_order() -> None:
    first = EndpointView(("10.244.2.1",), NODE)
    second = EndpointView(("10.244.2.2", "10.244.2.1"), NODE)
    assert local_usable_addresses(CONFIG, (first, second), ProbeVerdicts()) == ("10.244.2.1", "10.244.2.2")


def test_an_address_whose_probe_fails_is_never_a_local_address() -> None:
    probes = ProbeVerdicts(failing=frozenset({"10.244.3.9"}))
    alone = EndpointView(("10.244.3.1", "10.244.3.9"), NODE)
    assert local_usable_addresses(CONFIG, (alone,), probes) == ("10.244.3.1",)
    first, second = EndpointView(("10.244.3.1",), NODE), EndpointView(("10.244.3.9", "10.244.3.2"), NODE)
    assert local_usable_addresses(CONFIG, (first, second), probes) == ("10.244.3.1", "10.244.3.2")


# --- API loss -----------------------------------------------------------------------------------------


def test_an_api_back_in_full_restores_with_no_withdrawal() -> None:
    decision, state = api_loss(ApiLossState(withdrawn=True), stale_for=0, withdraw_after=5.0)
    assert decision == ApiLossDecision(False, ApiLossChange.RESTORED) and decision.withdraw is False
    assert state == ApiLossState()


# --- the status writer --------------------------------------------------------------------------------


def advertised(name: str, vip: str, advertise: bool = True) -> ServiceDecision:
    return ServiceDecision(key(name), (ip(vip),), eligible=True, advertised=advertise,
                           reason="advertised" if advertise else "not-leader")


class Api:
    """Records PATCHes; the Services named in `held` wait for `release` before the PATCH returns."""

    def __init__(self, held: frozenset[str] = frozenset()) -> None:
        self.writes: list[tuple[str, tuple[str, ...]]] = []
        self.held, self.release = held, asyncio.Event()

    async def patch(self, resource: Any, name: str, obj: dict[str, Any], *, namespace: str) -> None:
        if name in self.held:
            await self.release.wait()
        self.writes.append((name, tuple(e["ip"] for e in obj["status"]["loadBalancer"]["ingress"])))


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


async def settle() -> None:
    for _ in range(20):
        await asyncio.sleep(0)


async def running(writer: ServiceStatusWriter) -> asyncio.Task[None]:
    task = asyncio.create_task(writer.run())
    await asyncio.sleep(0)
    return task


async def stop(task: asyncio.Task[None]) -> None:
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)


def test_a_new_writer_has_compared_nothing() -> None:
    assert ServiceStatusWriter(Api()).compared == 0  # type: ignore[arg-type]


async def test_the_reconcilers_changed_keys_are_trusted_and_counted() -> None:
    writer = ServiceStatusWriter(Api())  # type: ignore[arg-type]
    names = ["trust-0", "trust-1", "trust-2"]
    services = {key(n): ServiceView(key(n), ingress_ips=(f"192.0.2.4{i}",)) for i, n in enumerate(names)}
    writer.report(DesiredState({}, {key(n): advertised(n, f"192.0.2.4{i}") for i, n in enumerate(names)}),
                  services)
    assert writer.compared == 3
    rebuilt = {key(n): advertised(n, f"192.0.2.4{i}") for i, n in enumerate(names)}  # equal, new objects
    writer.report(DesiredState({}, rebuilt), services, changed=frozenset({key("trust-1")}))
    assert writer.compared == 1
    writer.report(DesiredState({}, rebuilt), services, changed=())
    assert writer.compared == 0


async def test_a_service_no_longer_advertised_here_is_not_compared_again() -> None:
    api = Api(held=frozenset({"goes-away"}))
    writer = ServiceStatusWriter(api)  # type: ignore[arg-type]
    task = await running(writer)
    try:
        services = {key("goes-away"): ServiceView(key("goes-away"))}  # no status yet: unsettled
        writer.report(DesiredState({}, {key("goes-away"): advertised("goes-away", "192.0.2.50")}), services)
        state = DesiredState({}, {key("goes-away"): advertised("goes-away", "192.0.2.50", advertise=False)})
        writer.report(state, services)
        writer.report(state, services)  # nothing changed since
        assert writer.compared == 0
    finally:
        api.release.set()
        await stop(task)


async def test_a_service_whose_status_became_right_is_not_compared_again() -> None:
    writer = ServiceStatusWriter(Api(held=frozenset({"set-elsewhere"})))  # type: ignore[arg-type]
    state = DesiredState({}, {key("set-elsewhere"): advertised("set-elsewhere", "192.0.2.51")})
    writer.report(state, {key("set-elsewhere"): ServiceView(key("set-elsewhere"))})
    right = {key("set-elsewhere"): ServiceView(key("set-elsewhere"), ingress_ips=("192.0.2.51",))}
    writer.report(state, right)  # an anycast peer wrote it
    writer.report(state, right)
    assert writer.compared == 0


async def test_writes_are_forgotten_oldest_first_once_their_echo_wait_has_passed() -> None:
    api, clock = Api(), Clock()
    writer = ServiceStatusWriter(api, clock=clock)  # type: ignore[arg-type]
    task = await running(writer)
    try:
        blank = {key(n): ServiceView(key(n)) for n in ("old", "new")}
        writer.report(DesiredState({}, {key("old"): advertised("old", "192.0.2.60")}), blank)
        await settle()
        clock.now = 5.0
        writer.report(DesiredState({}, {key("old"): advertised("old", "192.0.2.60"),
                                        key("new"): advertised("new", "192.0.2.61")}), blank)
        await settle()
        assert list(writer._written) == [key("old"), key("new")]
        clock.now = ECHO_WAIT  # exactly the echo wait after the first write: it no longer counts
        writer._forget_written()
        assert list(writer._written) == [key("new")]
        clock.now = 5.0 + ECHO_WAIT
        writer._forget_written()
        assert writer._written == {}
        # Nothing is remembered, so the same wanted status is written again at once.
        writer.report(DesiredState({}, {key("new"): advertised("new", "192.0.2.61")}), dict(blank))
        await settle()
        assert api.writes == [("old", ("192.0.2.60",)), ("new", ("192.0.2.61",)), ("new", ("192.0.2.61",))]
    finally:
        await stop(task)


async def test_a_service_written_again_moves_to_the_end_of_the_write_order() -> None:
    api, clock = Api(), Clock()
    writer = ServiceStatusWriter(api, clock=clock)  # type: ignore[arg-type]
    task = await running(writer)
    try:
        blank = {key(n): ServiceView(key(n)) for n in ("a", "b")}
        writer.report(DesiredState({}, {key("a"): advertised("a", "192.0.2.70")}), blank)
        await settle()
        clock.now = 1.0
        writer.report(DesiredState({}, {key("a"): advertised("a", "192.0.2.70"),
                                        key("b"): advertised("b", "192.0.2.71")}), blank)
        await settle()
        clock.now = 2.0  # a's VIP changed: written again, now the newest write
        writer.report(DesiredState({}, {key("a"): advertised("a", "192.0.2.72"),
                                        key("b"): advertised("b", "192.0.2.71")}), blank)
        await settle()
        assert list(writer._written) == [key("b"), key("a")]
        clock.now = 1.0 + ECHO_WAIT + 0.5  # b's wait has passed, a's has not
        writer._forget_written()
        assert list(writer._written) == [key("a")]
    finally:
        await stop(task)


async def test_writes_are_forgotten_after_their_echo_wait_even_when_no_pass_runs(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(status_writer, "ECHO_WAIT", 0.02)
    writer = ServiceStatusWriter(Api())  # type: ignore[arg-type]
    task = await running(writer)
    try:
        writer.report(DesiredState({}, {key("quiet"): advertised("quiet", "192.0.2.80")}),
                      {key("quiet"): ServiceView(key("quiet"))})
        await settle()
        assert list(writer._written) == [key("quiet")]
        await asyncio.sleep(0.1)
        assert writer._written == {}
    finally:
        await stop(task)


async def test_a_write_in_flight_is_not_queued_again_when_another_write_finishes() -> None:
    api = Api(held=frozenset({"slow"}))
    writer = ServiceStatusWriter(api)  # type: ignore[arg-type]
    task = await running(writer)
    try:
        state = DesiredState({}, {key("fast"): advertised("fast", "192.0.2.90"),
                                  key("slow"): advertised("slow", "192.0.2.91")})
        blank = {key(n): ServiceView(key(n)) for n in ("fast", "slow")}
        writer.report(state, blank)
        await settle()  # fast is written; slow's PATCH is still on its way
        writer.report(state, dict(blank))
        await settle()
        api.release.set()
        await settle()
        assert sorted(api.writes) == [("fast", ("192.0.2.90",)), ("slow", ("192.0.2.91",))]
    finally:
        await stop(task)
