"""No image can be built here, so the Dockerfile's install steps run in a fresh venv instead:
the pinned requirements resolve and the installed `kvip` starts."""

from __future__ import annotations

import re
import shlex
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_dockerfile_pip_steps_install_a_working_kvip_in_a_fresh_venv(tmp_path: Path) -> None:
    dockerfile = (ROOT / "Dockerfile").read_text()
    run = next(line for line in dockerfile.splitlines() if line.startswith("RUN pip install"))
    steps = [shlex.split(part.strip()) for part in run[len("RUN "):].split("&&")]
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    for argv in steps:
        assert argv[:2] == ["pip", "install"], argv
        subprocess.run([str(venv / "bin" / "pip"), *argv[1:]], cwd=ROOT, check=True, capture_output=True,
                       timeout=600)
    shown = subprocess.run([str(venv / "bin" / "kvip"), "manifest", "daemonset"], capture_output=True, text=True,
                           check=True).stdout
    assert "kind: DaemonSet" in shown
    pins = (ROOT / "requirements.lock").read_text()
    assert all(re.fullmatch(r"[a-z0-9-]+==[\w.]+", line) for line in pins.splitlines() if line and line[0] != "#")
