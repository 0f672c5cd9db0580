"""Issue #17: what the agent keeps is bounded by what exists now, never by the history of edits. A hostile
tenant editing annotations 10,000 times must not grow the BGP backend's memos."""

from __future__ import annotations

import ipaddress
from pathlib import Path

import pytest

from kvip.config.bgp_values import BgpPeer, BgpSettings
from kvip.dataplane.bird.config import Announcement, RouteLines, route_line, routes_file
from kvip.dataplane.bird.speaker import BgpSpeaker


def announcements(pass_number: int, count: int = 20) -> frozenset[Announcement]:
    """A different attribute set each pass: what a tenant editing its community annotation produces."""
    return frozenset(Announcement(ipaddress.ip_network(f"10.96.0.{i + 1}/32"), frozenset({f"65000:{pass_number}"}))
                     for i in range(count))


def test_rendered_route_lines_hold_only_what_is_announced_now() -> None:
    lines = RouteLines()
    for number in range(2000):
        rendered = lines.render(announcements(number))
    assert len(lines) == 20
    last = announcements(1999)
    assert routes_file(last, 4, rendered) == routes_file(last, 4)  # the memo changes nothing rendered
    assert all(rendered[a] == route_line(a) for a in last)


async def test_the_speakers_read_back_memo_holds_only_the_prefixes_of_the_last_read(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    speaker = BgpSpeaker(BgpSettings(asn=65101, peers=(BgpPeer(ipaddress.ip_address("10.0.0.1"), 65000),),
                                     router_id="10.0.0.9", run_dir=str(tmp_path)))
    rib: list[str] = []

    async def command(text: str) -> list[str]:
        return rib

    async def running() -> None:
        return None

    monkeypatch.setattr(speaker.control, "command", command)
    monkeypatch.setattr(speaker, "_ensure_running", running)
    for number in range(300):  # 300 passes, each with 50 VIPs never seen before
        rib[:] = [f"10.{number // 200}.{number % 200}.{i + 1}/32  blackhole [kvip4 12:00:00.000] * (200)"
                  for i in range(50)]
        seen = await speaker.observe()
    assert len(seen) == 50
    assert len(speaker._networks) == 50  # the memo itself is what must stay bounded
    assert {str(a.prefix) for a in seen} == {line.split()[0] for line in rib}
