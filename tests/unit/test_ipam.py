"""The allocator, pure: kube-vip-cloud-provider's ConfigMap read as the provider reads it (one pool per
Service in its order, allow-share with a global fallback, search-order, skip-end-ips-in-cidr, interface-*),
sharing rules, deleting Services, and no double allocation under random create/delete sequences
(hypothesis). The provider's own test tables are ported in test_cloud_provider_conformance.py."""

from __future__ import annotations

import ipaddress
from types import MappingProxyType

from hypothesis import given, settings
from hypothesis import strategies as st

from kvip.core.ipam import SHARE_ANNOTATION, Allocation, parse_pools, plan
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


def ips(got: dict[ServiceKey, Allocation]) -> dict[str, tuple[str, ...]]:
    return {str(key): allocation.ips for key, allocation in got.items()}


def test_configmap_pools_cidr_and_range_and_problems_one_line_each() -> None:
    config = parse_pools({"cidr-global": "10.0.0.0/30", "range-shop": "10.1.0.10-10.1.0.11, fd00::5-fd00::6",
                          "allow-share-shop": "true", "cidr-bad": "10.0.0.0/33", "cidr_typo": "10.0.0.0/24"})
    assert [str(ipaddress.ip_address(a)) for a in config.pools["cidr-global"].addresses(4)] == [
        "10.0.0.0", "10.0.0.1", "10.0.0.2", "10.0.0.3"]  # no skip-end-ips-in-cidr: the whole prefix
    assert list(config.pools["range-shop"].addresses(6)) == [int(ipaddress.ip_address("fd00::5")),
                                                             int(ipaddress.ip_address("fd00::6"))]
    assert config.share_allowed("shop") and not config.share_allowed("default")
    assert "cidr-bad" in config.broken
    assert [p.split(":")[0] for p in config.problems] == ["cidr-bad", "cidr_typo"]


def test_one_pool_per_service_in_the_providers_order_and_no_fallback_when_full() -> None:
    data = {"range-global": "10.0.0.1-10.0.0.9", "range-shop": "10.1.0.1-10.1.0.1", "cidr-global": "10.2.0.0/30"}
    config = parse_pools(data)
    assert config.pool_key("shop") == "cidr-global"  # any cidr- key before any range- key
    del data["cidr-global"]
    config = parse_pools(data)
    got, problems = plan(config, [svc("a", "shop"), svc("b", "shop"), svc("c")])
    assert ips(got) == {"shop/a": ("10.1.0.1",), "default/c": ("10.0.0.1",)}
    assert [(p.service.name, p.reason) for p in problems] == [("b", "PoolExhausted")]  # global is not tried


def test_a_range_under_a_cidr_key_is_a_range_and_a_cidr_under_a_range_key_a_cidr() -> None:
    config = parse_pools({"cidr-a": "10.0.0.5-10.0.0.6", "range-b": "10.0.1.0/31"})
    assert not config.problems
    got, _ = plan(config, [svc("x", "a"), svc("y", "b")])
    assert ips(got) == {"a/x": ("10.0.0.5",), "b/y": ("10.0.1.1",)}  # 10.0.1.0 ends in .0


def test_dot_zero_and_dot_255_are_never_handed_out_and_skip_end_ips_trims_each_prefix() -> None:
    config = parse_pools({"range-global": "10.0.0.255-10.0.1.1"})
    got, _ = plan(config, [svc("a"), svc("b"), svc("c")])
    assert ips(got) == {"default/a": ("10.0.1.1",)}
    trimmed = parse_pools({"cidr-global": "10.0.0.8/30", "skip-end-ips-in-cidr": "true"})
    assert [str(ipaddress.ip_address(a)) for a in trimmed.pools["cidr-global"].addresses(4)] == [
        "10.0.0.9", "10.0.0.10"]


def test_search_order_desc_hands_out_the_highest_free_address_first() -> None:
    config = parse_pools({"range-global": "10.0.0.1-10.0.0.9", "search-order": "desc"})
    got, _ = plan(config, [svc("old", ips="10.0.0.9"), svc("a"), svc("b")])
    assert ips(got) == {"default/a": ("10.0.0.8",), "default/b": ("10.0.0.7",)}
    assert parse_pools({"search-order": "DESC"}).problems  # the provider reads it as asc: said in one line


def test_user_set_load_balancer_ip_is_respected_and_counted_as_used() -> None:
    config = parse_pools({"range-global": "10.0.0.1-10.0.0.3"})
    pinned = ServiceView(ServiceKey("default", "pinned"), load_balancer_ip="10.0.0.1")
    got, _ = plan(config, [pinned, svc("new")])
    assert ips(got) == {"default/new": ("10.0.0.2",)}


