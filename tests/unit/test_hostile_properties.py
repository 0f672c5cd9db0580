"""Properties over arbitrary hostile API JSON (hypothesis): the conversion never raises, decide() never
raises, and adding any one hostile Service leaves every other Service's decision unchanged."""

from __future__ import annotations

import copy
from typing import Any

from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from kvip.core.decide import DecideConfig, decide
from kvip.core.model import ClusterSnapshot, ServiceKey
from kvip.kube import convert
from kvip.lab.objects import Endpoint, endpoint_slice, load_balancer_service

KNOWN_ANNOTATIONS = ["kube-vip.io/loadbalancerIPs", "kube-vip.io/ignore", "kube-vip.io/serviceInterface",
                     "kvip.io/bgp-communities", "kvip.io/bgp-large-communities", "kvip.io/bgp-local-pref",
                     "kvip.io/allow-shared-ip", "kvip.io/probe"]
SPEC_FIELDS = ["type", "loadBalancerClass", "externalTrafficPolicy", "loadBalancerIP", "ipFamilies",
               "ipFamilyPolicy", "ports"]
NEAR_MISSES = ["²", "1" * 5000, "2001:db8::99%x", "10.96.0.1\nforged", "10.96.0.1,10.96.0.1", "65000:²",
               "no-export,65535:0", "4294967296", "10.96.0.1%eth0", "::ffff:10.96.0.1", "10.96.0.1/32",
               "TCP", "SCTP", "LoadBalancer", "Local", "IPv6", "true", "eth0", "a" * 16, "\u202e", "\x00",
               ",".join(f"10.98.{i // 250}.{i % 250 + 1}" for i in range(2000))]

json_leaf = st.one_of(st.none(), st.booleans(), st.integers(), st.floats(allow_nan=True), st.text(max_size=20))
json_value = st.recursive(json_leaf, lambda inner: st.one_of(st.lists(inner, max_size=4),
                                                              st.dictionaries(st.text(max_size=10), inner, max_size=4)),
                          max_leaves=12)
hostile_text = st.one_of(
    st.sampled_from(NEAR_MISSES),  # first: hypothesis favours (and shrinks towards) the first branch
    st.text(max_size=40),
    st.builds(lambda piece, times: piece * times, st.sampled_from(["10.96.0.7,", "x", "²", "65000:1 "]),
              st.integers(0, 40_000)),
)
any_value = st.one_of(hostile_text, json_value)

NODES = ("node-a", "node-b")
GOOD = [load_balancer_service(f"good{i}", vips=[f"10.96.0.{i + 1}"], external_traffic_policy=policy)
        for i, policy in enumerate(["Cluster", "Local", "Cluster"])]
GOOD.append(load_balancer_service("good-shared", vips=["10.96.0.7"], port=8080, external_traffic_policy="Cluster"))
GOOD.append(load_balancer_service("good-bgp", vips=["2001:db8::7"], external_traffic_policy="Cluster",
                                  annotations={"kvip.io/bgp-local-pref": "200", "kvip.io/bgp-communities": "65000:1"}))
CONFIGS = [DecideConfig(node_name="node-a"), DecideConfig(node_name="node-a", bgp_attributes=True),
           DecideConfig(node_name="node-b", bgp_attributes=True, address_families=frozenset({4}))]


@st.composite
def hostile_service(draw: st.DrawFn) -> dict[str, Any]:
    """A Service named `zz-hostile` whose annotations, spec and status are anything at all."""
    obj = load_balancer_service("zz-hostile", vips=["10.96.0.7"], external_traffic_policy="Cluster")
    annotations = draw(st.dictionaries(st.sampled_from(KNOWN_ANNOTATIONS), hostile_text, max_size=4))
    annotations.update(draw(st.dictionaries(st.text(max_size=12), any_value, max_size=2)))
    obj["metadata"]["annotations"] = draw(st.one_of(st.just(annotations), json_value))
    for field in draw(st.lists(st.sampled_from(SPEC_FIELDS), max_size=4, unique=True)):
        obj["spec"][field] = draw(st.one_of(any_value, st.lists(st.one_of(any_value, st.fixed_dictionaries(
            {"port": json_value, "protocol": any_value})), max_size=3)))
    if draw(st.booleans()):
        obj["status"] = draw(st.one_of(json_value, st.builds(
            lambda ips: {"loadBalancer": {"ingress": [{"ip": ip} for ip in ips]}}, st.lists(any_value, max_size=20))))
    if draw(st.booleans()):
        obj["spec"]["type"] = "LoadBalancer"
    return obj


def snapshot(objects: list[dict[str, Any]], node: str) -> ClusterSnapshot:
    views = dict(entry for obj in objects if (entry := convert.load_balancer_entry(obj)))
    slices = [endpoint_slice(o["metadata"]["name"], [Endpoint("10.244.1.1", n) for n in NODES]) for o in objects]
    nodes = convert.node_view({"metadata": {"name": node}})
    return convert.snapshot(views, (e[1] for s in slices if (e := convert.slice_entry(s))), nodes)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(st.dictionaries(st.sampled_from(["metadata", "spec", "status", "endpoints", "ports", "data"]), json_value),
       hostile_service())
def test_the_conversion_never_raises(junk: dict[str, Any], service: dict[str, Any]) -> None:
    for obj in (junk, service):
        convert.service_view(obj)
        convert.load_balancer_entry(obj)
        convert.slice_entry(obj)
        convert.endpoint_views(obj)
        convert.node_entry(obj)
        convert.string_data(obj)
        convert.object_key(obj), convert.slice_key(obj), convert.node_name(obj)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(hostile_service(), st.sampled_from(range(len(CONFIGS))))
@example(load_balancer_service("zz-hostile", vips=["10.96.0.9"], annotations={"kvip.io/bgp-local-pref": "²"}), 1)
@example(load_balancer_service("zz-hostile", vips=["2001:db8::99%x"]), 0)
@example(load_balancer_service("zz-hostile", annotations={"kube-vip.io/loadbalancerIPs": NEAR_MISSES[-1]}), 0)
def test_one_hostile_service_never_changes_another_services_decision(service: dict[str, Any], which: int) -> None:
    config = CONFIGS[which]
    before = decide(config, snapshot(GOOD, config.node_name))
    after = decide(config, snapshot([*GOOD, copy.deepcopy(service)], config.node_name))
    hostile = ServiceKey("default", "zz-hostile")
    assert {k: d for k, d in after.decisions.items() if k != hostile} == before.decisions
    assert before.vips <= after.vips
    for vip, advertisement in after.advertisements.items():
        if hostile not in advertisement.services:
            assert advertisement == before.advertisements[vip]
    assert {p for p in after.problems if p.service != hostile} >= \
        {p for p in before.problems}
    for problem in after.problems:
        assert problem.message.isprintable() and len(problem.message) < 600, problem
        assert problem.reason != "InternalError", problem  # hostile input is refused, never met as a bug
    assert all("%" not in str(vip) for vip in after.vips)  # plain addresses only: BIRD, netlink, ARP take them
