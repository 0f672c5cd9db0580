"""Scenarios of the incremental decider and of the cache's endpoint index: one change costs one Service
(and its VIP's neighbours), never the whole cluster; a node-wide change decides everything again."""

from __future__ import annotations

import ipaddress
from types import MappingProxyType
from typing import NoReturn

import pytest

from kvip.core import incremental
from kvip.core.decide import DecideConfig, decide
from kvip.core.incremental import IncrementalDecider, changed_keys
from kvip.core.model import (
    ClusterSnapshot,
    EndpointView,
    NodeView,
    PortView,
    ServiceKey,
    ServiceView,
)
from kvip.core.vips import LOADBALANCER_IPS_ANNOTATION
from kvip.kube.cache import EndpointIndex

CONFIG = DecideConfig("n1")
HERE, THERE = EndpointView(("10.244.0.1",), "n1"), EndpointView(("10.244.1.1",), "n2", ready=False)


def service(name: str, vip: str, port: int = 80) -> ServiceView:
    return ServiceView(ServiceKey("default", name), ports=(PortView("http", port),),
                       annotations=MappingProxyType({LOADBALANCER_IPS_ANNOTATION: vip}))


def cluster(count: int) -> ClusterSnapshot:
    services = {s.key: s for s in (service(f"s{i}", f"10.96.{i // 250}.{i % 250}") for i in range(count))}
    return ClusterSnapshot(services, {key: (HERE,) for key in services}, NodeView("n1"))


def with_endpoints(snapshot: ClusterSnapshot, key: ServiceKey, endpoints: tuple[EndpointView, ...]
                   ) -> ClusterSnapshot:
    return ClusterSnapshot(dict(snapshot.services), {**snapshot.endpoints, key: endpoints}, snapshot.node)


def with_service(snapshot: ClusterSnapshot, view: ServiceView) -> ClusterSnapshot:
    return ClusterSnapshot({**snapshot.services, view.key: view}, dict(snapshot.endpoints), snapshot.node)


def test_one_endpointslice_change_among_a_thousand_services_re_decides_that_service_alone() -> None:
    before = cluster(1000)
    decider = IncrementalDecider(CONFIG)
    decider.decide(before)
    assert decider.full and decider.redecided == 1000
    moved = ServiceKey("default", "s7")
    after = with_endpoints(before, moved, (THERE,))
    state = decider.decide(after)
    assert not decider.full and decider.redecided == 1
    assert state == decide(CONFIG, after)
    assert ipaddress.ip_address("10.96.0.7") not in state.advertisements


def test_a_service_leaving_a_shared_vip_clears_its_neighbours_conflict_and_ownership() -> None:
    web, api = service("web", "10.96.0.1"), service("api", "10.96.0.1")
    before = ClusterSnapshot({web.key: web, api.key: api}, {web.key: (HERE,), api.key: (HERE,)}, NodeView("n1"))
    decider = IncrementalDecider(CONFIG)
    assert {p.service for p in decider.decide(before).problems if p.reason == "VIPConflict"} == {web.key, api.key}
    after = with_service(before, service("api", "10.96.0.2"))
    state = decider.decide(after)
    assert decider.redecided == 1  # api only: web's VIP is re-done, web itself is not re-decided
    assert not [p for p in state.problems if p.reason == "VIPConflict"]
    assert state.advertisements[ipaddress.ip_address("10.96.0.1")].services == {web.key}
    assert state == decide(CONFIG, after)


def test_a_node_change_decides_every_service_again() -> None:
    before = cluster(10)
    decider = IncrementalDecider(CONFIG)
    decider.decide(before)
    excluded = ClusterSnapshot(before.services, before.endpoints, NodeView(
        "n1", labels=MappingProxyType({"node.kubernetes.io/exclude-from-external-load-balancers": ""})))
    state = decider.decide(excluded)
    assert decider.full and decider.redecided == 10 and not state.advertisements


def test_changed_keys_sees_additions_removals_and_equal_copies() -> None:
    one, two = (HERE,), (THERE,)
    assert changed_keys({"a": one}, {"a": one}) == set()
    assert changed_keys({"a": one}, {"a": (EndpointView(("10.244.0.1",), "n1"),)}) == set()  # equal copy
    assert changed_keys({"a": one, "b": two}, {"a": one, "c": two}) == {"b", "c"}  # as many gone as came
    assert changed_keys({"a": one}, {"a": one, "b": ()}, ()) == set()  # no entry means no endpoints


def test_the_endpoint_index_regroups_only_services_whose_slices_changed() -> None:
    web, api = ServiceKey("default", "web"), ServiceKey("default", "api")
    index = EndpointIndex()
    store = {("default", "web-b"): (web, (THERE,)), ("default", "web-a"): (web, (HERE,)),
             ("default", "api-a"): (api, (HERE,))}
    first = index.update(store)
    assert first == {web: (HERE, THERE), api: (HERE,)}  # slices in name order
    store[("default", "web-b")] = (web, ())
    second = index.update(store)
    assert second[web] == (HERE,) and second[api] is first[api]
    del store[("default", "web-a")]
    store[("default", "api-b")] = (api, (THERE,))  # one gone, one come: the same count
    third = index.update(store)
    assert third == {web: (), api: (HERE, THERE)}
    del store[("default", "web-b")]
    assert index.update(store) == {api: (HERE, THERE)}


def test_a_pass_that_fails_half_way_leaves_no_half_updated_memo(monkeypatch: pytest.MonkeyPatch) -> None:
    before = cluster(3)
    decider = IncrementalDecider(CONFIG)
    decider.decide(before)
    after = with_service(before, service("s1", "10.96.9.9"))

    def broken(*_: object) -> NoReturn:
        raise RuntimeError("a bug in the per-VIP step")

    with monkeypatch.context() as patch:
        patch.setattr(incremental, "vip_advertisement", broken)
        with pytest.raises(RuntimeError):
            decider.decide(after)
    assert decider.decide(after) == decide(CONFIG, after)  # the same inputs again: decided from scratch
