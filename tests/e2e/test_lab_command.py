"""`kvip lab --scenario all --no-tty` plays the whole story and exits 0 only when every step converged."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.root


def test_lab_plays_the_whole_story_and_every_step_converges(tmp_path: Path) -> None:
    run = subprocess.run(
        [sys.executable, "-m", "kvip.cli", "lab", "--scenario", "all", "--no-tty", "--workdir", str(tmp_path)],
        capture_output=True, text=True, timeout=240,
    )
    assert run.returncode == 0, run.stdout + run.stderr
    assert "5/5 steps converged" in run.stdout
    assert run.stdout.count("converged: kernel routes in") == 5