def test_a_link_local_address_in_use_is_not_handed_out_twice() -> None:
    config = parse_pools({"range-global": "fe80::1-fe80::3"})
    got, _ = plan(config, [svc("old", ips="fe80::1"), svc("new", families=("IPv6",))])
    assert ips(got) == {"default/new": ("fe80::2",)}


def test_dual_stack_gets_one_address_per_family_in_the_services_order() -> None:
    config = parse_pools({"range-global": "10.0.0.1-10.0.0.3,fd00::1-fd00::3"})
    got, _ = plan(config, [svc("ds", families=("IPv6", "IPv4"), policy="RequireDualStack"),
                           svc("v6", families=("IPv6",))])
    assert ips(got) == {"default/ds": ("fd00::1", "10.0.0.1"), "default/v6": ("fd00::2",)}


def test_prefer_dual_stack_takes_the_second_family_when_the_first_is_full() -> None:
    config = parse_pools({"range-global": "10.0.0.1-10.0.0.1,fd00::1-fd00::3"})
    got, problems = plan(config, [svc("old", ips="10.0.0.1"),
                                  svc("ds", families=("IPv4", "IPv6"), policy="PreferDualStack")])
    assert ips(got) == {"default/ds": ("fd00::1",)}
    assert [p.reason for p in problems] == ["PartialDualStack"]


def test_require_dual_stack_that_fails_keeps_its_first_address_free_for_the_next_service() -> None:
    config = parse_pools({"range-global": "10.0.0.1-10.0.0.3,fd00::1-fd00::1"})
    got, _ = plan(config, [svc("old", ips="fd00::1"), svc("a", families=("IPv4", "IPv6"), policy="RequireDualStack"),
                           svc("b")])
    assert ips(got) == {"default/b": ("10.0.0.1",)}


def test_allow_share_global_applies_to_every_namespace_without_its_own_key() -> None:
    config = parse_pools({"range-global": "10.0.0.1-10.0.0.9", "allow-share-global": "true",
                          "allow-share-strict": "false"})
    first = svc("http", ips="10.0.0.1", port=80)
    got, _ = plan(config, [first, svc("https", port=443), svc("clash", port=80)])
    assert ips(got) == {"default/https": ("10.0.0.1",), "default/clash": ("10.0.0.2",)}
    assert not config.share_allowed("strict")  # a namespace's own false wins over global
    udp = ServiceView(ServiceKey("default", "dns"), ports=(PortView("dns", 80, "UDP"),))
    got, _ = plan(config, [first, udp])
    assert ips(got) == {"default/dns": ("10.0.0.2",)}  # the provider compares port numbers, not protocols


def test_a_sharing_key_restricts_sharing_to_services_with_the_same_key() -> None:
    config = parse_pools({"range-global": "10.0.0.1-10.0.0.9", "allow-share-default": "true"})
    first = svc("http", ips="10.0.0.1", share="web", port=80)
    got, _ = plan(config, [first, svc("https", share="web", port=443), svc("other", share="db", port=5432),
                           svc("plain", port=8080)])
    assert ips(got) == {"default/https": ("10.0.0.1",), "default/other": ("10.0.0.2",),
                        "default/plain": ("10.0.0.3",)}
    no_share = parse_pools({"range-global": "10.0.0.1-10.0.0.9"})
    got, _ = plan(no_share, [first, svc("https", share="web", port=443)])
    assert ips(got) == {"default/https": ("10.0.0.2",)}


def test_a_deleting_service_gets_no_address_but_keeps_the_one_it_has() -> None:
    config = parse_pools({"range-global": "10.0.0.1-10.0.0.3"})
    got, problems = plan(config, [svc("gone"), svc("going", ips="10.0.0.1"), svc("new")],
                         deleting=frozenset({ServiceKey("default", "gone"), ServiceKey("default", "going")}))
    assert ips(got) == {"default/new": ("10.0.0.2",)} and problems == []


def test_interface_of_the_namespace_else_global_goes_with_the_allocation() -> None:
    config = parse_pools({"range-global": "10.0.0.1-10.0.0.9", "interface-global": "eth0", "interface-shop": "eth1"})
    got, _ = plan(config, [svc("a"), svc("b", "shop")])
    assert {str(k): a.interface for k, a in got.items()} == {"default/a": "eth0", "shop/b": "eth1"}


