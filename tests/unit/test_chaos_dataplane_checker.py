"""The soak's own judgement of egress rules and of kvip.io/advertised-by (kvip.lab.chaos_dataplane), from
plain objects: it must expect exactly the rules and names the cluster implies, or the soak proves nothing."""

from __future__ import annotations

from typing import Any

from kvip.lab.chaos_dataplane import advertised_by_mismatches, expected_egress
from kvip.lab.objects import Endpoint, endpoint_slice, load_balancer_service


class FakeApi:
    def __init__(self, *objects: dict[str, Any]) -> None:
        self.objects = objects

    def list(self, resource: str) -> list[dict[str, Any]]:
        kind = {"services": "Service", "endpointslices": "EndpointSlice"}[resource]
        return [o for o in self.objects if o["kind"] == kind]


class FakeLab:
    def __init__(self, *objects: dict[str, Any]) -> None:
        self.api = FakeApi(*objects)


def test_egress_is_expected_for_ready_local_pods_on_the_nodes_holding_the_vip_only() -> None:
    lab = FakeLab(
        load_balancer_service("svc0", vips=["10.96.7.1"], annotations={"kube-vip.io/egress": "true"}),
        endpoint_slice("svc0", [Endpoint("10.244.0.5", "node-a"), Endpoint("10.244.1.5", "node-b"),
                                Endpoint("10.244.2.5", "node-c", ready=False)]),
        load_balancer_service("svc2", vips=["10.96.7.3"]),  # no egress annotation: no rule
        endpoint_slice("svc2", [Endpoint("10.244.0.9", "node-a")]))
    routes = {"node-a": {"10.96.7.1/32", "10.96.7.3/32"}, "node-b": set(), "node-c": {"10.96.7.1/32"}}
    assert expected_egress(lab, routes) == {  # type: ignore[arg-type]
        "node-a": {("10.244.0.5", "10.96.7.1")},
        "node-b": set(),  # a ready pod, but the VIP is not held here: replies would not come back
        "node-c": set(),  # holds the VIP, but its pod is not ready
    }


def test_advertised_by_must_name_exactly_the_nodes_holding_every_vip_of_the_service() -> None:
    named = load_balancer_service("svc0", vips=["10.96.7.1"], annotations={"kvip.io/advertised-by": "node-a,node-c"})
    unnamed = load_balancer_service("svc1", vips=["10.96.7.2"])
    lab = FakeLab(named, unnamed)
    routes = {"node-a": {"10.96.7.1/32"}, "node-b": set(), "node-c": {"10.96.7.1/32"}}
    assert advertised_by_mismatches(lab, routes) == []  # type: ignore[arg-type]
    routes["node-b"] = {"10.96.7.2/32"}
    assert advertised_by_mismatches(lab, routes) == [  # type: ignore[arg-type]
        "svc1: advertised-by '', routes on ['node-b']"]
    routes["node-c"] = set()
    assert len(advertised_by_mismatches(lab, routes)) == 2  # type: ignore[arg-type]
