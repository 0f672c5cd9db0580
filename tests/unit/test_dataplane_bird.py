"""The BGP speaker backend without a running BIRD: it renders what decide() gives it, keeps its files
private (the config holds session passwords) and declares its metrics through the interface."""

from __future__ import annotations

import asyncio
import ipaddress
import os
import stat
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry, generate_latest

from kvip.config.bgp_values import BgpPeer, BgpSettings, Mpbgp
from kvip.core.model import Advertisement, DesiredState, RouteAttributes, ServiceKey
from kvip.dataplane.base import ApplyError, DataplaneError
from kvip.dataplane.bird.addresses import (
    HostAddress,
    choose_router_id,
    mpbgp_next_hop,
    read_host_addresses,
)
from kvip.dataplane.bird.config import Announcement
from kvip.dataplane.bird.process import private_dir, write_private
from kvip.dataplane.bird.speaker import BgpSpeaker

WEB = ServiceKey("default", "web")
VIP = ipaddress.ip_address("10.96.0.1")


def settings(run_dir: Path, bird_path: str = "/usr/sbin/bird") -> BgpSettings:
    return BgpSettings(asn=65101, peers=(BgpPeer(ipaddress.ip_address("10.0.0.1"), 65000, password="s3cret"),),
                       router_id="10.0.0.9", run_dir=str(run_dir), bird_path=bird_path)


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_the_speaker_renders_the_attributes_it_is_given_and_adds_no_drain_marks_itself(tmp_path: Path) -> None:
    speaker = BgpSpeaker(settings(tmp_path))
    given = RouteAttributes(frozenset({"65000:7"}), local_pref=200)
    advertisement = Advertisement(VIP, frozenset({WEB}), attributes=given, draining=True)
    assert speaker.desired(DesiredState({VIP: advertisement})) == {
        Announcement(ipaddress.ip_network("10.96.0.1/32"), frozenset({"65000:7"}), frozenset(), 200)}


def test_each_announcement_names_its_vip(tmp_path: Path) -> None:
    speaker = BgpSpeaker(settings(tmp_path))
    assert speaker.vip_of(Announcement(ipaddress.ip_network("fd00:96::1/128"))) == ipaddress.ip_address("fd00:96::1")


async def test_config_with_the_password_and_route_files_are_0600_in_a_0700_run_dir(tmp_path: Path) -> None:
    run_dir = tmp_path / "bgp"
    run_dir.mkdir(mode=0o755)
    os.chmod(run_dir, 0o755)
    speaker = BgpSpeaker(settings(run_dir, bird_path="/bin/false"))  # its config check fails: nothing starts
    old_umask = os.umask(0)  # the files must be private whatever the umask
    try:
        with pytest.raises(ApplyError):
            await speaker.apply(speaker.desired(DesiredState({VIP: Advertisement(VIP, frozenset({WEB}))})),
                                frozenset())
    finally:
        os.umask(old_umask)
        await speaker.close()
    assert 's3cret' in (run_dir / "bird.conf").read_text()
    assert mode(run_dir) == 0o700
    for name in ("bird.conf", "vips4.conf", "vips6.conf"):
        assert mode(run_dir / name) == 0o600, name


def test_rewriting_a_file_that_was_world_readable_makes_it_private(tmp_path: Path) -> None:
    target = tmp_path / "bird.conf"
    target.write_text("old")
    os.chmod(target, 0o644)
    (tmp_path / "bird.conf.tmp").write_text("stale")
    os.chmod(tmp_path / "bird.conf.tmp", 0o666)
    write_private(target, "new")
    assert target.read_text() == "new" and mode(target) == 0o600
    nested = tmp_path / "a" / "b"
    private_dir(nested)
    assert mode(nested) == 0o700


def test_session_metrics_are_declared_through_the_backend_interface(tmp_path: Path) -> None:
    speaker = BgpSpeaker(settings(tmp_path))
    registry = CollectorRegistry()
    for collector in speaker.collectors():
        registry.register(collector)
    text = generate_latest(registry).decode()
    assert 'kvip_bgp_session_up{peer="10.0.0.1:65000"} 0.0' in text
    assert "kvip_bgp_speaker_restarts_total 0.0" in text
    assert speaker.status()["sessions"] == {"10.0.0.1:65000": "unknown"}


