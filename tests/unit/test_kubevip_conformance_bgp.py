"""kube-vip's BGP peer parsing tests (pkg/kubevip/config_bgp_test.go, TestParseBGPPeerConfig) run
against kvip's parser: the same strings give the same peers, or are refused for a stated reason.

kube-vip's expected peers carry BFD timers 300/300/3 even when BFD is off; kvip keeps timers only
for peers with BFD on (None otherwise), so "BFD off" compares as `bfd is None`."""

from __future__ import annotations

import ipaddress

import pytest

from kvip.config.bgp_values import BfdTimers, BgpPeer, parse_peers


def peer(address: str, asn: int, **fields: object) -> BgpPeer:
    return BgpPeer(ipaddress.ip_address(address), asn, **fields)  # type: ignore[arg-type]


V6 = "fd00:1111:2222:3333:c7d9:7235:6bf7:5d52"

SAME_AS_KUBE_VIP = {
    "IPv4, default port": ("192.168.0.10:65000::false,192.168.0.11:65000::false",
                           (peer("192.168.0.10", 65000), peer("192.168.0.11", 65000))),
    "IPv4, different port": ("192.168.0.10:65000::false:180,192.168.0.11:65000::false:190",
                             (peer("192.168.0.10", 65000, port=180), peer("192.168.0.11", 65000, port=190))),
    "IPv6, multi-protocol": (f"[{V6}]:65501::false::mpbgp_nexthop=auto_sourceif",
                             (peer(V6, 65501, mpbgp_nexthop="auto_sourceif"),)),
    "IPv6, multi-protocol, BFD, no multi-protocol options": (f"[{V6}]:65501::false:::true;300;300;3",
                                                             (peer(V6, 65501, bfd=BfdTimers(300, 300, 3)),)),
    "IPv6, multi-protocol, BFD": (f"[{V6}]:65501::false::mpbgp_nexthop=auto_sourceif:true;300;300;3",
                                  (peer(V6, 65501, mpbgp_nexthop="auto_sourceif", bfd=BfdTimers()),)),
    "IPv6 bracketed, with password and multihop": ("[fd00:100:64::2]:65000:secret:true",
                                                   (peer("fd00:100:64::2", 65000, password="secret",
                                                         multihop=True),)),
    "IPv6 bracketed, empty fields": ("[fd00:100:64::2]:65000::false", (peer("fd00:100:64::2", 65000),)),
}

REFUSED_AS_BY_KUBE_VIP = {
    "Completely empty config (but with the seperators)": ":::::::",
    "Malformed parameter (no value)": "1.2.3.4:65000/mpbgp_nexthop",
    "Unsupported parameter": "1.2.3.4:65000;unknown=value",
    "Malformed IPv6 (no matching bracket)": "[fd00:100:64::2:65000",
}


@pytest.mark.parametrize("case", sorted(SAME_AS_KUBE_VIP))
def test_kube_vip_peer_case_parses_to_the_same_peers(case: str) -> None:
    text, expected = SAME_AS_KUBE_VIP[case]
    assert parse_peers(text) == expected


@pytest.mark.parametrize("case", sorted(REFUSED_AS_BY_KUBE_VIP))
def test_kube_vip_refused_peer_case_is_refused(case: str) -> None:
    with pytest.raises(ValueError):
        parse_peers(REFUSED_AS_BY_KUBE_VIP[case])


def test_completely_empty_config_is_no_peers_and_bgp_mode_then_refuses_to_start() -> None:
    # kube-vip's parser errors on ""; kvip reads an empty variable as unset, and BGP mode without
    # any peer is refused when the settings are combined (kvip.config.bgp).
    from kvip.config.bgp import load_bgp_settings

    errors: list[str] = []
    assert load_bgp_settings({"bgp_peers": ""}, errors) is None
    assert errors == ["bgp_peers / bgp_peeraddress: BGP mode needs at least one peer"]


def test_unnumbered_peers_are_refused_in_one_line_naming_what_to_use_instead() -> None:
    # kube-vip case "Unnumbered": GoBGP finds the neighbour in the interface's neighbour table;
    # BIRD 2.0.12 cannot, and cannot learn the peer AS ("unnumbered:eth0" has none) either.
    with pytest.raises(ValueError) as caught:
        parse_peers("unnumbered:eth0,unnumbered:eth1:65000::true::mpbgp_nexthop=auto_sourceif")
    message = str(caught.value)
    assert "'unnumbered:eth0'" in message and "[fe80::1%eth0]:65000" in message


def test_the_link_local_peer_offered_instead_of_unnumbered_parses() -> None:
    [only] = parse_peers("[fe80::1%eth1]:65000::true")
    assert str(only.address) == "fe80::1%eth1" and only.asn == 65000 and only.multihop


def test_bfd_field_keeps_defaults_for_empty_numbers_and_off_means_no_bfd() -> None:
    assert parse_peers("10.0.0.1:65000:::::true;;;5")[0].bfd == BfdTimers(300, 300, 5)
    assert parse_peers("10.0.0.1:65000:::::false;1;1;1")[0].bfd is None
    with pytest.raises(ValueError, match="needs enable"):
        parse_peers("10.0.0.1:65000:::::true;300")


def test_an_ipv6_mpbgp_next_hop_cannot_be_written_in_a_peer_and_is_refused_not_cut() -> None:
    # Its colons split the peer into more fields: kube-vip drops the extra ones without a word.
    with pytest.raises(ValueError, match="more than the 7 fields"):
        parse_peers("10.0.0.1:65000::::mpbgp_nexthop=fixed;mpbgp_ipv6=fd00::9")
