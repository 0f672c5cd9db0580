"""Properties of decide() over generated clusters (hypothesis): the invariants kvip's promise rests on."""

from __future__ import annotations

from types import MappingProxyType

from hypothesis import given, settings
from hypothesis import strategies as st

from kvip.core.decide import DecideConfig, decide
from kvip.core.model import (
    ClusterSnapshot,
    EndpointView,
    PortView,
    ServiceKey,
    ServiceView,
)

NODES = ("node-a", "node-b", "node-c")
HERE = "node-a"
CONFIG = DecideConfig(node_name=HERE)

vip_text = st.sampled_from(["10.96.0.1", "10.96.0.2", "10.96.0.3", "2001:db8::1", "2001:db8::2"])
garbage = st.sampled_from(["", "10.96.0.300", "fe80::1", "not-an-ip", "0.0.0.0", "::ffff:10.0.0.1", "127.0.0.1"])

endpoint = st.builds(
    lambda node, ready, serving, terminating, n: EndpointView((f"10.244.{n}.1",), node, ready, serving, terminating),
    st.sampled_from(NODES), st.booleans(), st.booleans(), st.booleans(), st.integers(0, 5),
)


@st.composite
def service(draw: st.DrawFn, name: str) -> ServiceView:
    ips = tuple(draw(st.lists(vip_text, max_size=2)))
    annotations = {}
    if draw(st.booleans()):
        annotations["kube-vip.io/loadbalancerIPs"] = ",".join(draw(st.lists(st.one_of(vip_text, garbage), max_size=3)))
    return ServiceView(
        ServiceKey("default", name),
        external_traffic_policy=draw(st.sampled_from(["Local", "Cluster"])),
        ingress_ips=ips,
        ports=(PortView("p", draw(st.sampled_from([80, 443])), "TCP"),),
        annotations=MappingProxyType(annotations),
    )


@st.composite
def cluster(draw: st.DrawFn) -> ClusterSnapshot:
    count = draw(st.integers(0, 6))
    services = [draw(service(f"s{i}")) for i in range(count)]
    endpoints = {s.key: tuple(draw(st.lists(endpoint, max_size=3))) for s in services}
    return ClusterSnapshot({s.key: s for s in services}, endpoints)


def reorder(snapshot: ClusterSnapshot, seed: int) -> ClusterSnapshot:
    keys = list(snapshot.services)
    keys = keys[seed % max(1, len(keys)):] + keys[: seed % max(1, len(keys))]
    return ClusterSnapshot(
        {k: snapshot.services[k] for k in reversed(keys)},
        {k: tuple(reversed(snapshot.endpoints.get(k, ()))) for k in keys},
    )


@settings(max_examples=300, deadline=None)
@given(cluster(), st.integers(0, 10))
def test_decide_is_deterministic_and_independent_of_order(snapshot: ClusterSnapshot, seed: int) -> None:
    first = decide(CONFIG, snapshot)
    assert decide(CONFIG, snapshot) == first
    again = decide(CONFIG, reorder(snapshot, seed))
    assert again.advertisements == first.advertisements
    assert set(again.problems) == set(first.problems)


@settings(max_examples=300, deadline=None)
@given(cluster(), st.lists(garbage, min_size=1, max_size=3), st.sampled_from(["Local", "Cluster"]))
def test_adding_a_bad_service_never_changes_other_advertisements(snapshot: ClusterSnapshot, junk: list[str],
                                                                  policy: str) -> None:
    bad = ServiceView(ServiceKey("default", "zz-bad"), external_traffic_policy=policy,
                      annotations=MappingProxyType({"kube-vip.io/loadbalancerIPs": ",".join(junk),
                                                    "kube-vip.io/ignore": "perhaps"}))
    polluted = ClusterSnapshot({**snapshot.services, bad.key: bad},
                               {**snapshot.endpoints, bad.key: (EndpointView(("10.244.9.9",), HERE),)})
    assert decide(CONFIG, polluted).advertisements == decide(CONFIG, snapshot).advertisements


@settings(max_examples=300, deadline=None)
@given(cluster())
def test_advertised_vips_come_only_from_services_that_justify_them(snapshot: ClusterSnapshot) -> None:
    state = decide(CONFIG, snapshot)
    for vip, ad in state.advertisements.items():
        assert ad.services, vip
        for key in ad.services:
            decision = state.decisions[key]
            assert vip in decision.vips and decision.advertised
            service, endpoints = snapshot.services[key], snapshot.endpoints.get(key, ())
            if service.external_traffic_policy == "Local":
                assert any(e.node_name == HERE and e.ready for e in endpoints)
            else:
                assert any(e.ready for e in endpoints)


@settings(max_examples=300, deadline=None)
@given(cluster(), st.data())
def test_removing_all_endpoints_of_a_service_withdraws_its_vips_unless_shared(snapshot: ClusterSnapshot,
                                                                              data: st.DataObject) -> None:
    if not snapshot.services:
        return
    key = data.draw(st.sampled_from(sorted(snapshot.services)))
    emptied = ClusterSnapshot(snapshot.services, {**snapshot.endpoints, key: ()})
    state = decide(CONFIG, emptied)
    assert not state.decisions.get(key) or not state.decisions[key].advertised
    for vip in state.decisions[key].vips if key in state.decisions else ():
        if vip in state.advertisements:
            assert key not in state.advertisements[vip].services
            assert state.advertisements[vip].services  # someone else still wants it
