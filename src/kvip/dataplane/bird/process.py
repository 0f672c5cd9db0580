"""Supervision of the one BIRD 2 process kvip runs: its private run directory, start, stop, log.

Owns the files under `run_dir` (config, control socket, pid file) and the process itself. The run
directory is mode 0700 and every file kvip writes there 0600: the config carries BGP session
passwords, which no other local user may read. BIRD is started with PR_SET_PDEATHSIG: if the agent
dies, so does the speaker, and the peers withdraw (or keep, with graceful restart) what it announced —
a crashed agent never leaves an orphan announcing VIPs nobody reconciles.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import logging
import os
import signal
from collections.abc import Callable
from pathlib import Path

from kvip.dataplane.base import DataplaneError
from kvip.dataplane.bird.control import BirdControl, BirdControlError

log = logging.getLogger("kvip.bgp")

_PR_SET_PDEATHSIG = 1
RUN_DIR_MODE = 0o700
FILE_MODE = 0o600


def _die_with_parent() -> None:
    ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)


def private_dir(path: Path) -> None:
    """Create `path` (and parents) and make it 0700 even if it already existed with a wider mode."""
    path.mkdir(mode=RUN_DIR_MODE, parents=True, exist_ok=True)
    os.chmod(path, RUN_DIR_MODE)


def write_private(path: Path, text: str) -> None:
    """Atomic replace of `path` by a 0600 file: readers see the old or the new text, never a mix, and
    the file is never, even for an instant, readable by others (created 0600, not chmod-ed after)."""
    tmp = path.with_suffix(path.suffix + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, FILE_MODE)
    try:
        os.fchmod(fd, FILE_MODE)  # a stale tmp file may exist with another mode
        with os.fdopen(fd, "w", closefd=False) as out:
            out.write(text)
    finally:
        os.close(fd)
    os.replace(tmp, path)


class BirdProcess:
    """One BIRD daemon in `run_dir`; `on_log_line` receives each line of its log (stderr)."""

    def __init__(self, bird_path: str, run_dir: Path, *, on_log_line: Callable[[str], None],
                 start_timeout: float = 10.0) -> None:
        self.bird_path = bird_path
        self.run_dir = run_dir
        self.config_path = run_dir / "bird.conf"
        self.socket_path = run_dir / "bird.ctl"
        self.pid_path = run_dir / "bird.pid"
        self.control = BirdControl(str(self.socket_path))
        self._on_log_line = on_log_line
        self._start_timeout = start_timeout
        self._process: asyncio.subprocess.Process | None = None
        self._log_pump: asyncio.Task[None] | None = None

    @property
    def started(self) -> bool:
        return self._process is not None

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.returncode is None

    @property
    def returncode(self) -> int | None:
        return None if self._process is None else self._process.returncode

    def prepare(self) -> None:
        private_dir(self.run_dir)

    def write(self, path: Path, text: str) -> None:
        """Write one file of the run directory (config or include), privately."""
        self.prepare()
        write_private(path, text)

    async def start(self, config: str) -> None:
        """Write `config`, have BIRD check it, start BIRD and wait until its control socket answers."""
        self.prepare()
        self._kill_stale()
        write_private(self.config_path, config)
        check = await asyncio.create_subprocess_exec(self.bird_path, "-p", "-c", str(self.config_path),
                                                     stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
        out, err = await check.communicate()
        if check.returncode != 0:
            raise DataplaneError(f"BIRD rejects the generated config: {(err or out).decode().strip()}")
        await self.control.close()
        process = await asyncio.create_subprocess_exec(
            self.bird_path, "-f", "-c", str(self.config_path), "-s", str(self.socket_path), "-P", str(self.pid_path),
            stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE,
            preexec_fn=_die_with_parent,
        )
        self._process = process
        self._log_pump = asyncio.create_task(self._pump_log(process))
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self._start_timeout
        while True:
            if process.returncode is not None:
                raise DataplaneError(f"BIRD exited with {process.returncode} at start")
            try:
                await self.control.command("show status")
                break
            except BirdControlError:
                if loop.time() > deadline:
                    raise DataplaneError(f"BIRD did not answer on {self.socket_path}") from None
                await asyncio.sleep(0.02)

    @property
    def pid(self) -> int | None:
        return None if self._process is None else self._process.pid

    async def wait_exit(self, timeout: float) -> None:
        """Return when the process exits, or after `timeout` seconds, whichever is first."""
        process = self._process
        if process is None or process.returncode is not None:
            return
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(timeout):
                await process.wait()

    async def stop(self) -> None:
        await self.control.close()
        process, self._process = self._process, None
        if process is not None and process.returncode is None:
            process.terminate()  # BIRD says goodbye to its peers (Cease) before exiting
            try:
                async with asyncio.timeout(5.0):
                    await process.wait()
            except TimeoutError:
                process.kill()
                await process.wait()
        if self._log_pump is not None:
            self._log_pump.cancel()

    def _kill_stale(self) -> None:
        """A speaker left by an earlier agent whose death signal did not reach it: it is ours, stop it."""
        with contextlib.suppress(FileNotFoundError, ValueError, ProcessLookupError, PermissionError):
            pid = int(self.pid_path.read_text().strip())
            if self._process is not None and pid == self._process.pid:
                return
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
            if any(arg == str(self.config_path).encode() for arg in cmdline):
                log.warning("stopping a stale BGP speaker (pid %d) left by an earlier agent", pid)
                os.kill(pid, signal.SIGKILL)

    async def _pump_log(self, process: asyncio.subprocess.Process) -> None:
        assert process.stderr is not None
        async for raw in process.stderr:
            line = raw.decode(errors="replace").rstrip()
            log.info("bird: %s", line)
            self._on_log_line(line)
