"""BGP mode: the VIPs of the desired state announced to real peers by a BIRD 2 that kvip runs.

kvip does not speak BGP itself (decision D12): it runs its own BIRD (`bird.process`, never the system
service), renders the announcements as static routes with the attributes `decide()` gave them
(the RFC 8326 drain marks included: this backend decides nothing), and reconfigures BIRD on change —
sessions stay up and only the changed prefixes are sent. Read-back is from BIRD's RIB over the
control socket, so a speaker that lost its state (restarted, reconfigured by hand) is seen and
repaired like a kernel route.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import logging
import re
from collections.abc import AsyncIterator, Mapping, Sequence
from pathlib import Path

from prometheus_client.registry import Collector

from kvip.config.bgp_values import BgpPeer, BgpSettings
from kvip.core.model import DesiredState, IPAddress
from kvip.dataplane.base import ApplyError, DataplaneBase, DataplaneError
from kvip.dataplane.bird.addresses import (
    choose_router_id,
    mpbgp_next_hop,
    read_host_addresses,
    source_addresses,
)
from kvip.dataplane.bird.config import (
    STATIC_V4,
    STATIC_V6,
    Announcement,
    RouteLines,
    peer_protocols,
    routes_file,
    routes_path,
    speaker_config,
)
from kvip.dataplane.bird.control import BirdControlError, parse_routes
from kvip.dataplane.bird.metrics import BgpCollector, SpeakerState
from kvip.dataplane.bird.process import BirdProcess

log = logging.getLogger("kvip.bgp")

_OUR_PROTOCOL = re.compile(rf"\b({STATIC_V4}|{STATIC_V6})\b")
_BGP_STATES = {"Idle", "Connect", "Active", "OpenSent", "OpenConfirm", "Established", "Close"}


class BgpSpeaker(DataplaneBase):
    name = "bgp"

    def __init__(self, settings: BgpSettings, *, start_timeout: float = 10.0) -> None:
        self.settings = settings
        self.run_dir = Path(settings.run_dir)
        self.process = BirdProcess(settings.bird_path, self.run_dir, on_log_line=self._on_log_line,
                                   start_timeout=start_timeout)
        self.control = self.process.control
        self._intended: frozenset[Announcement] = frozenset()  # what the include files say
        self._hints: asyncio.Queue[None] = asyncio.Queue()
        self._start_lock = asyncio.Lock()
        self._closed = False
        self._own_reconfigures = 0  # "Reconfigured" log lines still expected from our own configure
        self.restarts = 0
        self.sessions: dict[str, str] = {}  # peer → BGP state ("Established", "Active", ...)
        self._peers = peer_protocols(settings)
        self._router_id: str | None = None  # the one the running speaker was started with
        self._other_family: dict[BgpPeer, int] = {}  # peer → the other IP version it carries (MP-BGP)
        for note in settings.notes:  # where kvip follows kube-vip rather than the setting's name
            log.info("%s", note)
        self._route_lines = RouteLines()
        # Parsed prefixes of the last read-back only: the whole RIB is read every pass and parsing
        # prefixes dominated it, but a memo keyed by history would grow with every VIP ever seen.
        self._networks: dict[str, ipaddress.IPv4Network | ipaddress.IPv6Network] = {}

    # -- the Dataplane interface -----------------------------------------------------------

    def desired(self, state: DesiredState) -> frozenset[Announcement]:
        return frozenset(
            Announcement(ipaddress.ip_network(ad.vip), ad.attributes.communities, ad.attributes.large_communities,
                         ad.attributes.local_pref)
            for ad in state.advertisements.values()
        )

    def vip_of(self, item: Announcement) -> IPAddress:
        return item.prefix.network_address

    async def observe(self) -> frozenset[Announcement]:
        """What the speaker's RIB holds from kvip's static protocols (what it exports to peers)."""
        await self._ensure_running()
        try:
            lines = await self.control.command(
                f'show route table master4 table master6 where proto = "{STATIC_V4}" || proto = "{STATIC_V6}" all'
            )
        except BirdControlError as exc:
            raise DataplaneError(f"cannot read the BGP speaker: {exc}") from exc
        known, self._networks = self._networks, {}
        found = set()
        for path in parse_routes(lines):
            network = self._networks.get(path.prefix) or known.get(path.prefix) or ipaddress.ip_network(path.prefix)
            self._networks[path.prefix] = network
            found.add(Announcement(network, path.communities, path.large_communities, path.local_pref))
        return frozenset(found)

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
            if self.process.started:
                await self.process.wait_exit(timeout=1.0)
            else:
                await asyncio.sleep(0.2)  # not started yet: the first reconcile starts it
            if self.process.started and not self.process.running and not self._closed:
                self.restarts += 1
                log.warning("BGP speaker (bird) exited with %s; restarting and re-announcing %d prefix(es)",
                            self.process.returncode, len(self._intended))
                try:
                    await self._start()
                except DataplaneError as exc:
                    log.error("BGP speaker restart failed: %s", exc)
                    await asyncio.sleep(1.0)
                self._hints.put_nowait(None)
            with contextlib.suppress(BirdControlError):
                if self.running:
                    await self._poll_sessions()

    def state(self) -> SpeakerState:
        return SpeakerState(self.running, self.restarts,
                            {str(peer): self.sessions.get(str(peer), "unknown") for peer in self._peers.values()},
                            len(self._intended))

    def exported_peers(self) -> dict[str, frozenset[int]]:
        """Peers with an Established session → the IP versions of VIPs exported to them (every VIP of
        a version the session carries: its own, plus the other one over MP-BGP), for the heartbeat."""
        return {str(peer.address): frozenset({peer.address.version, self._other_family.get(peer, peer.address.version)})
                for peer in self._peers.values() if self.sessions.get(str(peer)) == "Established"}

    def status(self) -> Mapping[str, object]:
        state = self.state()
        return {"speakerRunning": state.running, "speakerRestarts": state.restarts, "sessions": dict(state.sessions),
                "announced": state.announced, "runDir": str(self.run_dir)}

    def collectors(self) -> Sequence[Collector]:
        return (BgpCollector(self.state),)

    async def close(self) -> None:
        self._closed = True
        await self.process.stop()

    # -- the speaker process -----------------------------------------------------------------

    @property
    def running(self) -> bool:
        return self.process.running

    async def _ensure_running(self) -> None:
        if self.running:
            return
        async with self._start_lock:
            if not self.running:
                await self._start()

    def _write_routes(self, announcements: frozenset[Announcement]) -> None:
        lines = self._route_lines.render(announcements)
        for version in (4, 6):
            self.process.write(routes_path(self.run_dir, version), routes_file(announcements, version, lines))

    async def _start(self) -> None:
        self.process.prepare()
        config = await self._render_config()
        self._write_routes(self._intended)
        await self.process.start(config)
        log.info("BGP speaker up (bird pid %s, AS %d, router id %s, %d peer(s))", self.process.pid,
                 self.settings.asn, self._router_id, len(self.settings.peers))

    async def _render_config(self) -> str:
        """The main config with this host's addresses, read afresh on every start (an address may have
        changed) in a thread: pyroute2's synchronous API cannot run on the agent's event loop."""
        try:
            host = await asyncio.to_thread(read_host_addresses)
        except OSError as exc:
            raise DataplaneError(f"cannot read this host's addresses: {exc}") from exc
        router_id = choose_router_id(self.settings, host)
        if router_id.kube_vip_would_refuse and self._router_id != router_id.address:
            log.info("bgp_routerid and bgp_routerinterface unset (kube-vip would not start): router id %s from %s",
                     router_id.address, router_id.source)
        self._router_id = router_id.address
        next_hops = {}
        for peer in self.settings.peers:
            try:
                found = mpbgp_next_hop(peer, self.settings, host)
            except DataplaneError as exc:  # as kube-vip: peer without MP-BGP rather than not at all
                log.warning("%s; peering with %s for its own family only", exc, peer)
                continue
            if found is not None:
                next_hops[peer] = found
        self._other_family = {peer: version for peer, (version, _hop) in next_hops.items()}
        return speaker_config(self.settings, router_id=router_id.address, run_dir=self.run_dir,
                              local_addresses=source_addresses(self.settings, host), mpbgp=next_hops)

    def _on_log_line(self, line: str) -> None:
        """The speaker's netlink: a reconfiguration kvip did not ask for, or a state change of kvip's static
        protocols (`birdc disable kvip4`), wakes the reconciler at once."""
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
