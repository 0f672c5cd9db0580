"""The BGP speaker backend without a running BIRD: it renders what decide() gives it, keeps its files
private (the config holds session passwords) and declares its metrics through the interface."""

from __future__ import annotations

import ipaddress
import os
import stat
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry, generate_latest

from kvip.config.bgp_values import BgpPeer, BgpSettings
from kvip.core.model import Advertisement, DesiredState, RouteAttributes, ServiceKey
from kvip.dataplane.base import ApplyError
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
