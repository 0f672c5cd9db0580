"""`kvip lab --scenario all --no-tty` plays the whole story and exits 0 only when every step converged."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.root


def run_lab(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "kvip", "lab", *args, "--no-tty", "--workdir", str(tmp_path)],
                          capture_output=True, text=True, timeout=240)


def test_lab_plays_the_whole_story_and_every_step_converges(tmp_path: Path) -> None:
    run = run_lab(tmp_path, "--scenario", "all")
    assert run.returncode == 0, run.stdout + run.stderr
    assert "5/5 steps converged" in run.stdout
    assert run.stdout.count("converged: kernel routes in") == 5


def test_lab_failover_story_in_arp_mode_with_global_election_converges(tmp_path: Path) -> None:
    run = run_lab(tmp_path, "--mode", "arp", "--election", "global")
    assert run.returncode == 0, run.stdout + run.stderr
    assert "4/4 steps converged" in run.stdout


def test_lab_in_bgp_mode_plays_the_story_with_speaker_kill_and_cordon_drain(tmp_path: Path) -> None:
    run = run_lab(tmp_path, "--mode", "bgp")
    assert run.returncode == 0, run.stdout + run.stderr
    assert "6/6 steps converged" in run.stdout
    assert "speaker is killed" in run.stdout and "cordoned" in run.stdout
    assert "restarting" in (tmp_path / "agent-node-b.log").read_text()


def test_lab_control_plane_story_moves_the_vip_three_times_with_measured_client_downtime(tmp_path: Path) -> None:
    run = run_lab(tmp_path, "--controlplane", "--mode", "arp")
    assert run.returncode == 0, run.stdout + run.stderr
    assert "6/6 checks passed" in run.stdout
    assert run.stdout.count("client-visible downtime") == 5
    assert "dropped the VIP by itself" in run.stdout and "at most 1 node(s) held the VIP" in run.stdout


def test_lab_refuses_combinations_it_has_no_story_for(tmp_path: Path) -> None:
    run = subprocess.run([sys.executable, "-m", "kvip", "lab", "--mode", "arp", "--no-tty"],
                         capture_output=True, text=True, timeout=60)
    assert run.returncode == 2 and "ARP mode needs --election" in run.stderr
