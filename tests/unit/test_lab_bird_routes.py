"""The lab reads a BIRD router's RIB with its own parser: checked on text captured from real BIRD 2.0.12.

Captured with `birdc show route all` on a router peering with two BIRD nodes in namespaces: node 1
over eBGP (AS 65101) with two communities and a large community, node 2 over iBGP setting
local-pref 150; both announce 10.96.0.50/32, so that prefix has two paths.
"""

from __future__ import annotations

import pytest

from kvip.lab.bird_routes import BirdRouteParseError, RouterPath, parse_show_route

CAPTURED = (
    'BIRD 2.0.12 ready.\n'
    'Table master4:\n'
    '10.96.0.51/32        unicast [n1 10:45:02.733] * (100) [AS65101i]\n'
    '\tvia 10.99.1.2 on kvcap-a\n'
    '\tType: BGP univ\n'
    '\tBGP.origin: IGP\n'
    '\tBGP.as_path: 65101\n'
    '\tBGP.next_hop: 10.99.1.2\n'
    '\tBGP.local_pref: 100\n'
    '\tBGP.community: (65000,7) (65101,100)\n'
    '\tBGP.large_community: (65101, 1, 2)\n'
    '10.96.0.60/32        unicast [n2 10:45:01.728] * (100) [i]\n'
    '\tvia 10.99.2.2 on kvcap-c\n'
    '\tType: BGP univ\n'
    '\tBGP.origin: IGP\n'
    '\tBGP.as_path: \n'
    '\tBGP.next_hop: 10.99.2.2\n'
    '\tBGP.local_pref: 150\n'
    '10.96.0.50/32        unicast [n2 10:45:01.728] * (100) [i]\n'
    '\tvia 10.99.2.2 on kvcap-c\n'
    '\tType: BGP univ\n'
    '\tBGP.origin: IGP\n'
    '\tBGP.as_path: \n'
    '\tBGP.next_hop: 10.99.2.2\n'
    '\tBGP.local_pref: 150\n'
    '                     unicast [n1 10:45:02.733] (100) [AS65101i]\n'
    '\tvia 10.99.1.2 on kvcap-a\n'
    '\tType: BGP univ\n'
    '\tBGP.origin: IGP\n'
    '\tBGP.as_path: 65101\n'
    '\tBGP.next_hop: 10.99.1.2\n'
    '\tBGP.local_pref: 100\n'
    '\tBGP.community: (65000,7) (65101,100)\n'
    '\tBGP.large_community: (65101, 1, 2)\n'
)

NODE1 = {"protocol": "n1", "next_hop": "10.99.1.2", "local_pref": 100, "as_path": "65101",
         "communities": frozenset({"65000:7", "65101:100"}), "large_communities": frozenset({"65101:1:2"})}
NODE2 = {"protocol": "n2", "next_hop": "10.99.2.2", "local_pref": 150, "as_path": ""}


def test_every_path_of_a_real_router_rib_with_its_bgp_attributes() -> None:
    assert parse_show_route(CAPTURED) == [
        RouterPath("10.96.0.51/32", primary=True, **NODE1),  # type: ignore[arg-type]
        RouterPath("10.96.0.60/32", primary=True, **NODE2),  # type: ignore[arg-type]
        RouterPath("10.96.0.50/32", primary=True, **NODE2),  # type: ignore[arg-type]
        RouterPath("10.96.0.50/32", primary=False, **NODE1),  # type: ignore[arg-type]  the second path
    ]


def test_an_empty_table_has_no_paths() -> None:
    assert parse_show_route("BIRD 2.0.12 ready.\nTable master6:\n") == []


def test_ipv6_next_hops_keep_their_colons_and_a_route_without_bgp_uses_its_via() -> None:
    text = ("Table master6:\n"
            "fd00:96::50/128      unicast [n1 10:45:02.733] * (100) [AS65101i]\n"
            "\tvia fe80::1 on eth0\n"
            "\tBGP.next_hop: fd00:99::2 fe80::1\n"
            "fd00:97::/64         unicast [static1 10:45:00.001] * (200)\n"
            "\tvia fd00:99::7 on eth0\n"
            "\tType: static univ\n")
    assert [(p.prefix, p.protocol, p.next_hop) for p in parse_show_route(text)] == [
        ("fd00:96::50/128", "n1", "fd00:99::2"), ("fd00:97::/64", "static1", "fd00:99::7")]


@pytest.mark.parametrize("text", [
    "\tBGP.local_pref: 100\n",  # an attribute before any route
    "                     unicast [n1 10:45:02.733] (100) [i]\n",  # a second path before any prefix
    "syntax error, unexpected CF_SYM_UNDEFINED\n",
])
def test_text_of_another_shape_is_an_error_not_an_empty_rib(text: str) -> None:
    with pytest.raises(BirdRouteParseError):
        parse_show_route(text)
