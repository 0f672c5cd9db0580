"""BGP mode's pure parts: annotations → attributes, kube-vip's BGP variables, the speaker's config
(checked by BIRD's own parser), and reading BIRD's route listing back."""

from __future__ import annotations

import ipaddress
import subprocess
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from kvip.config.agent import ConfigError, load_config
from kvip.config.bgp import BgpPeer, BgpSettings, load_bgp_settings, parse_peer
from kvip.core.bgp_attributes import (
    GRACEFUL_SHUTDOWN,
    drained,
    parse_community,
    service_attributes,
)
from kvip.core.decide import DecideConfig, decide
from kvip.core.model import (
    ClusterSnapshot,
    ElectionMode,
    EndpointView,
    NodeView,
    ServiceKey,
    ServiceView,
)
from kvip.dataplane.bird.config import (
    Announcement,
    route_line,
    routes_file,
    speaker_config,
)
from kvip.dataplane.bird.control import parse_routes, reply_text

WEB = ServiceKey("default", "web")
API = ServiceKey("default", "api")


def service(key: ServiceKey, vip: str, **annotations: str) -> ServiceView:
    return ServiceView(key, load_balancer_ip=vip, annotations=annotations)


def snapshot(*services: ServiceView, node: NodeView | None = None) -> ClusterSnapshot:
    return ClusterSnapshot(
        services={s.key: s for s in services},
        endpoints={s.key: (EndpointView(("10.244.0.5",), node_name="n1"),) for s in services},
        node=node or NodeView("n1"),
    )


BGP = DecideConfig(node_name="n1", bgp_attributes=True, drain_on_cordon=True)


def test_annotations_become_normalized_attributes() -> None:
    attributes, problems = service_attributes(service(WEB, "10.96.0.1", **{
        "kvip.io/bgp-communities": "65000:100,no-export  graceful-shutdown",
        "kvip.io/bgp-large-communities": "65000:1:2",
        "kvip.io/bgp-local-pref": "200",
    }))
    assert problems == ()
    assert attributes.communities == {"65000:100", "65535:65281", GRACEFUL_SHUTDOWN}
    assert attributes.large_communities == {"65000:1:2"}
    assert attributes.local_pref == 200


def test_a_malformed_community_is_reported_and_the_rest_still_announced() -> None:
    state = decide(BGP, snapshot(service(WEB, "10.96.0.1", **{
        "kvip.io/bgp-communities": "65000:100, 70000:1, nonsense",
        "kvip.io/bgp-local-pref": "-3",
    })))
    advertisement = state.advertisements[ipaddress.ip_address("10.96.0.1")]
    assert advertisement.attributes.communities == {"65000:100"}
    assert advertisement.attributes.local_pref is None
    reasons = [p.message for p in state.problems]
    assert any("70000:1" in m for m in reasons) and any("nonsense" in m for m in reasons)
    assert any("-3" in m for m in reasons)


def test_shared_vip_unions_communities_and_reports_conflicting_local_pref() -> None:
    state = decide(BGP, snapshot(
        service(WEB, "10.96.0.1", **{"kvip.io/bgp-communities": "65000:1", "kvip.io/bgp-local-pref": "300"}),
        service(API, "10.96.0.1", **{"kvip.io/bgp-communities": "65000:2", "kvip.io/bgp-local-pref": "100"}),
    ))
    advertisement = state.advertisements[ipaddress.ip_address("10.96.0.1")]
    assert advertisement.attributes.communities == {"65000:1", "65000:2"}
    assert advertisement.attributes.local_pref == 100
    assert {p.service for p in state.problems if p.reason == "BGPAttributeConflict"} == {WEB, API}


def test_attribute_annotations_mean_nothing_outside_bgp_mode() -> None:
    state = decide(DecideConfig(node_name="n1"), snapshot(service(WEB, "10.96.0.1", **{
        "kvip.io/bgp-communities": "nonsense"})))
    assert state.problems == ()
    assert state.advertisements[ipaddress.ip_address("10.96.0.1")].attributes.communities == frozenset()


def test_cordoned_node_keeps_announcing_marked_draining_inside_the_window_then_withdraws() -> None:
    cordoned = snapshot(service(WEB, "10.96.0.1"), node=NodeView("n1", unschedulable=True))
    inside = decide(BGP, cordoned, draining=True)
    assert [a.draining for a in inside.advertisements.values()] == [True]
    assert decide(BGP, cordoned, draining=False).advertisements == {}


