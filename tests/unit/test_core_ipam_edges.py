"""IPAM edges the provider-conformance tables do not reach: how pool entries merge and where a pool ends,
which ConfigMap keys and values are valid, sharing within a plan and across namespaces, and what each
planner report names (they become Events an operator reads)."""

from __future__ import annotations

import ipaddress
from types import MappingProxyType

import pytest

from kvip.core.ipam import PoolError, parse_pool, parse_pools, plan
from kvip.core.model import BadInput, PortView, ServiceKey, ServiceView

IPS = "kube-vip.io/loadbalancerIPs"


def v4(text: str) -> int:
    return int(ipaddress.IPv4Address(text))


def svc(name: str, ns: str = "default", *, ips: str = "", port: int = 80, families: tuple[str, ...] = (),
        policy: str = "") -> ServiceView:
    return ServiceView(ServiceKey(ns, name), ports=(PortView("p", port, "TCP"),), ip_families=families,
                       ip_family_policy=policy, annotations=MappingProxyType({IPS: ips} if ips else {}))


def allocated(data: dict[str, str], *services: ServiceView) -> tuple[dict[str, tuple[str, ...]], list[BadInput]]:
    got, problems = plan(parse_pools(data), services)
    return {str(key): allocation.ips for key, allocation in got.items()}, problems


# --- pools ------------------------------------------------------------------------------------------

def test_overlapping_ranges_hand_out_each_address_once_and_a_gap_between_ranges_never() -> None:
    overlapping = parse_pool("range-global", "10.0.0.1-10.0.0.3,10.0.0.3-10.0.0.5")
    assert list(overlapping.addresses(4)) == [v4("10.0.0.1") + i for i in range(5)]
    gapped = parse_pool("range-global", "10.0.0.1-10.0.0.2,10.0.0.4-10.0.0.5")
    assert list(gapped.addresses(4)) == [v4("10.0.0.1"), v4("10.0.0.2"), v4("10.0.0.4"), v4("10.0.0.5")]


def test_adjacent_ranges_merge_into_one() -> None:
    assert parse_pool("range-global", "10.0.0.3-10.0.0.4,10.0.0.1-10.0.0.2").ranges == {
        4: ((v4("10.0.0.1"), v4("10.0.0.4")),)}


def test_a_single_address_is_a_range_of_one() -> None:
    assert list(parse_pool("range-global", "10.0.0.7").addresses(4)) == [v4("10.0.0.7")]


@pytest.mark.parametrize("value", ["10.0.0.9-10.0.0.1", "10.0.0.1-fd00::1", "fd00::1-10.0.0.1"])
def test_a_backwards_or_mixed_family_range_is_refused_naming_it(value: str) -> None:
    with pytest.raises(PoolError, match=f"^'{value}' is not a range"):
        parse_pool("range-global", value)


def test_a_pool_reports_why_it_is_unusable() -> None:
    config = parse_pools({"range-global": " , ", "cidr-a": "10.0.0.0/33"})
    assert config.broken == {"range-global": "is empty", "cidr-a": "'10.0.0.0/33': '10.0.0.0/33' does not appear "
                                                                    "to be an IPv4 or IPv6 network"}


def test_without_skip_end_ips_a_cidr_keeps_its_first_and_last_address() -> None:
    assert list(parse_pool("cidr-global", "10.0.0.0/30").addresses(4)) == [v4("10.0.0.0") + i for i in range(4)]


def test_a_pool_holds_and_offers_nothing_of_a_family_it_lacks_nor_below_its_first_address() -> None:
    pool = parse_pool("range-global", "10.0.0.5-10.0.0.6")
    assert list(pool.candidates(6, descending=False)) == [] and (6, v4("10.0.0.5")) not in pool
    assert (4, v4("10.0.0.4")) not in pool and (4, v4("10.0.0.5")) in pool and (4, v4("10.0.0.6")) in pool
    assert (4, v4("10.0.0.7")) not in pool


# --- ConfigMap keys -----------------------------------------------------------------------------------

def test_the_documented_values_of_every_switch_are_no_problem() -> None:
    for data in ({"search-order": "asc", "skip-end-ips-in-cidr": "false"},
                 {"search-order": "desc", "skip-end-ips-in-cidr": "true"},
                 {"allow-share-a": "false", "allow-share-b": "true", "allow-share-c": "0"}):
        assert parse_pools(data).problems == ()
    assert parse_pools({"skip-end-ips-in-cidr": "true"}).skip_end_ips is True


