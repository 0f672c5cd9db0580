"""Election rules with a fake clock: timing validation, the fence, client-go's expiry rule, next steps."""

from __future__ import annotations

import math
from types import MappingProxyType

import pytest
from hypothesis import given
from hypothesis import strategies as st

from kvip.cli.audit import Heartbeat, audit
from kvip.core.election_rules import (
    LeaseRecord,
    Step,
    expires_after,
    fence_ends_at,
    is_fenced_holder,
    next_step,
    spread_delay,
)
from kvip.core.leases import (
    ElectionPlan,
    InvalidLeaseName,
    leadership_from_leases,
    lease_of,
    wanted_leases,
)
from kvip.core.model import ElectionMode, ServiceKey, ServiceView
from kvip.kube.election import (
    ElectionConfigError,
    LeaseKey,
    LeaseTiming,
    service_lease_key,
)
from kvip.kube.heartbeat import NodeView

DEFAULTS = LeaseTiming()  # kube-vip: 15 / 10 / 2
KEY = LeaseKey("shop", "kubevip-web")
ME, RIVAL = "node-a", "node-b"


def lease(holder: str | None, renew: str = "2026-11-25T02:17:57.123456Z", rv: str = "7",
          seconds: int = 15) -> dict[str, object]:
    return {"metadata": {"name": KEY.name, "namespace": KEY.namespace, "resourceVersion": rv},
            "spec": {"holderIdentity": holder, "renewTime": renew, "leaseDurationSeconds": seconds}}


def seen(at: float, *leases: dict[str, object] | None) -> LeaseRecord:
    record = LeaseRecord(changed_at=at)
    for item in leases:
        record.observe(item, at)
    return record


def step(record: LeaseRecord, now: float, *, timing: LeaseTiming = DEFAULTS, spread: float = 0.0) -> Step:
    return next_step(record, identity=ME, timing=timing, now=now, spread=spread)


# -- timing --------------------------------------------------------------------------------------

def test_kube_vip_default_timing_is_valid() -> None:
    assert (DEFAULTS.lease_duration, DEFAULTS.renew_deadline, DEFAULTS.retry_period) == (15, 10, 2)


@pytest.mark.parametrize("lease_duration, renew_deadline, retry_period", [
    (10, 10, 2),  # renew deadline must be strictly shorter than the lease, or fencing proves nothing
    (15, 20, 2),
    (15, 10, 10),  # retry must fit inside the renew deadline
    (15, 10, 0),
    (15, 10, -1),
    (math.inf, 10, 2),
    (15, math.nan, 2),
])
def test_timing_that_cannot_fence_before_a_takeover_is_refused(
        lease_duration: float, renew_deadline: float, retry_period: float) -> None:
    with pytest.raises(ElectionConfigError):
        LeaseTiming(lease_duration, renew_deadline, retry_period)


def test_declared_lease_seconds_round_up_so_peers_never_expire_us_early() -> None:
    assert LeaseTiming(1.5, 1.0, 0.2).lease_seconds == 2
    assert DEFAULTS.lease_seconds == 15


@given(st.floats(0.01, 100), st.floats(0.01, 0.99), st.floats(0.01, 0.49))
def test_renewal_starts_early_enough_for_two_retries_before_the_fence(
        renew: float, retry_share: float, lease_extra: float) -> None:
    timing = LeaseTiming(renew * (1 + lease_extra), renew, renew * retry_share)
    assert 0 <= timing.renew_after <= timing.renew_deadline / 2
    assert timing.renew_after + 2 * timing.retry_period <= timing.renew_deadline + 1e-9 or timing.renew_after == 0


def test_kube_vip_defaults_renew_every_five_seconds_not_every_period() -> None:
    assert DEFAULTS.renew_after == 5.0


def test_service_lease_name_is_kube_vip_compatible() -> None:
    assert service_lease_key(ServiceKey("shop", "web")) == LeaseKey("shop", "kubevip-web")


# -- the fence -----------------------------------------------------------------------------------

def test_we_hold_a_lease_only_until_renew_deadline_after_our_last_successful_write() -> None:
    record = seen(100.0, lease(ME))
    record.renewed_at = 100.0
    assert is_fenced_holder(record, DEFAULTS, 109.999)
    assert not is_fenced_holder(record, DEFAULTS, 110.0)
    assert fence_ends_at(record, DEFAULTS) == 110.0


def test_a_lease_we_never_wrote_is_not_held_even_if_it_names_us() -> None:
    # e.g. left by our previous incarnation: we must renew it before claiming it
    record = seen(0.0, lease(ME))
    assert not is_fenced_holder(record, DEFAULTS, 0.0)
    assert step(record, 0.0) is Step.RENEW