def test_decide_marks_a_draining_advertisement_with_rfc8326_attributes_over_the_services_own() -> None:
    asked = service(WEB, "10.96.0.1", **{"kvip.io/bgp-communities": "65000:7", "kvip.io/bgp-local-pref": "200"})
    [draining] = decide(BGP, snapshot(asked), draining=True).advertisements.values()
    assert draining.attributes.communities == {"65000:7", GRACEFUL_SHUTDOWN}
    assert draining.attributes.local_pref == 0
    [normal] = decide(BGP, snapshot(asked)).advertisements.values()
    assert normal.attributes.communities == {"65000:7"} and normal.attributes.local_pref == 200


def test_drained_attributes_carry_graceful_shutdown_and_local_pref_zero() -> None:
    attributes, _ = service_attributes(service(WEB, "10.96.0.1", **{"kvip.io/bgp-communities": "65000:7"}))
    assert drained(attributes).communities == {"65000:7", GRACEFUL_SHUTDOWN}
    assert drained(attributes).local_pref == 0


@given(st.integers(0, 65535), st.integers(0, 65535))
def test_any_numeric_community_round_trips(high: int, low: int) -> None:
    assert parse_community(f"{high}:{low}") == f"{high}:{low}"


@pytest.mark.parametrize("raw", ["65536:1", "1:65536", "1", "a:b", "1:2:3", ""])
def test_invalid_communities_are_refused(raw: str) -> None:
    with pytest.raises(ValueError):
        parse_community(raw)


# --- kube-vip's variables ---------------------------------------------------------------------

def test_kube_vip_peer_strings_parse_like_kube_vip() -> None:
    assert parse_peer("10.0.0.1:65000") == BgpPeer(ipaddress.ip_address("10.0.0.1"), 65000)
    assert parse_peer("10.0.0.1:65000:secret:true") == BgpPeer(ipaddress.ip_address("10.0.0.1"), 65000,
                                                               "secret", True)
    assert parse_peer("[fd00::1]:65001::false:1179") == BgpPeer(ipaddress.ip_address("fd00::1"), 65001, "",
                                                                False, 1179)


def test_single_peer_variables_and_peer_list_combine() -> None:
    errors: list[str] = []
    settings = load_bgp_settings({"bgp_as": "65101", "bgp_peeraddress": "10.0.0.1", "bgp_peeras": "65000",
                                  "bgp_peerpass": "pw", "bgp_peers": "10.0.0.2:65002"}, errors)
    assert errors == [] and settings is not None
    assert [(str(p.address), p.asn, p.password) for p in settings.peers] == [("10.0.0.1", 65000, "pw"),
                                                                              ("10.0.0.2", 65002, "")]


def test_every_bgp_problem_is_reported_at_once() -> None:
    with pytest.raises(ConfigError) as caught:
        load_config({"vip_nodename": "n1", "bgp_enable": "true", "bgp_as": "x", "bgp_peers": "nope:1,10.0.0.1:0",
                     "bgp_routerid": "fd00::1", "kvip_bgp_graceful_restart": "9999"})
    message = str(caught.value)
    for expected in ("bgp_as", "'nope'", "outside 1..4294967295", "bgp_routerid", "kvip_bgp_graceful_restart"):
        assert expected in message


def test_a_password_bird_could_not_quote_is_refused() -> None:
    with pytest.raises(ConfigError, match="double quote"):
        load_config({"vip_nodename": "n1", "bgp_enable": "true", "bgp_as": "1",
                     "bgp_peers": '10.0.0.1:2:pa"ss'})


def test_bgp_mode_conflicts_with_routing_table_mode() -> None:
    with pytest.raises(ConfigError, match="conflicting modes"):
        load_config({"vip_nodename": "n1", "bgp_enable": "true", "vip_routingtable": "true", "bgp_as": "1",
                     "bgp_peers": "10.0.0.1:2"})


# --- the speaker's config, as BIRD itself reads it ---------------------------------------------

def full_settings(tmp_path: Path) -> BgpSettings:
    return BgpSettings(
        asn=65101,
        peers=(BgpPeer(ipaddress.ip_address("10.0.0.1"), 65000, "pw", True),
               BgpPeer(ipaddress.ip_address("fd00::1"), 65101, port=1179)),
        source_interface="lo", hold_time=9, keepalive_time=3, bfd=True, graceful_restart=120,
        run_dir=str(tmp_path),
    )


