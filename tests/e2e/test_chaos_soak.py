"""The short soak CI runs (the 10-minute one is `python3 bench/chaos.py`): ≥ 100 seeded faults of every
kind, each followed by a quiet period that must converge — judged by the independent checker. The first soak
also runs two egress Services (their SNAT rules checked, nftables tables flushed), the second a DHCP Service
(its dnsmasq restarted). Every 5th (15th) settled step also checks each Service's kvip.io/advertised-by against
the nodes holding its route; bench/chaos.py checks each step (0.5 s a step on average, too much for CI)."""

from __future__ import annotations

from pathlib import Path

import pytest

from kvip.lab.chaos import soak

pytestmark = pytest.mark.root


async def test_hundred_random_faults_converge_every_time_and_foreign_routes_survive(tmp_path: Path) -> None:
    report = await soak(tmp_path, seed=20261125, faults=100, bound=10.0, egress=True, advertised_by=5)
    summary = report.summary()
    assert summary["faults_total"] == 100
    assert summary["violations"] == []
    assert summary["foreign_routes_touched"] == 0
    assert len([k for k in summary["by_kind"] if k != "startup"]) >= 8  # most kinds were exercised
    assert {"nft-flush", "advertised-by"} <= set(summary["by_kind"])


async def test_per_service_election_soak_keeps_each_vip_on_exactly_its_eligible_lease_holder(tmp_path: Path) -> None:
    report = await soak(tmp_path, seed=1775, faults=60, bound=10.0, election="service", dhcp=True, advertised_by=15)
    summary = report.summary()
    assert summary["violations"] == []
    assert summary["foreign_routes_touched"] == 0
    assert {"dhcp-restart", "agent-kill", "advertised-by"} <= set(summary["by_kind"])


async def test_bgp_mode_soak_router_rib_follows_the_cluster_and_nothing_stays_draining(tmp_path: Path) -> None:
    # Speakers killed or emptied by hand, the router restarted, agents killed: the router's RIB must equal
    # what the cluster says at every quiet point, with no GRACEFUL_SHUTDOWN left behind.
    report = await soak(tmp_path, seed=6, faults=50, bound=10.0, mode="bgp")
    summary = report.summary()
    assert summary["violations"] == []
    assert summary["foreign_routes_touched"] == 0
    assert {"route-tamper", "bird-restart", "agent-kill"} <= set(summary["by_kind"])