@given(timing=st.builds(lambda d, r, p: LeaseTiming(d + r + p, r + p, p),
                        st.floats(0.001, 30), st.floats(0.001, 30), st.floats(0.001, 30)),
       sent=st.floats(0, 1e6), seen_later_by=st.floats(0, 100))
def test_our_fence_always_ends_before_any_rival_may_take_the_lease(
        timing: LeaseTiming, sent: float, seen_later_by: float) -> None:
    # We renew at `sent`; a rival first sees that renewal at `sent + seen_later_by` (never before
    # we sent it). Whatever the timing, the rival may not acquire while our fence still stands.
    ours = seen(sent, lease(ME, renew="r1"))
    ours.renewed_at = sent
    rivals_view = seen(sent + seen_later_by, lease(ME, renew="r1", seconds=timing.lease_seconds))
    fence_end = fence_ends_at(ours, timing)
    assert fence_end is not None
    last_instant_we_hold = fence_end - 1e-6  # a microsecond: well above float rounding at these magnitudes
    assert is_fenced_holder(ours, timing, last_instant_we_hold)
    rival = next_step(rivals_view, identity=RIVAL, timing=timing, now=last_instant_we_hold, spread=0)
    assert rival is Step.WAIT


# -- client-go's expiry rule: local observation, never remote clocks -----------------------------

def test_a_rivals_lease_expires_lease_duration_after_we_saw_it_change_whatever_its_timestamp_says() -> None:
    record = seen(50.0, lease(RIVAL, renew="1999-01-01T00:00:00.000000Z"))  # a skewed remote clock
    assert step(record, 64.9) is Step.WAIT
    assert step(record, 65.0) is Step.ACQUIRE


def test_rereading_an_unchanged_lease_does_not_restart_its_expiry() -> None:
    record = seen(50.0, lease(RIVAL, rv="7"))
    record.observe(lease(RIVAL, rv="8"), 60.0)  # same holder and renewTime: not a renewal
    assert step(record, 65.0) is Step.ACQUIRE


def test_a_renewal_we_observe_restarts_the_rivals_lease() -> None:
    record = seen(50.0, lease(RIVAL, renew="r1"))
    record.observe(lease(RIVAL, renew="r2"), 60.0)
    assert step(record, 65.0) is Step.WAIT
    assert step(record, 75.0) is Step.ACQUIRE


def test_a_holder_declaring_a_longer_lease_than_ours_is_given_its_full_duration() -> None:
    short = LeaseTiming(3, 2, 0.5)
    record = seen(0.0, lease(RIVAL, seconds=15))
    assert expires_after(record, short) == 15
    assert step(record, 10.0, timing=short) is Step.WAIT
    assert step(record, 15.0, timing=short) is Step.ACQUIRE


def test_a_released_lease_is_taken_at_once() -> None:
    assert step(seen(10.0, lease(None)), 10.0) is Step.ACQUIRE


# -- the rest of next_step -----------------------------------------------------------------------

def test_a_missing_lease_is_created_after_this_nodes_spread_delay() -> None:
    record = seen(0.0, None)
    assert step(record, 0.5, spread=1.0) is Step.WAIT
    assert step(record, 1.0, spread=1.0) is Step.CREATE


def test_our_lease_is_renewed_only_once_renew_after_has_passed() -> None:
    record = seen(0.0, lease(ME))
    record.renewed_at = 0.0
    assert step(record, DEFAULTS.renew_after - 0.01) is Step.WAIT
    assert step(record, DEFAULTS.renew_after) is Step.RENEW


def test_a_lease_deleted_under_us_stops_counting_as_held() -> None:
    record = seen(0.0, lease(ME))
    record.renewed_at = 0.0
    record.observe(None, 1.0)
    assert not is_fenced_holder(record, DEFAULTS, 1.0)
    assert record.changed_at == 1.0


def test_spread_delays_differ_per_node_and_stay_within_two_periods() -> None:
    delays = {spread_delay(f"node-{i}", KEY, DEFAULTS) for i in range(20)}
    assert len(delays) == 20
    assert all(0 <= d < 2 * DEFAULTS.retry_period for d in delays)
    assert spread_delay("node-1", KEY, DEFAULTS) == spread_delay("node-1", KEY, DEFAULTS)


# -- which Lease elects which Service (kube-vip.io/leaseName, forcePerServiceElection) --------------

SHARED = {"kube-vip.io/leaseName": "web-vip"}
PER_SERVICE = ElectionPlan(ElectionMode.SERVICE)


def service(name: str, annotations: dict[str, str] | None = None, namespace: str = "shop") -> ServiceView:
    return ServiceView(ServiceKey(namespace, name), external_traffic_policy="Cluster",
                       annotations=MappingProxyType(annotations or {}))


