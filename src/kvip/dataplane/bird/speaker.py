"""BGP mode: the VIPs of the desired state announced to real peers by a BIRD 2 that kvip runs.

kvip does not speak BGP itself (decision D12): it runs its own BIRD (own config, control socket
and pid file under `run_dir`, never the system service), renders the announcements as static
routes with their attributes, and reconfigures BIRD on change — sessions stay up and only the
changed prefixes are sent. Read-back is from BIRD's RIB over the control socket, so a speaker
that lost its state (restarted, reconfigured by hand) is seen and repaired like a kernel route.

BIRD is started with PR_SET_PDEATHSIG: if the agent dies, so does the speaker, and the peers
withdraw (or keep, with graceful restart) what it announced — a crashed agent never leaves an
orphan announcing VIPs nobody reconciles.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import functools
import ipaddress
import logging
import os
import re
import signal
from collections.abc import AsyncIterator, Iterable
from pathlib import Path

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

from kvip.config.bgp import BgpSettings
from kvip.core.bgp_attributes import drained
from kvip.core.model import DesiredState
from kvip.dataplane.base import ApplyError, DataplaneError
from kvip.dataplane.bird.config import (
    STATIC_V4,
    STATIC_V6,
    Announcement,
    peer_protocols,
    routes_file,
    routes_path,
    speaker_config,
)
from kvip.dataplane.bird.control import BirdControl, BirdControlError, parse_routes

log = logging.getLogger("kvip.bgp")

_PR_SET_PDEATHSIG = 1
_OUR_PROTOCOL = re.compile(rf"\b({STATIC_V4}|{STATIC_V6})\b")
_BGP_STATES = {"Idle", "Connect", "Active", "OpenSent", "OpenConfirm", "Established", "Close"}


def _die_with_parent() -> None:
    ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)


@functools.lru_cache(maxsize=65536)
def _network(prefix: str) -> ipaddress.IPv4Network | ipaddress.IPv6Network:
    """Memoized: the whole RIB is read back every pass, and parsing prefixes dominated it."""
    return ipaddress.ip_network(prefix)


def _write_atomically(path: Path, text: str) -> None:
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


class BgpSpeaker:
    name = "bgp"

    def __init__(self, settings: BgpSettings, *, start_timeout: float = 10.0) -> None:
        self.settings = settings
        self.run_dir = Path(settings.run_dir)
        self.config_path = self.run_dir / "bird.conf"
        self.socket_path = self.run_dir / "bird.ctl"
        self.pid_path = self.run_dir / "bird.pid"
        self.control = BirdControl(str(self.socket_path))
        self._start_timeout = start_timeout
        self._intended: frozenset[Announcement] = frozenset()  # what the include files say
        self._process: asyncio.subprocess.Process | None = None
        self._log_pump: asyncio.Task[None] | None = None
        self._hints: asyncio.Queue[None] = asyncio.Queue()
        self._start_lock = asyncio.Lock()
        self._closed = False
        self._own_reconfigures = 0  # "Reconfigured" log lines still expected from our own configure
        self.restarts = 0
        self.sessions: dict[str, str] = {}  # peer → BGP state ("Established", "Active", ...)
        self._peers = peer_protocols(settings)

    # -- the Dataplane interface -----------------------------------------------------------

    def desired(self, state: DesiredState) -> frozenset[Announcement]:
        items = set()
        for advertisement in state.advertisements.values():
            attributes = drained(advertisement.attributes) if advertisement.draining else advertisement.attributes
            items.add(Announcement(ipaddress.ip_network(advertisement.vip), attributes.communities,
                                   attributes.large_communities, attributes.local_pref))
        return frozenset(items)

    async def observe(self) -> frozenset[Announcement]:
        """What the speaker's RIB holds from kvip's static protocols (what it exports to peers)."""
        await self._ensure_running()
        try:
            lines = await self.control.command(
                f'show route table master4 table master6 where proto = "{STATIC_V4}" || proto = "{STATIC_V6}" all'
            )
        except BirdControlError as exc:
            raise DataplaneError(f"cannot read the BGP speaker: {exc}") from exc
        return frozenset(
            Announcement(_network(path.prefix), path.communities, path.large_communities, path.local_pref)
            for path in parse_routes(lines)
        )

    async def apply(self, add: frozenset[Announcement], remove: frozenset[Announcement]) -> None:
        intended = (self._intended - remove) | add
        try:
            self._write_routes(intended)
            self._intended = intended
            await self._ensure_running()
            self._own_reconfigures += 1
            reply = await self.control.command("configure")
        except (OSError, DataplaneError, BirdControlError) as exc:
            raise ApplyError({item: str(exc) for item in add | remove}) from exc
        if not any("Reconfigured" in line or "in progress" in line for line in reply):
            raise ApplyError({item: " ".join(reply) for item in add | remove})
        # A reconfigure does not undo `birdc disable kvip4`: our protocols must be up to announce.
        for protocol in (STATIC_V4, STATIC_V6):
            with contextlib.suppress(BirdControlError):
                await self.control.command(f"enable {protocol}")

    async def changes(self) -> AsyncIterator[None]:
        while True:
            await self._hints.get()
            yield None

    async def maintain(self) -> None:
        """Keep the speaker alive (restart it at once if it dies) and its session states fresh."""
        while True:
            process = self._process
            if process is not None and process.returncode is None:
                with contextlib.suppress(asyncio.TimeoutError):
                    await asyncio.wait_for(process.wait(), timeout=1.0)
            elif process is None:
                await asyncio.sleep(0.2)  # not started yet: the first reconcile starts it
            if self._process is not None and self._process.returncode is not None and not self._closed:
                self.restarts += 1
                log.warning("BGP speaker (bird) exited with %s; restarting and re-announcing %d prefix(es)",
                            self._process.returncode, len(self._intended))
                try:
                    await self._start()
                except DataplaneError as exc:
                    log.error("BGP speaker restart failed: %s", exc)
                    await asyncio.sleep(1.0)
                self._hints.put_nowait(None)
            with contextlib.suppress(BirdControlError):
                if self.running:
                    await self._poll_sessions()

    async def close(self) -> None:
        self._closed = True
        await self.control.close()
        process, self._process = self._process, None
        if process is not None and process.returncode is None:
            process.terminate()  # BIRD says goodbye to its peers (Cease) before exiting
            try:
                await asyncio.wait_for(process.wait(), 5.0)
            except asyncio.TimeoutError:
                process.kill()
                await process.wait()
        if self._log_pump is not None:
            self._log_pump.cancel()

    # -- the speaker process -----------------------------------------------------------------

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.returncode is None

    async def _ensure_running(self) -> None:
        if self.running:
            return
        async with self._start_lock:
            if not self.running:
                await self._start()

    def _write_routes(self, announcements: frozenset[Announcement]) -> None:
        self.run_dir.mkdir(parents=True, exist_ok=True)
        for version in (4, 6):
            _write_atomically(routes_path(self.run_dir, version), routes_file(announcements, version))

    async def _start(self) -> None:
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self._kill_stale()
        config = speaker_config(self.settings, router_id=self.router_id(), run_dir=self.run_dir,
                                local_addresses=self.local_addresses())
        _write_atomically(self.config_path, config)
        self._write_routes(self._intended)
        bird = self.settings.bird_path
        check = await asyncio.create_subprocess_exec(bird, "-p", "-c", str(self.config_path),
                                                     stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
        out, err = await check.communicate()
        if check.returncode != 0:
            raise DataplaneError(f"BIRD rejects the generated config: {(err or out).decode().strip()}")
        await self.control.close()
        self._process = await asyncio.create_subprocess_exec(
            bird, "-f", "-c", str(self.config_path), "-s", str(self.socket_path), "-P", str(self.pid_path),
            stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE,
            preexec_fn=_die_with_parent,
        )
        self._log_pump = asyncio.create_task(self._pump_log(self._process))
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self._start_timeout
        while True:
            if self._process.returncode is not None:
                raise DataplaneError(f"BIRD exited with {self._process.returncode} at start")
            try:
                await self.control.command("show status")
                break
            except BirdControlError:
                if loop.time() > deadline:
                    raise DataplaneError(f"BIRD did not answer on {self.socket_path}") from None
                await asyncio.sleep(0.02)
        log.info("BGP speaker up (bird pid %s, AS %d, %d peer(s))", self._process.pid, self.settings.asn,
                 len(self.settings.peers))

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
        """BIRD's log into ours, and the speaker's netlink: a reconfiguration kvip did not ask for, or a
        state change of kvip's static protocols (`birdc disable kvip4`), wakes the reconciler at once."""
        assert process.stderr is not None
        async for raw in process.stderr:
            line = raw.decode(errors="replace").rstrip()
            log.info("bird: %s", line)
            if line.endswith("Reconfigured"):
                if self._own_reconfigures > 0:
                    self._own_reconfigures -= 1
                else:
                    self._hints.put_nowait(None)
            elif _OUR_PROTOCOL.search(line):  # "Disabling protocol kvip4", "kvip6: Shutting down", ...
                self._hints.put_nowait(None)

    async def _poll_sessions(self) -> None:
        states: dict[str, str] = {}
        for line in await self.control.command("show protocols"):
            fields = line.split()
            if len(fields) >= 4 and fields[0] in self._peers and fields[1] == "BGP":
                known = [f for f in fields[4:] if f in _BGP_STATES]
                states[str(self._peers[fields[0]])] = known[0] if known else fields[3]
        for peer, state in states.items():
            if self.sessions.get(peer) != state:
                log.info("BGP session to %s: %s", peer, state)
        self.sessions = states

    # -- addresses -------------------------------------------------------------------------

    def local_addresses(self) -> dict[int, str]:
        """Source address per IP version: bgp_sourceip, else the first address of bgp_sourceif."""
        found: dict[int, str] = {}
        if self.settings.source_ip is not None:
            found[self.settings.source_ip.version] = str(self.settings.source_ip)
        if self.settings.source_interface:
            for address in interface_addresses(self.settings.source_interface):
                found.setdefault(address.version, str(address))
        return found

    def router_id(self) -> str:
        if self.settings.router_id:
            return self.settings.router_id
        v4 = self.local_addresses().get(4)
        if v4:
            return v4
        for address in interface_addresses(None):
            if address.version == 4 and not address.is_loopback:
                return str(address)
        raise DataplaneError("no bgp_routerid and no IPv4 address on this host to take one from")

    def collector(self) -> BgpCollector:
        return BgpCollector(self)

    def status(self) -> dict[str, object]:
        return {"speakerRunning": self.running, "speakerRestarts": self.restarts,
                "sessions": {str(peer): self.sessions.get(str(peer), "unknown") for peer in self._peers.values()},
                "announced": len(self._intended), "runDir": str(self.run_dir)}


