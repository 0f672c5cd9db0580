"""A re-decided Service keeps its place in the incremental answer, so the next pass's observers compare two
answers side by side by identity (`changed_keys`' fast path) instead of hashing every key (kvip issue #21:
5 ms per pass at 10,000 Services, in each of several observers)."""

from __future__ import annotations

import ipaddress
from operator import is_
from types import MappingProxyType

from kvip.core.decide import DecideConfig
from kvip.core.incremental import IdentityMemo, IncrementalDecider
from kvip.core.model import (
    ClusterSnapshot,
    EndpointView,
    NodeView,
    ServiceKey,
    ServiceView,
)
from kvip.core.vips import LOADBALANCER_IPS_ANNOTATION

HERE, THERE = EndpointView(("10.244.0.1",), "n1"), EndpointView(("10.244.1.1",), "n2")


def cluster(endpoints_of_s1: tuple[EndpointView, ...]) -> ClusterSnapshot:
    services = {ServiceKey("default", f"s{i}"): ServiceView(
        ServiceKey("default", f"s{i}"), annotations=MappingProxyType({LOADBALANCER_IPS_ANNOTATION: f"10.96.0.{i}"}))
        for i in range(3)}
    endpoints = {key: (HERE,) for key in services}
    return ClusterSnapshot(services, {**endpoints, ServiceKey("default", "s1"): endpoints_of_s1}, NodeView("n1"))


def test_a_service_decided_again_keeps_its_place_and_the_others_their_objects() -> None:
    decider = IncrementalDecider(DecideConfig("n1"))
    decider.decide(cluster((HERE,)))
    before = decider.decide(cluster((HERE,)))
    after = decider.decide(cluster((THERE,)))  # s1's endpoint leaves the node: s1 alone is decided again
    assert decider.redecided == 1
    assert all(map(is_, before.decisions, after.decisions))  # the same keys, in the same order
    changed = [key.name for key, old, new in zip(before.decisions, before.decisions.values(),
                                                  after.decisions.values()) if old is not new]
    assert changed == ["s1"]


def test_the_identity_memo_builds_each_item_once_and_forgets_everything_at_its_limit() -> None:
    built: list[str] = []

    def build(address: ipaddress.IPv4Address) -> str:
        built.append(str(address))
        return str(address)

    memo = IdentityMemo(build, limit=3)
    vips = [ipaddress.ip_address(f"10.96.0.{i}") for i in range(3)]
    assert memo(vips) == memo(vips) == ["10.96.0.0", "10.96.0.1", "10.96.0.2"] and len(built) == 3
    equal_copy = ipaddress.ip_address("10.96.0.1")  # equal, but another object: built for itself
    assert memo([equal_copy]) == ["10.96.0.1"] and len(built) == 4  # over the limit: all else forgotten
    assert memo(vips) == ["10.96.0.0", "10.96.0.1", "10.96.0.2"] and len(built) == 7
