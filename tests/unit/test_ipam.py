"""The allocator, pure: kube-vip-cloud-provider's ConfigMap, lowest free first, sharing rules, no double
allocation under random create/delete sequences (hypothesis)."""

from __future__ import annotations

import ipaddress
from types import MappingProxyType

from hypothesis import given, settings
from hypothesis import strategies as st

from kvip.core.ipam import SHARE_ANNOTATION, parse_pools, plan
from kvip.core.model import PortView, ServiceKey, ServiceView

IPS = "kube-vip.io/loadbalancerIPs"


def svc(name: str, ns: str = "default", *, ips: str = "", share: str | None = None, port: int = 80,
        families: tuple[str, ...] = (), policy: str = "") -> ServiceView:
    annotations = {}
    if ips:
        annotations[IPS] = ips
    if share:
        annotations[SHARE_ANNOTATION] = share
    return ServiceView(ServiceKey(ns, name), ports=(PortView("p", port, "TCP"),), ip_families=families,
                       ip_family_policy=policy, annotations=MappingProxyType(annotations))


def test_configmap_pools_cidr_and_range_global_and_per_namespace() -> None:
    config = parse_pools({"cidr-global": "10.0.0.0/30", "range-shop": "10.1.0.10-10.1.0.11, fd00::5-fd00::6",
                          "allow-share-shop": "true", "cidr-bad": "10.0.0.0/33"})
    assert [str(ipaddress.ip_address(a)) for a in config.pools["global"].addresses(4)] == ["10.0.0.1", "10.0.0.2"]
    assert list(config.pools["shop"].addresses(6)) == [int(ipaddress.ip_address("fd00::5")),
                                                      int(ipaddress.ip_address("fd00::6"))]
    assert config.allow_share == {"shop"}
    assert len(config.problems) == 1 and "cidr-bad" in config.problems[0]


def test_namespace_pool_before_global_lowest_free_first() -> None:
    config = parse_pools({"range-global": "10.0.0.1-10.0.0.9", "range-shop": "10.1.0.1-10.1.0.9"})
    taken = svc("old", ips="10.0.0.1")
    got, problems = plan(config, [taken, svc("a"), svc("b", "shop"), svc("c")])
    assert got == {ServiceKey("default", "a"): ("10.0.0.2",), ServiceKey("shop", "b"): ("10.1.0.1",),
                   ServiceKey("default", "c"): ("10.0.0.3",)}
    assert problems == []


def test_user_set_load_balancer_ip_is_respected_and_counted_as_used() -> None:
    config = parse_pools({"range-global": "10.0.0.1-10.0.0.3"})
    pinned = ServiceView(ServiceKey("default", "pinned"), load_balancer_ip="10.0.0.1")
    got, _ = plan(config, [pinned, svc("new")])
    assert got == {ServiceKey("default", "new"): ("10.0.0.2",)}


def test_dual_stack_gets_one_address_per_family() -> None:
    config = parse_pools({"range-global": "10.0.0.1-10.0.0.3,fd00::1-fd00::3"})
    got, _ = plan(config, [svc("ds", families=("IPv4", "IPv6"), policy="RequireDualStack"),
                           svc("v6", families=("IPv6",))])
    assert got[ServiceKey("default", "ds")] == ("10.0.0.1", "fd00::1")
    assert got[ServiceKey("default", "v6")] == ("fd00::2",)


def test_sharing_needs_the_namespace_permission_a_common_key_and_distinct_ports() -> None:
    config = parse_pools({"range-global": "10.0.0.1-10.0.0.9", "allow-share-default": "true"})
    first = svc("http", ips="10.0.0.1", share="web", port=80)
    got, _ = plan(config, [first, svc("https", share="web", port=443), svc("clash", share="web", port=80),
                           svc("other", share="db", port=5432)])
    assert got[ServiceKey("default", "https")] == ("10.0.0.1",)
    assert got[ServiceKey("default", "clash")] != ("10.0.0.1",)
    assert got[ServiceKey("default", "other")] != ("10.0.0.1",)
    no_share = parse_pools({"range-global": "10.0.0.1-10.0.0.9"})
    got, _ = plan(no_share, [first, svc("https", share="web", port=443)])
    assert got[ServiceKey("default", "https")] == ("10.0.0.2",)


def test_exhausted_pool_and_missing_pool_are_reported_per_service_others_unaffected() -> None:
    config = parse_pools({"range-global": "10.0.0.1-10.0.0.1", "range-shop": "10.1.0.1-10.1.0.5"})
    got, problems = plan(config, [svc("a"), svc("b"), svc("c", "shop")])
    assert got == {ServiceKey("default", "a"): ("10.0.0.1",), ServiceKey("shop", "c"): ("10.1.0.1",)}
    assert [(p.service.name, p.reason) for p in problems] == [("b", "PoolExhausted")]
    _, problems = plan(parse_pools({"range-shop": "10.1.0.1-10.1.0.5"}), [svc("lost")])
    assert problems[0].reason == "NoPool"


def test_two_services_claiming_one_ip_without_sharing_is_a_reported_clash() -> None:
    config = parse_pools({"range-global": "10.0.0.1-10.0.0.9"})
    _, problems = plan(config, [svc("a", ips="10.0.0.5"), svc("b", ips="10.0.0.5")])
    assert [(p.service.name, p.reason) for p in problems] == [("b", "IPClash")]


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.booleans(), st.integers(0, 30)), min_size=1, max_size=80))
def test_random_create_delete_sequences_never_double_allocate(ops: list[tuple[bool, int]]) -> None:
    config = parse_pools({"range-global": "10.0.0.1-10.0.0.20"})
    cluster: dict[str, ServiceView] = {}
    for create, n in ops:
        name = f"s{n}"
        if create:
            cluster.setdefault(name, svc(name))
        else:
            cluster.pop(name, None)
        got, _ = plan(config, cluster.values())
        for key, ips in got.items():  # the controller writes the annotation; the next plan reads it back
            cluster[key.name] = svc(key.name, ips=",".join(ips))
        owners: dict[str, str] = {}
        for name_, service in cluster.items():
            for ip in service.annotations.get(IPS, "").split(","):
                if ip:
                    assert ip not in owners, f"{ip} given to {owners[ip]} and {name_}"
                    owners[ip] = name_
        assert len(owners) == min(len(cluster), 20)