def interface_addresses(interface: str | None) -> list[ipaddress.IPv4Address | ipaddress.IPv6Address]:
    """Global addresses of one interface (or of all), in the kernel's order."""
    from pyroute2 import IPRoute

    with IPRoute() as ipr:
        index = None
        if interface is not None:
            links = ipr.link_lookup(ifname=interface)
            if not links:
                raise DataplaneError(f"bgp_sourceif: no interface {interface!r}")
            index = links[0]
        found = []
        for message in ipr.get_addr():
            if index is not None and message["index"] != index:
                continue
            if message["scope"] != 0:  # host or link scope: not usable to reach a peer
                continue
            found.append(ipaddress.ip_address(message.get_attr("IFA_ADDRESS")))
        return found


class BgpCollector:
    """Session states and speaker restarts, read at scrape time."""

    def __init__(self, speaker: BgpSpeaker) -> None:
        self._speaker = speaker

    def collect(self) -> Iterable[GaugeMetricFamily | CounterMetricFamily]:
        status = self._speaker.status()
        up = GaugeMetricFamily("kvip_bgp_session_up", "1 when the BGP session to the peer is Established",
                               labels=["peer"])
        for peer, state in status["sessions"].items():  # type: ignore[union-attr]
            up.add_metric([peer], 1.0 if state == "Established" else 0.0)
        restarts = CounterMetricFamily("kvip_bgp_speaker_restarts", "Times the BGP speaker died and was restarted")
        restarts.add_metric([], status["speakerRestarts"])  # type: ignore[arg-type]
        yield up
        yield restarts
