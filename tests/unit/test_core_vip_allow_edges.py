"""The VIP allow-list's parsers and refusals at their edges: the CIDR count limit, a zone id, empty entries
between namespaces, and the refusal text (it names the rule and at most four of its CIDRs)."""

from __future__ import annotations

import ipaddress

import pytest

from kvip.core.vip_allow import (
    MAX_CIDRS,
    InvalidAllowList,
    VipAllowList,
    parse_cidrs,
    parse_namespace_cidrs,
)


def test_exactly_the_cidr_limit_is_accepted_one_more_is_not() -> None:
    cidrs = [f"10.{i // 256}.{i % 256}.0/24" for i in range(MAX_CIDRS + 1)]
    assert len(parse_cidrs(",".join(cidrs[:MAX_CIDRS]))) == MAX_CIDRS
    with pytest.raises(InvalidAllowList, match=f"more than {MAX_CIDRS}"):
        parse_cidrs(",".join(cidrs))


def test_a_cidr_with_a_zone_id_is_refused() -> None:
    with pytest.raises(InvalidAllowList, match="is not a CIDR"):
        parse_cidrs("fe80::%eth0/64")


def test_empty_entries_between_namespaces_are_skipped_not_the_end_of_the_list() -> None:
    parsed = parse_namespace_cidrs("team-a=10.96.1.0/24;;team-b=10.96.2.0/24;")
    assert [namespace for namespace, _ in parsed] == ["team-a", "team-b"]


def test_a_refusal_shows_four_cidrs_of_the_rule_and_how_many_there_are() -> None:
    vip = ipaddress.ip_address("192.0.2.1")
    five = VipAllowList(global_cidrs=parse_cidrs(",".join(f"10.{i}.0.0/16" for i in range(5))))
    assert five.refusal("shop", vip) == ("is outside the VIP allow-list (kvip_vip_allow: 10.0.0.0/16,10.1.0.0/16,"
                                         "10.2.0.0/16,10.3.0.0/16,... (5 CIDRs))")
    four = VipAllowList(global_cidrs=parse_cidrs(",".join(f"10.{i}.0.0/16" for i in range(4))))
    assert four.refusal("shop", vip) == ("is outside the VIP allow-list (kvip_vip_allow: 10.0.0.0/16,10.1.0.0/16,"
                                         "10.2.0.0/16,10.3.0.0/16)")


def test_a_namespace_without_an_entry_is_named_when_no_global_list_exists() -> None:
    only_a = VipAllowList(namespaces=parse_namespace_cidrs("team-a=10.96.1.0/24"))
    assert only_a.refusal("shop", ipaddress.ip_address("10.96.1.5")) == (
        "is refused: namespace 'shop' has no kvip_vip_allow_namespaces entry and kvip_vip_allow is unset")
