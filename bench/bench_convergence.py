"""Convergence and resync cost of one real agent against the API stand-in (issue 3's benchmark).

Measures, in one run on this machine:
  1. API change → kernel route latency (p50/p99) with 1,000 LoadBalancer services: an EndpointSlice
     is rewritten so the endpoint leaves the node, and we time until netlink reports the route gone
     (`ip monitor route` in the node namespace, timestamps taken as lines arrive), then back.
  2. Full resync cost at 10,000 services / 30,000 EndpointSlices: CPU seconds the agent process
     spends on one forced relist + reconcile, and its peak RSS (VmHWM).
The stand-in's own cost (bench_apiserver.py) is the floor these figures sit on.

Run as root: python3 bench/bench_convergence.py [--services 1000] [--big-services 10000]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from kvip.lab.cluster import LabCluster  # noqa: E402
from kvip.lab.objects import Endpoint, endpoint_slice, load_balancer_service  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results"


def vip(i: int) -> str:
    return f"10.{96 + i // 65536}.{(i // 256) % 256}.{i % 256}"


class RouteMonitor:
    """Timestamps every route line netlink reports in a namespace, as it arrives."""

    def __init__(self, netns: str) -> None:
        self.proc = subprocess.Popen(["ip", "-n", netns, "monitor", "route"], stdout=subprocess.PIPE,
                                     text=True, bufsize=1)
        self.seen: dict[tuple[str, str], float] = {}
        self.cond = threading.Condition()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            now = time.perf_counter()
            kind = "del" if line.startswith("Deleted") else "add"
            dst = line.split()[1] if kind == "del" else line.split()[0]
            with self.cond:
                self.seen[(kind, dst.split("/")[0])] = now
                self.cond.notify_all()

    async def wait(self, kind: str, address: str, timeout: float = 10.0) -> float:
        deadline = time.perf_counter() + timeout
        while time.perf_counter() < deadline:
            with self.cond:
                if (kind, address) in self.seen:
                    return self.seen.pop((kind, address))
            await asyncio.sleep(0.0005)
        raise TimeoutError(f"no {kind} of {address}")

    def close(self) -> None:
        self.proc.terminate()


def populate(lab: LabCluster, services: int, slices_per_service: int, node: str, policy: str) -> None:
    for i in range(services):
        name = f"svc-{i}"
        lab.api.create(load_balancer_service(name, vips=[vip(i)], external_traffic_policy=policy))
        for s in range(slices_per_service):
            lab.api.create(endpoint_slice(name, [Endpoint(f"10.244.{s}.{i % 250 + 1}", node)],
                                          name=f"{name}-{s}"))


def proc_cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def proc_peak_rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def agent_status(lab: LabCluster, node: str) -> dict:
    out = subprocess.run(["ip", "netns", "exec", lab.node(node).netns, "curl", "-s", "http://127.0.0.1:2112/status"],
                         check=True, capture_output=True, text=True).stdout
    return json.loads(out)


async def bench_latency(services: int, samples: int, workdir: Path) -> dict:
    async with LabCluster(("node-a",), workdir=workdir / "latency", resync_period=30.0) as lab:
        populate(lab, services, 1, "node-a", "Local")
        lab.start_agent("node-a")
        await lab.wait_agents_ready(timeout=120)
        await lab.wait_for({"node-a": {f"{vip(i)}/32" for i in range(services)}}, timeout=120, interval=0.5)
        monitor = RouteMonitor(lab.node("node-a").netns)
        await asyncio.sleep(0.3)
        withdraw, advertise = [], []
        try:
            for k in range(samples):
                i = (k * 7919) % services
                sl = lab.api.get("endpointslices", f"svc-{i}-0", "default")
                moved = {**sl, "endpoints": [{**sl["endpoints"][0], "nodeName": "elsewhere"}]}
                t0 = time.perf_counter()
                lab.api.replace(moved)
                withdraw.append(await monitor.wait("del", vip(i)) - t0)
                back = lab.api.get("endpointslices", f"svc-{i}-0", "default")
                t0 = time.perf_counter()
                lab.api.replace({**back, "endpoints": sl["endpoints"]})
                advertise.append(await monitor.wait("add", vip(i)) - t0)
        finally:
            monitor.close()

    def pct(values: list[float], q: float) -> float:
        return statistics.quantiles(values, n=100)[int(q) - 1] * 1000

    return {
        "services": services, "samples": samples,
        "withdraw_ms_p50": pct(withdraw, 50), "withdraw_ms_p99": pct(withdraw, 99),
        "advertise_ms_p50": pct(advertise, 50), "advertise_ms_p99": pct(advertise, 99),
    }


async def bench_resync(services: int, slices_per_service: int, workdir: Path) -> dict:
    async with LabCluster(("node-a",), workdir=workdir / "resync", resync_period=3600.0) as lab:
        t0 = time.perf_counter()
        populate(lab, services, slices_per_service, "node-a", "Cluster")
        populate_s = time.perf_counter() - t0
        agent = lab.start_agent("node-a")
        t0 = time.perf_counter()
        await lab.wait_agents_ready(timeout=600)
        await lab.wait_for({"node-a": {f"{vip(i)}/32" for i in range(services)}}, timeout=600, interval=1.0)
        startup_s = time.perf_counter() - t0
        pid = agent.process.pid
        relists_before = sum(s["relists"] for s in agent_status(lab, "node-a")["sources"])
        passes_before = agent_status(lab, "node-a")["passes"]
        cpu0, w0 = proc_cpu_seconds(pid), time.perf_counter()
        subprocess.run(["ip", "netns", "exec", lab.node("node-a").netns, "curl", "-s", "-X", "POST",
                        "http://127.0.0.1:2112/resync"], check=True, capture_output=True)
        while True:
            status = agent_status(lab, "node-a")
            if (sum(s["relists"] for s in status["sources"]) >= relists_before + 3
                    and status["passes"] > passes_before):
                break
            await asyncio.sleep(0.2)
        resync_wall = time.perf_counter() - w0
        cpu = proc_cpu_seconds(pid) - cpu0
        return {
            "services": services, "endpointslices": services * slices_per_service,
            "populate_s": populate_s, "startup_to_all_routes_s": startup_s,
            "resync_cpu_s": cpu, "resync_wall_s": resync_wall, "agent_peak_rss_mib": proc_peak_rss_mib(pid),
        }


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--services", type=int, default=1000)
    parser.add_argument("--samples", type=int, default=200)
    parser.add_argument("--big-services", type=int, default=10_000)
    parser.add_argument("--slices-per-service", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="kvip-bench-") as tmp:
        latency = await bench_latency(args.services, args.samples, Path(tmp))
        print(json.dumps(latency, indent=2))
        resync = await bench_resync(args.big_services, args.slices_per_service, Path(tmp))
        print(json.dumps(resync, indent=2))
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "convergence.json").write_text(json.dumps({"latency": latency, "resync": resync}, indent=2))


if __name__ == "__main__":
    asyncio.run(main())