def test_unusable_pools_are_reported_per_service_and_do_not_fall_back() -> None:
    config = parse_pools({"cidr-global": "0.0.0.0/32", "range-global": "10.0.0.1-10.0.0.9",
                          "cidr-shop": "10.1.0.1-10.1.0.5,garbage"})
    got, problems = plan(config, [svc("dhcp"), svc("bad", "shop")])
    assert got == {}
    assert [(p.service.name, p.reason) for p in problems] == [("dhcp", "PoolInvalid"), ("bad", "PoolInvalid")]
    assert "DHCP" in problems[0].message and "garbage" in problems[1].message


def test_exhausted_and_missing_pools_are_reported_per_service_others_unaffected() -> None:
    config = parse_pools({"range-global": "10.0.0.1-10.0.0.1", "range-shop": "10.1.0.1-10.1.0.5"})
    got, problems = plan(config, [svc("a"), svc("b"), svc("c", "shop")])
    assert ips(got) == {"default/a": ("10.0.0.1",), "shop/c": ("10.1.0.1",)}
    assert [(p.service.name, p.reason) for p in problems] == [("b", "PoolExhausted")]
    _, problems = plan(parse_pools({"range-shop": "10.1.0.1-10.1.0.5"}), [svc("lost")])
    assert problems[0].reason == "NoPool"


def test_two_services_claiming_one_ip_without_sharing_is_a_reported_clash() -> None:
    config = parse_pools({"range-global": "10.0.0.1-10.0.0.9"})
    _, problems = plan(config, [svc("a", ips="10.0.0.5"), svc("b", ips="10.0.0.5", port=443)])
    assert [(p.service.name, p.reason) for p in problems] == [("b", "IPClash")]


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.booleans(), st.integers(0, 30)), min_size=1, max_size=80), st.booleans())
def test_random_create_delete_sequences_never_double_allocate(ops: list[tuple[bool, int]], desc: bool) -> None:
    config = parse_pools({"range-global": "10.0.0.1-10.0.0.20", "search-order": "desc" if desc else "asc"})
    cluster: dict[str, ServiceView] = {}
    for create, n in ops:
        name = f"s{n}"
        if create:
            cluster.setdefault(name, svc(name))
        else:
            cluster.pop(name, None)
        got, _ = plan(config, cluster.values())
        for key, allocation in got.items():  # the controller writes the annotation; the next plan reads it back
            cluster[key.name] = svc(key.name, ips=",".join(allocation.ips))
        owners: dict[str, str] = {}
        for name_, service in cluster.items():
            for ip in service.annotations.get(IPS, "").split(","):
                if ip:
                    assert ip not in owners, f"{ip} given to {owners[ip]} and {name_}"
                    owners[ip] = name_
        assert len(owners) == min(len(cluster), 20)


@settings(max_examples=150, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 15), st.sampled_from([53, 80, 443])), min_size=1, max_size=40))
def test_random_sharing_never_puts_one_port_twice_on_an_address(ops: list[tuple[int, int]]) -> None:
    config = parse_pools({"range-global": "10.0.0.1-10.0.0.4", "allow-share-global": "true"})
    cluster: dict[str, ServiceView] = {}
    for n, port in ops:
        name = f"s{n}"
        if name in cluster:
            del cluster[name]
        else:
            cluster[name] = svc(name, port=port)
        got, _ = plan(config, cluster.values())
        for key, allocation in got.items():
            cluster[key.name] = svc(key.name, ips=",".join(allocation.ips), port=cluster[key.name].ports[0].port or 0)
        used: set[tuple[str, int | None]] = set()
        for service in cluster.values():
            for ip in filter(None, service.annotations.get(IPS, "").split(",")):
                assert (ip, service.ports[0].port) not in used, f"{ip} port {service.ports[0].port} twice"
                used.add((ip, service.ports[0].port))
        assert len(used) == sum(1 for s in cluster.values() if s.annotations.get(IPS))
        for service in cluster.values():  # a Service left without an address: its port is taken everywhere
            if not service.annotations.get(IPS):
                assert all((f"10.0.0.{i}", service.ports[0].port) in used for i in range(1, 5))


def test_a_zone_id_address_claimed_by_one_tenant_does_not_block_another_tenants_claim() -> None:
    hostile = ServiceView(ServiceKey("evil", "zone"), load_balancer_ip="fd00::5%eth0",
                          ports=(PortView("http", 80),))
    claimer = ServiceView(ServiceKey("team", "web"), load_balancer_ip="fd00::5", ports=(PortView("http", 80),))
    _, problems = plan(parse_pools({"cidr-global": "fd00::/120"}), [hostile, claimer])
    assert not [p for p in problems if p.reason == "IPClash"], problems