# --- the host addresses BGP mode needs (kvip issue #23) ------------------------------------------

def host(*entries: tuple[str, str] | tuple[str, str, int]) -> tuple[HostAddress, ...]:
    return tuple(HostAddress(e[0], ipaddress.ip_address(e[1]), *e[2:]) for e in entries)


HOST = host(("lo", "127.0.0.1", 254), ("eth0", "fe80::1", 253), ("eth0", "fd00::5"), ("eth0", "192.0.2.5"),
            ("eth1", "198.51.100.7"), ("eth1", "2001:db8::7"), ("v6only", "fd00:1::1"))


def bgp(**fields: object) -> BgpSettings:
    peers = (BgpPeer(ipaddress.ip_address("192.0.2.1"), 65001),)
    return BgpSettings(asn=65000, peers=peers, **fields)  # type: ignore[arg-type]


def test_router_id_bgp_routerid_wins_then_bgp_routerinterface_as_in_kube_vip() -> None:
    assert choose_router_id(bgp(router_id="10.9.9.9", router_interface="eth1"), HOST).address == "10.9.9.9"
    chosen = choose_router_id(bgp(router_interface="eth1"), HOST)
    assert (chosen.address, chosen.kube_vip_would_refuse) == ("198.51.100.7", False)
    # kube-vip takes the interface's first address of any family; a router id can only be IPv4.
    assert choose_router_id(bgp(router_interface="eth0"), HOST).address == "192.0.2.5"
    with pytest.raises(DataplaneError, match="bgp_routerinterface: no IPv4 address on 'v6only'"):
        choose_router_id(bgp(router_interface="v6only"), HOST)


def test_router_id_unset_falls_back_to_the_source_then_the_host_and_says_kube_vip_would_not_start() -> None:
    chosen = choose_router_id(bgp(source_interface="eth1"), HOST)
    assert (chosen.address, chosen.kube_vip_would_refuse) == ("198.51.100.7", True)
    assert choose_router_id(bgp(), HOST).address == "192.0.2.5"  # loopback skipped
    with pytest.raises(DataplaneError, match="no IPv4 address on this host"):
        choose_router_id(bgp(), host(("lo", "127.0.0.1", 254), ("eth0", "fd00::5")))


def test_mp_bgp_next_hop_of_each_kube_vip_mode_is_the_other_family_never_link_local() -> None:
    v4_peer = BgpPeer(ipaddress.ip_address("192.0.2.1"), 65001, mpbgp_nexthop="auto_sourceif")
    assert mpbgp_next_hop(v4_peer, bgp(source_interface="eth0"), HOST) == (6, "fd00::5")
    v6_peer = BgpPeer(ipaddress.ip_address("fd00::1"), 65001, mpbgp_nexthop="auto_sourceip")
    by_source_ip = bgp(source_ip=ipaddress.ip_address("2001:db8::7"))
    assert mpbgp_next_hop(v6_peer, by_source_ip, HOST) == (4, "198.51.100.7")
    fixed = bgp(mpbgp=Mpbgp("fixed", ipv6=ipaddress.IPv6Address("fd00::99")))
    assert mpbgp_next_hop(BgpPeer(ipaddress.ip_address("192.0.2.1"), 65001), fixed, HOST) == (6, "fd00::99")
    assert mpbgp_next_hop(BgpPeer(ipaddress.ip_address("192.0.2.1"), 65001), bgp(), HOST) is None
    with pytest.raises(DataplaneError, match="no IPv6 next hop"):
        mpbgp_next_hop(v4_peer, bgp(source_interface="eth1", router_id="1.1.1.1"),
                       host(("eth1", "198.51.100.7"), ("eth1", "fe80::7", 253)))


async def test_without_bgp_routerid_the_config_is_rendered_on_the_running_loop(tmp_path: Path) -> None:
    """The DaemonSet case: no bgp_routerid. Reading the host's addresses with pyroute2's synchronous
    API on the agent's loop failed with "This event loop is already running" on every pass."""
    unset = BgpSettings(asn=65101, peers=(BgpPeer(ipaddress.ip_address("10.0.0.1"), 65000),), run_dir=str(tmp_path))
    config = await BgpSpeaker(unset)._render_config()
    expected = choose_router_id(unset, await asyncio.to_thread(read_host_addresses)).address
    assert f"router id {expected};" in config