def test_a_switch_or_sharing_value_that_is_no_boolean_is_one_problem_line() -> None:
    config = parse_pools({"skip-end-ips-in-cidr": "yes", "allow-share-a": "maybe"})
    assert set(config.problems) == {"allow-share-a='maybe' is not a boolean; sharing is off for a",
                                    ("skip-end-ips-in-cidr='yes' is neither 'true' nor 'false'; read as 'false', "
                                     "as the provider does")}


@pytest.mark.parametrize("key", ["cidr-", "range-", "allow-share-"])
def test_a_key_without_a_scope_is_not_a_pool_or_setting(key: str) -> None:
    config = parse_pools({key: "10.0.0.0/24"})
    assert config.pools == {} and config.problems == (f"{key}: not a kube-vip-cloud-provider key; ignored",)


# --- planning -----------------------------------------------------------------------------------------

def test_services_created_together_share_the_first_address_of_the_plan_when_allowed() -> None:
    got, _ = allocated({"range-global": "10.0.0.1-10.0.0.9", "allow-share-global": "true"},
                       svc("http", port=80), svc("https", port=443))
    assert got == {"default/http": ("10.0.0.1",), "default/https": ("10.0.0.1",)}


def test_services_already_sharing_under_their_namespace_key_are_no_clash() -> None:
    _, problems = allocated({"range-global": "10.0.0.1-10.0.0.9", "allow-share-shop": "true"},
                            svc("http", "shop", ips="10.0.0.1"), svc("https", "shop", ips="10.0.0.1", port=443))
    assert problems == []


def test_a_clash_names_the_address_and_who_holds_it() -> None:
    _, problems = allocated({"range-global": "10.0.0.1-10.0.0.9"}, svc("a", ips="10.0.0.5"),
                            svc("b", ips="10.0.0.5", port=443))
    assert [p.message.split(" and ")[0] for p in problems] == ["'10.0.0.5' is already used by default/a"]


def test_an_address_listed_after_an_unreadable_one_still_counts_as_used() -> None:
    got, _ = allocated({"range-global": "10.0.0.1-10.0.0.9"}, svc("old", ips="bogus,10.0.0.1"), svc("new"))
    assert got == {"default/new": ("10.0.0.2",)}


def test_a_namespaces_own_pool_is_shared_within_that_namespace_only() -> None:
    data = {"range-shop": "10.0.0.1-10.0.0.9", "allow-share-shop": "true"}
    got, _ = allocated(data, svc("squatter", "other", ips="10.0.0.1"), svc("web", "shop", port=443))
    assert got == {"shop/web": ("10.0.0.2",)}


def test_the_global_pool_is_shared_across_namespaces() -> None:
    data = {"range-global": "10.0.0.1-10.0.0.9", "allow-share-global": "true"}
    got, _ = allocated(data, svc("dns", "infra", ips="10.0.0.1"), svc("web", "shop", port=443))
    assert got == {"shop/web": ("10.0.0.1",)}


def test_each_planner_report_names_the_service_and_what_is_missing() -> None:
    web = ServiceKey("shop", "web")
    _, problems = allocated({"range-other": "10.0.0.1"}, svc("web", "shop"))
    assert problems == [BadInput(web, "NoPool", "no cidr-shop, cidr-global, range-shop or range-global key in "
                                                 "the ConfigMap")]
    _, problems = allocated({"range-global": "10.0.0.1"}, svc("web", "shop", families=("IPv6",)))
    assert problems == [BadInput(web, "NoPoolForFamily", "range-global has no IPv6 address for this IPv6 Service")]
    dual = svc("web", "shop", families=("IPv4", "IPv6"), policy="RequireDualStack")
    _, problems = allocated({"range-global": "10.0.0.1,fd00::1"}, svc("v6", ips="fd00::1"), dual)
    assert problems == [BadInput(web, "PoolExhausted", "no free IPv6 address in range-global")]
    dual = svc("web", "shop", families=("IPv4", "IPv6"), policy="PreferDualStack")
    got, problems = allocated({"range-global": "10.0.0.1,fd00::1"}, svc("v6", ips="fd00::1"), dual)
    assert got == {"shop/web": ("10.0.0.1",)}
    assert problems == [BadInput(web, "PartialDualStack", "PreferDualStack: no free IPv6 address in range-global; "
                                                          "single stack for now")]