def test_generated_speaker_config_is_accepted_by_bird(tmp_path: Path) -> None:
    settings = full_settings(tmp_path)
    announcements = frozenset({
        Announcement(ipaddress.ip_network("10.96.0.1/32"), frozenset({"65535:0", "65000:7"}),
                     frozenset({"65000:1:2"}), 0),
        Announcement(ipaddress.ip_network("fd00:96::1/128")),
    })
    for version in (4, 6):
        (tmp_path / f"vips{version}.conf").write_text(routes_file(announcements, version))
    config = speaker_config(settings, router_id="10.0.0.9", run_dir=tmp_path,
                            local_addresses={4: "10.0.0.9", 6: "fd00::9"})
    (tmp_path / "bird.conf").write_text(config)
    check = subprocess.run(["bird", "-p", "-c", str(tmp_path / "bird.conf")], capture_output=True, text=True,
                           check=False)
    assert check.returncode == 0, check.stderr
    for expected in ("bfd on;", "graceful restart time 120;", "multihop;", 'password "pw";', "port 1179",
                     "local 10.0.0.9 as 65101;", "local fd00::9 as 65101;", "hold time 9;"):
        assert expected in config


def test_route_line_carries_every_attribute() -> None:
    line = route_line(Announcement(ipaddress.ip_network("10.96.0.1/32"), frozenset({"65535:0"}),
                                   frozenset({"1:2:3"}), 50))
    assert line == ("route 10.96.0.1/32 blackhole { bgp_community.add((65535,0)); "
                    "bgp_large_community.add((1,2,3)); bgp_local_pref = 50; };")


BIRD_ROUTES = """\
1007-Table master4:
1007-10.96.0.10/32       unicast [node0 06:01:02.123] * (100) [AS65101i]
1008-\tType: BGP univ
1012-\tBGP.origin: IGP
 \tBGP.as_path: 65101
 \tBGP.next_hop: 10.250.0.10
 \tBGP.local_pref: 100
 \tBGP.community: (65000,100) (65535,0)
 \tBGP.large_community: (65000, 1, 2)
1007-                     unicast [node1 06:01:02.456] (100) [AS65101i]
1008-\tType: BGP univ
1012-\tBGP.next_hop: 10.250.0.11
0000 \n"""


def test_route_listing_parses_every_path_with_its_attributes() -> None:
    paths = parse_routes(reply_text(BIRD_ROUTES.splitlines()))
    assert [(p.prefix, p.protocol, p.next_hop, p.primary) for p in paths] == [
        ("10.96.0.10/32", "node0", "10.250.0.10", True), ("10.96.0.10/32", "node1", "10.250.0.11", False)]
    assert paths[0].communities == {"65000:100", "65535:0"}
    assert paths[0].large_communities == {"65000:1:2"}
    assert paths[0].local_pref == 100 and paths[1].local_pref is None


def test_a_vip_of_a_family_no_peer_carries_is_reported_not_silently_advertised() -> None:
    config = DecideConfig(node_name="n1", bgp_attributes=True, address_families=frozenset({4}))
    dual = ServiceView(WEB, annotations={"kube-vip.io/loadbalancerIPs": "10.96.0.1,fd00:96::1"})
    state = decide(config, snapshot(dual))
    assert state.vips == {ipaddress.ip_address("10.96.0.1")}
    [problem] = [p for p in state.problems if p.reason == "NoPeerForFamily"]
    assert "fd00:96::1" in problem.message and "no IPv6 BGP peer" in problem.message


def test_bgp_config_limits_families_to_those_of_its_peers() -> None:
    config = load_config({"vip_nodename": "n1", "bgp_enable": "true", "bgp_as": "65101",
                          "bgp_peers": "10.0.0.1:65000"})
    assert config.decide_config().address_families == {4}


# --- kube-vip's BGP settings as kube-vip reads them (kvip issue #23) -------------------------------

BGP_ENV = {"vip_nodename": "n1", "bgp_enable": "true", "bgp_peers": "10.0.0.1:65000"}


