"""Randomized soak: seeded faults against real agents, judged by an independent checker.

Each episode injects one fault (endpoint moves, service churn, a 403 window, watch cuts, dropped events,
history compaction, agent kill -9, route tampering, BIRD or API restart; in BGP mode the tampering hits
the agent's own speaker: killed, or emptied and reloaded by hand), then lets the system go quiet
and times how long until every node's table 198 and the router's RIB equal what the cluster says (with
`egress`/`dhcp`: the SNAT rules too, under nft flushes and DHCP server restarts: kvip.lab.chaos_dataplane). The
checker computes that expectation itself from the stand-in's objects — it never imports `decide()` —
so a bug shared by the agent and its own logic cannot hide. A foreign route planted in every node's
table must survive the whole run untouched.
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import signal
import statistics
import subprocess
import time
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kvip.lab import chaos_dataplane as dataplane
from kvip.lab.bgp_router import BgpModeFabric
from kvip.lab.cluster import LabCluster
from kvip.lab.dnsmasq import Dnsmasq
from kvip.lab.fabric import BgpFabric
from kvip.lab.objects import endpoint_slice, load_balancer_service

FOREIGN = "10.99.99.99/32"


@dataclass
class ChaosReport:
    seed: int
    faults: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    convergence: dict[str, list[float]] = field(default_factory=lambda: defaultdict(list))
    violations: list[str] = field(default_factory=list)
    foreign_touched: int = 0

    def summary(self) -> dict[str, Any]:
        kinds = {}
        for kind, times in sorted(self.convergence.items()):
            ordered = sorted(times)
            kinds[kind] = {"faults": self.faults[kind], "max_s": round(ordered[-1], 3),
                           "p99_s": round(ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))], 3),
                           "median_s": round(statistics.median(ordered), 3)}
        return {"seed": self.seed, "faults_total": sum(self.faults.values()), "by_kind": kinds,
                "violations": self.violations, "foreign_routes_touched": self.foreign_touched}


def eligible_nodes(lab: LabCluster, nodes: tuple[str, ...]) -> dict[str, tuple[str, set[str]]]:
    """service → (VIP route, nodes allowed to advertise it): eTP Local → nodes with a ready endpoint,
    eTP Cluster → every node while any endpoint is ready (no cordons in the soak)."""
    slices: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for obj in lab.api.list("endpointslices"):
        slices[(obj["metadata"].get("labels") or {}).get("kubernetes.io/service-name", "")].extend(
            obj.get("endpoints") or [])
    out = {}
    for svc in lab.api.list("services"):
        if svc["spec"].get("type") != "LoadBalancer":
            continue
        vip = svc.get("status", {}).get("loadBalancer", {}).get("ingress", [{}])[0].get("ip")
        ready = [e for e in slices[svc["metadata"]["name"]] if (e.get("conditions") or {}).get("ready", True)]
        if svc["spec"].get("externalTrafficPolicy") == "Local":
            where = {e.get("nodeName") for e in ready} & set(nodes)
        else:
            where = set(nodes) if ready else set()
        out[svc["metadata"]["name"]] = (f"{vip}/32", where)
    return out


def per_service_violations(lab: LabCluster, nodes: tuple[str, ...], have: dict[str, set[str]]) -> list[str]:
    """Per-service election at a quiet point: each VIP on exactly the Lease holder if it is eligible, on no
    node if nobody is eligible."""
    problems = []
    for name, (route, eligible) in eligible_nodes(lab, nodes).items():
        on = {n for n in nodes if route in have[n]}
        if not eligible:
            if on:
                problems.append(f"{name}: nobody eligible but advertised on {sorted(on)}")
            continue
        try:
            holder = lab.api.get("leases", f"kubevip-{name}", "default")["spec"].get("holderIdentity")
        except Exception:
            holder = None
        if len(on) != 1 or holder not in eligible or on != {holder}:
            problems.append(f"{name}: on {sorted(on)}, holder {holder}, eligible {sorted(eligible)}")
    return problems


def expected_routes(lab: LabCluster, nodes: tuple[str, ...]) -> dict[str, set[str]]:
    """The checker's own reading of the cluster: anycast, eTP Local → nodes with a ready endpoint,
    eTP Cluster → every node while any endpoint is ready (no election, no cordons in the soak)."""
    slices: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for obj in lab.api.list("endpointslices"):
        slices[(obj["metadata"].get("labels") or {}).get("kubernetes.io/service-name", "")].extend(
            obj.get("endpoints") or [])
    want: dict[str, set[str]] = {n: set() for n in nodes}
    for svc in lab.api.list("services"):
        if svc["spec"].get("type") != "LoadBalancer":
            continue
        vips = [i["ip"] for i in svc.get("status", {}).get("loadBalancer", {}).get("ingress", [])]
        ready = [e for e in slices[svc["metadata"]["name"]] if (e.get("conditions") or {}).get("ready", True)]
        if svc["spec"].get("externalTrafficPolicy") == "Local":
            where = {e.get("nodeName") for e in ready}
        else:
            where = set(nodes) if ready else set()
        for node in where & set(nodes):
            want[node].update(f"{v}/32" for v in vips)
    return want


class Chaos:
    def __init__(self, lab: LabCluster, fabric: BgpFabric | BgpModeFabric | None, *, seed: int, services: int = 6,
                 bound: float = 10.0, election: str = "none", egress: bool = False,
                 advertised_by: int = 1, dhcp: Dnsmasq | None = None) -> None:
        self.election, self.dhcp = election, dhcp  # dhcp: the lab's server, restarted as a fault
        self.egress = egress  # svc0 and svc1 SNAT their pods (kvip.lab.chaos_dataplane), tables get flushed
        self.advertised_by = advertised_by  # every Nth settled step also checks kvip.io/advertised-by (0: none)
        # BGP mode: the agents are the speakers; what they advertise is read at the router only.
        self.bgp = isinstance(fabric, BgpModeFabric)
        self.lab = lab
        self.fabric = fabric
        self.rng = random.Random(seed)
        self.report = ChaosReport(seed)
        self.nodes = lab.node_names
        self.bound = bound
        self.services = [f"svc{i}" for i in range(services)]
        self.live: set[str] = set()

    # -- setup ----------------------------------------------------------------------------------

    def plant_foreign_routes(self) -> None:
        for node in self.nodes:
            subprocess.run(["ip", "-n", self.lab.node(node).netns, "route", "add", FOREIGN, "dev", "lo", "table",
                            "198", "proto", "static"], check=True)

    def create_service(self, name: str) -> None:
        index = int(name[3:])
        policy = "Local" if index % 2 == 0 else "Cluster"
        notes = {dataplane.EGRESS: "true"} if self.egress and index < 2 else None
        self.lab.api.create(load_balancer_service(name, vips=[f"10.96.7.{index + 1}"], external_traffic_policy=policy,
                                                  annotations=notes))
        self.lab.api.create(endpoint_slice(name, self._random_endpoints()))
        self.live.add(name)

    def _random_endpoints(self) -> list[Any]:
        from kvip.lab.objects import Endpoint

        picked = self.rng.sample(self.nodes, self.rng.randint(0, len(self.nodes)))
        return [Endpoint(f"10.244.{i}.{self.rng.randint(1, 250)}", n, ready=self.rng.random() > 0.2)
                for i, n in enumerate(picked)]

    # -- faults -----------------------------------------------------------------------------------

    def _move(self) -> None:
        name = self.rng.choice(sorted(self.live)) if self.live else None
        if name is None:
            return self._churn()
        current = self.lab.api.get("endpointslices", f"{name}-kvip", "default")
        fresh = endpoint_slice(name, self._random_endpoints())
        self.lab.api.replace({**current, "endpoints": fresh["endpoints"]})

    def _churn(self) -> None:
        name = self.rng.choice(self.services)
        if name in self.live:
            self.lab.api.delete("services", name, namespace="default")
            self.lab.api.delete("endpointslices", f"{name}-kvip", namespace="default")
            self.live.discard(name)
        else:
            self.create_service(name)

    async def _forbidden_window(self) -> None:
        node = self.rng.choice(self.nodes)
        self.lab.api.deny("endpointslices", user=node)
        for _ in range(self.rng.randint(1, 3)):
            self._move()
        await asyncio.sleep(self.rng.uniform(0.2, 1.5))
        self.lab.api.allow("endpointslices", user=node)

    def _watch_cut(self) -> None:
        self._move()
        self.lab.api.cut_watches()

    def _dropped_events(self) -> None:
        self.lab.api.drop_events("endpointslices", count=self.rng.randint(1, 3))
        self._move()
        self._move()
        self.lab.api.clear_faults()

    def _compaction(self) -> None:
        self.lab.api.drop_events("endpointslices")
        self._move()
        self.lab.api.compact()
        self.lab.api.clear_faults()
        self.lab.api.cut_watches()

    async def _kill_agent(self) -> None:
        node = self.rng.choice(self.nodes)
        await self.lab.stop_agent(node, sig=signal.SIGKILL)
        self._move()
        await asyncio.sleep(self.rng.uniform(0.1, 1.0))
        self.start_agent(node)

    def start_agent(self, node: str) -> None:
        self.lab.start_agent(node, env=self.fabric.agent_env(node) if self.fabric is not None else None)

    def _tamper(self) -> None:
        if self.bgp:
            return self._tamper_speaker()
        node = self.lab.node(self.rng.choice(self.nodes)).netns
        if self.rng.random() < 0.5:
            subprocess.run(["ip", "-n", node, "route", "flush", "table", "198", "proto", "248"], capture_output=True)
        else:
            subprocess.run(["ip", "-n", node, "route", "add", f"10.96.8.{self.rng.randint(1, 250)}/32", "dev", "lo",
                            "table", "198", "proto", "248"], capture_output=True)

    def _tamper_speaker(self) -> None:
        """Kill a node's BIRD, or empty its announcements and reload it behind kvip's back."""
        run_dir = self.lab.workdir / f"bgp-{self.rng.choice(self.nodes)}"
        try:
            if self.rng.random() < 0.5:
                os.kill(int((run_dir / "bird.pid").read_text()), signal.SIGKILL)
            else:
                (run_dir / "vips4.conf").write_text("# emptied by the soak\n")
                subprocess.run(["birdc", "-s", str(run_dir / "bird.ctl"), "configure"], capture_output=True,
                               timeout=10)
        except (OSError, ValueError, subprocess.TimeoutExpired):
            pass  # the speaker is restarting from an earlier fault: nothing to tamper with right now

    async def _bird_restart(self) -> None:
        router = self.fabric.router if self.fabric is not None else None
        if router is None:
            return self._move()
        await asyncio.to_thread(router.stop)
        await asyncio.to_thread(router.start)

    async def _api_restart(self) -> None:
        await self.lab.api.stop()
        await asyncio.sleep(self.rng.uniform(0.1, 1.0))
        self._move()  # written while the server is down: agents must still see it after restart
        await self.lab.api.restart()

    def _kinds(self) -> list[tuple[str, Callable[[], Any]]]:
        return [("endpoint-move", self._move), ("service-churn", self._churn), ("403-window", self._forbidden_window),
                ("watch-cut", self._watch_cut), ("dropped-events", self._dropped_events),
                ("compaction", self._compaction), ("agent-kill", self._kill_agent), ("route-tamper", self._tamper),
                ("bird-restart", self._bird_restart), ("api-restart", self._api_restart),
                *([("nft-flush", lambda: dataplane.flush_egress(self.lab, self.rng))] if self.egress else []),
                *([("dhcp-restart", lambda: dataplane.restart_dhcp(self.dhcp, self.rng))] if self.dhcp else [])]

    # -- the run ----------------------------------------------------------------------------------

    async def run(self, faults: int, on_progress: Callable[[int, str, float | None], None] | None = None) -> ChaosReport:
        kinds = self._kinds()
        for number in range(faults):
            kind, act = self.rng.choice(kinds)
            self.report.faults[kind] += 1
            result = act()
            if asyncio.iscoroutine(result):
                await result
            took = await self.converge(kind)
            if on_progress:
                on_progress(number + 1, kind, took)
        return self.report

    async def converge(self, kind: str) -> float | None:
        start = time.monotonic()
        while True:
            have = self._router_view() if self.bgp else {n: self.lab.routes(n) for n in self.nodes}
            wrong: list[str] = []
            if self.election == "service":
                wrong = per_service_violations(self.lab, self.nodes, have)
                want = have if not wrong else {}
            else:
                want = expected_routes(self.lab, self.nodes)
            router_ok = (self._no_draining_paths() if self.bgp else self._router_matches(want)) if want else False
            snat = dataplane.egress_view(self.lab, self.nodes) if self.egress and have == want else {}
            snat_ok = snat == dataplane.expected_egress(self.lab, have) if self.egress else True
            if have == want and router_ok and snat_ok:
                took = time.monotonic() - start
                self.report.convergence[kind].append(took)
                self._check_foreign()
                if self.advertised_by and not self.bgp and sum(self.report.faults.values()) % self.advertised_by == 0:
                    await self._settle_advertised_by(kind, have)
                return took
            if time.monotonic() - start > self.bound:
                self.report.violations.append(f"{kind}: not converged in {self.bound}s: want {want}, have {have}, "
                                              f"router ok={router_ok}, egress {snat} {'; '.join(wrong)}")
                return None
            await asyncio.sleep(0.02)

    async def _settle_advertised_by(self, kind: str, routes: dict[str, set[str]]) -> None:
        """The step has settled: each Service's kvip.io/advertised-by must come to name its route's nodes."""
        start = time.monotonic()
        while wrong := dataplane.advertised_by_mismatches(self.lab, routes):
            if time.monotonic() - start > self.bound:
                self.report.violations.append(f"{kind}: advertised-by not settled in {self.bound}s: {'; '.join(wrong)}")
                return
            await asyncio.sleep(0.05)
        self.report.convergence["advertised-by"].append(time.monotonic() - start)

    def _router_view(self) -> dict[str, set[str]]:
        """node → prefixes the router has a path for from that node (BGP mode's only observable)."""
        view: dict[str, set[str]] = {n: set() for n in self.nodes}
        try:
            rib = self.fabric.ecmp() if self.fabric is not None else {}
        except Exception:
            return {}
        for prefix, nodes in rib.items():
            for node in nodes & set(self.nodes):
                view[node].add(prefix)
        return view

    def _no_draining_paths(self) -> bool:
        """Nothing in the soak drains (no SIGTERM, no cordon): GRACEFUL_SHUTDOWN at a quiet point is a bug."""
        assert isinstance(self.fabric, BgpModeFabric)
        try:
            rib = self.fabric.router.rib(4)
        except Exception:
            return False
        return not any("65535:0" in path.communities for paths in rib.values() for path in paths.values())

    def _router_matches(self, want: dict[str, set[str]]) -> bool:
        if self.fabric is None or self.fabric.router is None:
            return True
        try:
            rib = self.fabric.ecmp()
        except Exception:
            return False
        expected: dict[str, set[str]] = defaultdict(set)
        for node, routes in want.items():
            for route in (r for r in routes if r.startswith("10.96.")):  # (a DHCP address is checked on the nodes)
                expected[route].add(node)
        seen = {p: set(hops) for p, hops in rib.items() if p.startswith("10.96.")}
        return seen == dict(expected)

    def _check_foreign(self) -> None:
        for node in self.nodes:
            table = subprocess.run(["ip", "-n", self.lab.node(node).netns, "route", "show", "table", "198"],
                                   capture_output=True, text=True).stdout
            if "10.99.99.99 dev lo proto static" not in table:
                self.report.foreign_touched += 1
                subprocess.run(["ip", "-n", self.lab.node(node).netns, "route", "replace", FOREIGN, "dev", "lo",
                                "table", "198", "proto", "static"], capture_output=True)


async def soak(workdir: Path, *, seed: int, faults: int, nodes: int = 3, bound: float = 10.0,
               election: str = "none", mode: str = "table", egress: bool = False, advertised_by: int = 1,
               dhcp: bool = False,
               progress: Callable[[int, str, float | None], None] | None = None) -> ChaosReport:
    names = tuple(f"node-{chr(ord('a') + i)}" for i in range(nodes))
    env = {"svc_election": "true", "vip_leaseduration": "3", "vip_renewdeadline": "2",
           "vip_retryperiod": "0.5"} if election == "service" else {}
    env |= dataplane.egress_env() if egress else {}
    async with LabCluster(names, workdir=workdir, resync_period=3.0, agent_env=env) as lab:
        assert lab.topology is not None
        fabric: BgpFabric | BgpModeFabric = (BgpModeFabric(lab.topology, workdir) if mode == "bgp"
                                             else BgpFabric(lab.topology, workdir))
        await asyncio.to_thread(fabric.start)
        server = None
        try:
            server = dataplane.start_dhcp(lab, workdir) if dhcp else None  # (needs election="service")
            chaos = Chaos(lab, fabric, seed=seed, bound=bound, election=election, egress=egress,
                          advertised_by=advertised_by, dhcp=server)
            chaos.plant_foreign_routes()
            for name in chaos.services:
                chaos.create_service(name)
            for name in names:
                chaos.start_agent(name)
            await lab.wait_agents_ready(timeout=30)
            deadline = time.monotonic() + 30
            while fabric.established() != set(names):
                if time.monotonic() > deadline:
                    raise TimeoutError("BGP sessions did not come up")
                await asyncio.sleep(0.2)
            await chaos.converge("startup")
            report = await chaos.run(faults, progress)
            report.violations += await dataplane.settle_dhcp_status(lab, bound) if server is not None else []
            return report
        finally:
            await asyncio.to_thread(fabric.stop)
            if server is not None:
                server.stop()


def write_report(report: ChaosReport, path: Path) -> dict[str, Any]:
    summary = report.summary()
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(summary, indent=2))
    return summary