def test_lease_name_annotation_names_the_lease_in_the_service_namespace_or_the_one_given() -> None:
    assert lease_of(service("web")) == LeaseKey("shop", "kubevip-web")
    assert lease_of(service("web", {"kube-vip.io/leaseName": ""})) == LeaseKey("shop", "kubevip-web")
    assert lease_of(service("web", SHARED)) == LeaseKey("shop", "web-vip")
    assert lease_of(service("web", {"kube-vip.io/leaseName": "infra/web-vip"})) == LeaseKey("infra", "web-vip")


@pytest.mark.parametrize("value", ["Web", "a/b/c", "/web", "ns/", "web_vip", "x" * 254, "-web", "ns.x/web"])
def test_lease_name_that_cannot_name_a_lease_is_refused(value: str) -> None:
    with pytest.raises(InvalidLeaseName):
        lease_of(service("web", {"kube-vip.io/leaseName": value}))


def test_services_naming_one_lease_contend_for_it_once_and_its_holder_leads_them_all() -> None:
    group = {s.key: s for s in (service("http", SHARED), service("https", SHARED), service("dns", SHARED))}
    alone = service("alone")
    services = {**group, alone.key: alone}
    assert wanted_leases(PER_SERVICE, services, set(services)) == {LeaseKey("shop", "web-vip"),
                                                                   LeaseKey("shop", "kubevip-alone")}
    # Eligible for only one of the group: still contends for the shared Lease.
    assert wanted_leases(PER_SERVICE, services, {ServiceKey("shop", "dns")}) == {LeaseKey("shop", "web-vip")}
    led = leadership_from_leases(PER_SERVICE, {LeaseKey("shop", "web-vip")}, services.values())
    assert led.led_services == set(group)
    # A Service's default Lease means nothing once it names a shared one.
    held_defaults = {LeaseKey("shop", f"kubevip-{k.name}") for k in group}
    assert leadership_from_leases(PER_SERVICE, held_defaults, services.values()).led_services == set()


def test_on_demand_election_adds_lease_of_forced_services_to_the_global_one() -> None:
    forced = service("db", {"kube-vip.io/forcePerServiceElection": "true"})
    plain = service("web")
    services = {forced.key: forced, plain.key: plain}
    global_lease = LeaseKey("kube-system", "plndr-svcs-lock")
    plan = ElectionPlan(ElectionMode.GLOBAL, per_service_on_demand=True, global_lease=global_lease)
    assert wanted_leases(plan, services, set(services)) == {global_lease, LeaseKey("shop", "kubevip-db")}
    assert wanted_leases(plan, services, set()) == {global_lease}
    led = leadership_from_leases(plan, {LeaseKey("shop", "kubevip-db")}, services.values())
    assert led.led_services == {forced.key} and not led.is_global_leader
    off = ElectionPlan(ElectionMode.GLOBAL, per_service_on_demand=False, global_lease=global_lease)
    assert wanted_leases(off, services, set(services)) == {global_lease}


def _lb(name: str, vip: str, annotations: dict[str, str]) -> dict[str, object]:
    return {"metadata": {"name": name, "namespace": "shop", "annotations": annotations},
            "spec": {"type": "LoadBalancer", "externalTrafficPolicy": "Cluster", "ports": [{"port": 80 + len(name)}]},
            "status": {"loadBalancer": {"ingress": [{"ip": vip}]}}}


def test_audit_expects_a_shared_vip_only_on_the_holder_of_the_shared_lease() -> None:
    services = [_lb(n, "10.96.0.9", SHARED) for n in ("http", "https", "dns")]
    slices = [{"metadata": {"name": f"{n}-x", "namespace": "shop", "labels": {"kubernetes.io/service-name": n}},
               "addressType": "IPv4", "endpoints": [{"addresses": ["10.244.0.1"], "nodeName": "node-c",
                                                     "conditions": {"ready": True}}]}
              for n in ("http", "https", "dns")]
    nodes = [{"metadata": {"name": n}} for n in ("node-a", "node-b", "node-c")]
    # Stale per-service Leases held elsewhere (from before the annotation) must not count.
    holders = {("shop", "web-vip"): "node-b", ("shop", "kubevip-http"): "node-a", ("shop", "kubevip-dns"): "node-c"}
    beats = {"node-b": Heartbeat("node-b", NodeView.of({"10.96.0.9"}, {"10.96.0.9"}), 1.0)}
    report = audit(services, slices, nodes, beats, election=ElectionMode.SERVICE, lease_holders=holders)
    assert [(v.vip, v.expected) for v in report.vips] == [("10.96.0.9", {"node-b"})]
    assert report.ok