def test_bgp_as_unset_is_kube_vips_default_65000() -> None:
    config = load_config(BGP_ENV)
    assert config.bgp is not None and config.bgp.asn == 65000


def test_kube_vips_timer_names_are_read_and_kvips_old_names_still_work() -> None:
    config = load_config({**BGP_ENV, "bgp_hold_time": "9", "bgp_keepalive_interval": "3"})
    assert config.bgp is not None and (config.bgp.hold_time, config.bgp.keepalive_time) == (9, 3)
    old = load_config({**BGP_ENV, "bgp_holdtime": "12", "bgp_keepalivetime": "4"})
    assert old.bgp is not None and (old.bgp.hold_time, old.bgp.keepalive_time) == (12, 4)
    with pytest.raises(ConfigError, match="bgp_hold_time .* bgp_keepalive_interval"):
        load_config({**BGP_ENV, "bgp_hold_time": "3", "bgp_keepalive_interval": "5"})


def test_vip_leaderelection_in_bgp_mode_announces_from_every_node_as_kube_vip_does() -> None:
    config = load_config({**BGP_ENV, "vip_leaderelection": "true"})
    assert config.election is ElectionMode.NONE
    assert config.bgp is not None and any("vip_leaderelection" in note for note in config.bgp.notes)
    per_service = load_config({**BGP_ENV, "vip_leaderelection": "true", "svc_election": "true"})
    assert per_service.election is ElectionMode.SERVICE and per_service.bgp is not None
    assert per_service.bgp.notes == ()
    assert load_config({**BGP_ENV, "vip_arp": "false"}).election is ElectionMode.NONE


def test_kube_vip_bgp_settings_kvip_does_not_do_are_refused_one_line_each() -> None:
    with pytest.raises(ConfigError) as caught:
        load_config({**BGP_ENV, "annotation": "metal.equinix.com", "bgp_attach_ip_to_interface": "true",
                     "bgp_peers": "10.0.0.1:65000::::mpbgp_nexthop=auto_sourceip,10.0.0.2:65000::::"
                                  "mpbgp_nexthop=fixed"})
    lines = str(caught.value).splitlines()
    assert len(lines) == 4
    for expected in ("annotation:", "bgp_attach_ip_to_interface=true", "auto_sourceip needs bgp_sourceip",
                     "fixed needs mpbgp_ipv4 or mpbgp_ipv6"):
        assert sum(expected in line for line in lines) == 1, (expected, lines)


def test_an_mp_bgp_peer_carries_both_families_to_decide() -> None:
    config = load_config({**BGP_ENV, "mpbgp_nexthop": "fixed", "mpbgp_ipv6": "fd00::9"})
    assert config.decide_config().address_families == {4, 6}
    assert config.bgp is not None and config.bgp.peer_mpbgp(config.bgp.peers[0]) is not None


def test_mp_bgp_and_per_peer_bfd_config_is_accepted_by_bird(tmp_path: Path) -> None:
    settings = BgpSettings(asn=65101, run_dir=str(tmp_path), peers=(
        parse_peer("10.0.0.1:65000::::mpbgp_nexthop=fixed:true;300000;300000;3"),
        parse_peer("[fd00::1]:65000::::mpbgp_nexthop=fixed;mpbgp_ipv4=10.0.0.9"),
    ))
    for version in (4, 6):
        (tmp_path / f"vips{version}.conf").write_text(routes_file(frozenset(), version))
    config = speaker_config(settings, router_id="10.0.0.9", run_dir=tmp_path,
                            mpbgp={settings.peers[0]: (6, "fd00::9"), settings.peers[1]: (4, "10.0.0.9")})
    (tmp_path / "bird.conf").write_text(config)
    check = subprocess.run(["bird", "-p", "-c", str(tmp_path / "bird.conf")], capture_output=True, text=True,
                           check=False)
    assert check.returncode == 0, check.stderr
    peer0, peer1 = config.split("protocol bgp peer0")[1].split("protocol bgp peer1")
    assert 'ipv6 { import none; export where proto = "kvip6"; next hop address fd00::9; };' in peer0
    assert "bfd { min rx interval 300000 us; min tx interval 300000 us; multiplier 3; };" in peer0
    assert "protocol bfd kvip_bfd" in config
    assert 'ipv4 { import none; export where proto = "kvip4"; next hop address 10.0.0.9; };' in peer1
    assert "bfd" not in peer1
