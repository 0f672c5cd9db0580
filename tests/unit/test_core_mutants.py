"""Rules of the pure core that mutation testing (.ci/mutation, docs/testing.md) showed no test pinned down:
each test here kills the surviving mutants named in its docstring."""

from __future__ import annotations

from ipaddress import ip_address
from types import MappingProxyType

import pytest

from kvip.core.decide import EXCLUDE_LB_LABEL, IGNORE_ANNOTATION, DecideConfig, decide
from kvip.core.election_rules import (
    LeaseKey,
    LeaseRecord,
    LeaseTiming,
    Step,
    next_step,
    spread_delay,
)
from kvip.core.ipam import parse_pools
from kvip.core.model import (
    ClusterSnapshot,
    ElectionMode,
    EndpointView,
    Leadership,
    NodeView,
    PortView,
    ServiceKey,
    ServiceView,
)

HERE = "node-a"
WEB = ServiceKey("default", "web")


def web(policy: str = "Local", annotations: dict[str, str] | None = None) -> ServiceView:
    return ServiceView(WEB, type="LoadBalancer", load_balancer_class=None, external_traffic_policy=policy,
                       load_balancer_ip=None, ingress_ips=("10.96.0.1",), ports=(PortView("p", 80, "TCP"),),
                       annotations=MappingProxyType(annotations or {}))


def reason(service: ServiceView, *, node: NodeView | None = None, endpoints_on: tuple[str, ...] = (HERE,),
           leadership: Leadership | None = None, **config: object) -> str:
    """The reason `kvip status` shows for `service` on this node."""
    snapshot = ClusterSnapshot(services={service.key: service}, node=node,
                               endpoints={service.key: tuple(EndpointView(("10.244.0.5",), n, True, True, False)
                                                             for n in endpoints_on)})
    state = decide(DecideConfig(node_name=HERE, **config), snapshot, leadership or Leadership())  # type: ignore[arg-type]
    return state.decisions[service.key].reason


def test_every_reason_status_shows_is_its_exact_text() -> None:
    """decide x_eligibility 14,15,22,23,31,32; x_leadership_gate 7,8,13,14,16,17; x_node_blocker 8,9,11..14."""
    assert reason(web()) == "advertised"
    assert reason(web(), endpoints_on=("node-b",)) == "no-ready-local-endpoint"
    assert reason(web("Cluster"), endpoints_on=()) == "no-ready-endpoint"
    assert reason(web(), election=ElectionMode.GLOBAL) == "not-leader"
    assert reason(web(), election=ElectionMode.SERVICE) == "not-leader"
    assert reason(web(), election=ElectionMode.SERVICE, leadership=Leadership(led_services=frozenset({WEB}))) \
        == "advertised"
    assert reason(web(), node=NodeView(HERE, unschedulable=True), drain_on_cordon=True) == "node-cordoned"
    assert reason(web(), node=NodeView(HERE, labels={EXCLUDE_LB_LABEL: ""})) == "node-excluded"
    assert reason(web(), node=NodeView(HERE, network_unavailable=True)) == "node-network-unavailable"


@pytest.mark.parametrize("value", ["true", "1", "yes", " YES "])
def test_the_ignore_annotation_accepts_each_true_spelling(value: str) -> None:
    """decide x_is_handled 30,31,32."""
    snapshot = ClusterSnapshot(services={WEB: web(annotations={IGNORE_ANNOTATION: value})}, endpoints={}, node=None)
    state = decide(DecideConfig(node_name=HERE), snapshot)
    assert WEB not in state.decisions and not state.problems


@pytest.mark.parametrize("value", ["false", "0", "no", "", "FALSE"])
def test_each_false_spelling_of_the_ignore_annotation_is_no_problem(value: str) -> None:
    """decide x_is_handled 35..40."""
    snapshot = ClusterSnapshot(services={WEB: web(annotations={IGNORE_ANNOTATION: value})},
                               endpoints={WEB: (EndpointView(("10.244.0.5",), HERE, True, True, False),)}, node=None)
    state = decide(DecideConfig(node_name=HERE), snapshot)
    assert state.decisions[WEB].advertised and not state.problems


def test_cidr_pools_skip_network_and_broadcast_only_below_slash_31() -> None:
    """ipam parse_pool: with skip-end-ips-in-cidr, a /31 and a /32 are all hosts; IPv6 prefixes keep every address."""
    pools = parse_pools({"cidr-a": "10.0.0.0/31", "cidr-b": "10.0.1.7/32", "cidr-c": "10.0.2.0/30",
                         "cidr-d": "2001:db8::/127", "skip-end-ips-in-cidr": "true"}).pools
    assert [str(ip_address(a)) for a in pools["cidr-a"].addresses(4)] == ["10.0.0.0", "10.0.0.1"]
    assert [str(ip_address(a)) for a in pools["cidr-b"].addresses(4)] == ["10.0.1.7"]
    assert [str(ip_address(a)) for a in pools["cidr-c"].addresses(4)] == ["10.0.2.1", "10.0.2.2"]
    assert [str(ip_address(a)) for a in pools["cidr-d"].addresses(6)] == ["2001:db8::", "2001:db8::1"]


def test_sharing_is_allowed_only_by_an_allow_share_key_saying_true() -> None:
    """ipam x_parse_pools 24: another key whose value is "true" allows nothing."""
    config = parse_pools({"allow-share-team": "true", "cidr-global": "10.0.0.0/30", "comment": "true"})
    assert config.allow_share == frozenset({"team"})


def test_the_create_spread_is_below_two_retry_periods_and_differs_per_node() -> None:
    """election_rules x_spread_delay 7,8,17,18: scaled to [0, 2 * retry_period), not to another range."""
    timing = LeaseTiming(retry_period=2.0)
    delays = [spread_delay(f"node-{i}", LeaseKey("default", "kubevip-web"), timing) for i in range(200)]
    assert all(0 <= d < 4.0 for d in delays)
    assert max(delays) > 3.0 and min(delays) < 1.0  # spread over the whole window
    assert spread_delay("node-1", LeaseKey("default", "kubevip-web"), LeaseTiming(retry_period=1.0)) \
        == pytest.approx(spread_delay("node-1", LeaseKey("default", "kubevip-web"), timing) / 2)


def test_create_and_renew_wait_for_elapsed_time_not_the_sum_of_clock_readings() -> None:
    """election_rules x_next_step 4,10: `now - t`, at clock values far from zero."""
    timing = LeaseTiming()
    fresh = LeaseRecord(changed_at=1000.0)
    assert next_step(fresh, identity=HERE, timing=timing, now=1000.5, spread=1.0) is Step.WAIT
    assert next_step(fresh, identity=HERE, timing=timing, now=1001.0, spread=1.0) is Step.CREATE
    held = LeaseRecord(changed_at=1000.0, exists=True, holder=HERE)
    held.renewed_at = 1000.0
    assert next_step(held, identity=HERE, timing=timing, now=1000.1, spread=0) is Step.WAIT
    assert next_step(held, identity=HERE, timing=timing, now=1000.0 + timing.renew_after, spread=0) is Step.RENEW
