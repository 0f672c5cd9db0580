"""Convergence cost of one real agent against the API stand-in (kvip issues #3 and #21).

Measures, in one run on this machine:
  1. EndpointSlice change → kernel route latency (p50/p99) at 1,000 and 10,000 LoadBalancer services:
     a slice is rewritten so the endpoint leaves the node, and we time until netlink reports the route
     gone (`ip monitor route` in the node namespace, timestamps taken as lines arrive), then back. Also
     the agent's CPU per change (/proc, over the whole sample loop) and reconcile passes per change
     (`passes` of /status, read once before and once after over the agent's local unix socket).
  2. First sync of Services that have no status yet (VIP in the kube-vip annotation): time until every
     status is written, and the PATCHes the stand-in served (`StandIn.request_log`), at 1k/2k/10k.
  3. The gen-2 GC pause over a 10,000-service cache, before and after `gc.freeze()` (in this process).
`--agent-src DIR` runs the agent from another tree's src/ (the code before a change: `git archive HEAD`).

Run as root: python3 bench/bench_convergence.py [--sizes 1000,10000] [--sync-sizes 1000,2000,10000]
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from kvip.lab.apiserver import WRITE_VERBS
from kvip.lab.cluster import LabCluster
from kvip.lab.objects import Endpoint, endpoint_slice, load_balancer_service

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


def populate(lab: LabCluster, services: int, slices_per_service: int, node: str, policy: str,
             via: str = "ingress") -> None:
    for i in range(services):
        name = f"svc-{i}"
        lab.api.create(load_balancer_service(name, vips=[vip(i)], external_traffic_policy=policy, via=via))
        for s in range(slices_per_service):
            lab.api.create(endpoint_slice(name, [Endpoint(f"10.244.{s}.{i % 250 + 1}", node)],
                                          name=f"{name}-{s}"))


def proc_cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def peak_rss_mib(pid: int) -> float:
    """The agent's peak resident set (VmHWM) so far."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return 0.0


def agent_passes(lab: LabCluster, node: str) -> int:
    """From /status over the agent's own unix socket (never polled in a loop: it costs the agent CPU)."""
    out = subprocess.run(["curl", "-s", "--unix-socket", str(lab.status_socket(node)), "http://agent/status"],
                         check=True, capture_output=True, text=True).stdout
    return int(json.loads(out)["passes"])


def pct(values: list[float], q: int) -> float:
    return statistics.quantiles(values, n=100)[q - 1] * 1000


EXTRA_ENV: dict[str, str] = {}  # --agent-env
PROFILE: list[Path] = []  # --profile DIR: py-spy (the optional `bench` extra) samples the agent


def profiler(pid: int, out: Path) -> subprocess.Popen:
    """py-spy over the sample loop, as collapsed stacks (`--profile`): where the agent's CPU per change goes."""
    target = PROFILE[0] / out.name
    return subprocess.Popen(["py-spy", "record", "-p", str(pid), "-r", "500", "-f", "raw", "-o", str(target)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def agent_env(agent_src: str | None) -> dict[str, str]:
    return {**EXTRA_ENV, **({"PYTHONPATH": agent_src} if agent_src else {})}


async def bench_latency(services: int, samples: int, workdir: Path, agent_src: str | None) -> dict:
    async with LabCluster(("node-a",), workdir=workdir / f"latency-{services}", resync_period=3600.0) as lab:
        populate(lab, services, 1, "node-a", "Local")
        agent = lab.start_agent("node-a", env=agent_env(agent_src))
        await lab.wait_agents_ready(timeout=300)
        await lab.wait_for({"node-a": {f"{vip(i)}/32" for i in range(services)}}, timeout=300, interval=1.0)
        monitor = RouteMonitor(lab.node("node-a").netns)
        await asyncio.sleep(2.0)  # the first pass's echoes and writes settle
        withdraw, advertise = [], []
        pid = agent.process.pid
        passes0, cpu0 = agent_passes(lab, "node-a"), proc_cpu_seconds(pid)
        spy = profiler(pid, workdir.parent / f"profile-{services}.txt") if PROFILE else None
        try:
            for k in range(samples):
                i = (k * 7919) % services
                sl = lab.api.get("endpointslices", f"svc-{i}-0", "default")
                moved = {**sl, "endpoints": [{**sl["endpoints"][0], "nodeName": "elsewhere"}]}
                t0 = time.perf_counter()
                lab.api.replace(moved)
                withdraw.append(await monitor.wait("del", vip(i)) - t0)
                await asyncio.sleep(0.05)  # let the change's echo (if it wakes a pass) land in this sample
                back = lab.api.get("endpointslices", f"svc-{i}-0", "default")
                t0 = time.perf_counter()
                lab.api.replace({**back, "endpoints": sl["endpoints"]})
                advertise.append(await monitor.wait("add", vip(i)) - t0)
                await asyncio.sleep(0.05)
            await asyncio.sleep(0.5)
            cpu, passes = proc_cpu_seconds(pid) - cpu0, agent_passes(lab, "node-a") - passes0
            rss = peak_rss_mib(pid)
        finally:
            monitor.close()
            if spy is not None:
                spy.send_signal(signal.SIGINT)  # py-spy writes its file on SIGINT
                spy.wait()
    changes = 2 * samples
    return {
        "services": services, "changes": changes,
        "withdraw_ms_p50": pct(withdraw, 50), "withdraw_ms_p99": pct(withdraw, 99),
        "advertise_ms_p50": pct(advertise, 50), "advertise_ms_p99": pct(advertise, 99),
        "all_ms_p50": pct(withdraw + advertise, 50), "all_ms_p99": pct(withdraw + advertise, 99),
        "agent_cpu_ms_per_change": cpu / changes * 1000, "passes_per_change": passes / changes,
        "peak_rss_mib": rss, "samples_ms": [round(s * 1000, 3) for s in withdraw + advertise],
    }


async def bench_first_sync(services: int, workdir: Path, agent_src: str | None) -> dict:
    """Services whose VIP is annotated and whose status is empty: the agent writes every one."""
    async with LabCluster(("node-a",), workdir=workdir / f"sync-{services}", resync_period=3600.0) as lab:
        populate(lab, services, 1, "node-a", "Local", via="annotation")
        agent = lab.start_agent("node-a", env=agent_env(agent_src))
        t0 = time.perf_counter()
        await lab.wait_agents_ready(timeout=900)
        ready_s = time.perf_counter() - t0

        def paths() -> set[str]:
            return {r.path for r in lab.api.request_log(resource="services/status", verbs=WRITE_VERBS)}

        while len(paths()) < services:
            if time.perf_counter() - t0 > 900:
                break
            await asyncio.sleep(0.1)
        all_written_s = time.perf_counter() - t0
        cpu = proc_cpu_seconds(agent.process.pid)
        await asyncio.sleep(2.0)  # late duplicates would show here
        patches = len(lab.api.request_log(resource="services/status", verbs=WRITE_VERBS))
        return {"services": services, "distinct_statuses_written": len(paths()), "status_patches": patches,
                "start_to_cache_synced_s": ready_s, "start_to_all_written_s": all_written_s,
                "agent_cpu_s": cpu, "passes": agent_passes(lab, "node-a")}


def bench_gc(services: int) -> dict:
    """Gen-2 pause with a cache of `services` Services and slices alive, before and after gc.freeze()."""
    from kvip.core.decide import DecideConfig, decide
    from kvip.core.model import NodeView
    from kvip.kube import convert
    from kvip.lab.objects import load_balancer_service as svc

    objs = [svc(f"svc-{i}", vips=[vip(i)]) for i in range(services)]
    for n, obj in enumerate(objs):
        obj["metadata"].update(uid=f"uid-{n}", resourceVersion=str(n))
    store = dict(filter(None, (convert.load_balancer_entry(o) for o in objs)))
    slices = [e[1] for e in (convert.slice_entry(endpoint_slice(f"svc-{i}", [Endpoint("10.244.0.1", "node-a")],
                                                              name=f"svc-{i}-0")) for i in range(services)) if e]
    snapshot = convert.snapshot(store, slices, NodeView("node-a"))
    keep = (objs, store, slices, snapshot, decide(DecideConfig(node_name="node-a"), snapshot))

    def pause() -> float:
        times = []
        for _ in range(5):
            t0 = time.perf_counter()
            gc.collect(2)
            times.append(time.perf_counter() - t0)
        return statistics.median(times) * 1000

    before = pause()
    gc.freeze()
    after = pause()
    gc.unfreeze()
    del keep
    return {"services": services, "gen2_pause_ms_before_freeze": before, "gen2_pause_ms_after_freeze": after}


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--sizes", default="1000,10000", help="e.g. 1000,2000,5000,10000 for the plots")
    parser.add_argument("--samples", default="100,40", help="changes timed per size (each: withdraw + advertise)")
    parser.add_argument("--sync-sizes", default="1000,2000,10000")
    parser.add_argument("--agent-src", default=None, help="run the agent from this src/ directory (before)")
    parser.add_argument("--label", default="after")
    parser.add_argument("--agent-env", action="append", default=[], help="NAME=VALUE for the agent")
    parser.add_argument("--skip", default="", help="comma list of: latency, sync, gc")
    parser.add_argument("--profile", default=None, help="directory for py-spy profiles of the sample loop")
    args = parser.parse_args()
    skip = set(filter(None, args.skip.split(",")))
    EXTRA_ENV.update(item.split("=", 1) for item in args.agent_env)
    if args.profile:
        PROFILE.append(Path(args.profile))
    out: dict = {"label": args.label, "latency": [], "first_sync": [], "gc": None}
    with tempfile.TemporaryDirectory(prefix="kvip-bench-") as tmp:
        if "latency" not in skip:
            for size, samples in zip(map(int, args.sizes.split(",")), map(int, args.samples.split(","))):
                out["latency"].append(await bench_latency(size, samples, Path(tmp), args.agent_src))
                print(json.dumps({k: v for k, v in out["latency"][-1].items() if k != "samples_ms"}), flush=True)
        if "sync" not in skip:
            for size in map(int, args.sync_sizes.split(",")):
                out["first_sync"].append(await bench_first_sync(size, Path(tmp), args.agent_src))
                print(json.dumps(out["first_sync"][-1]), flush=True)
    if "gc" not in skip:
        out["gc"] = bench_gc(10_000)
        print(json.dumps(out["gc"]), flush=True)
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / f"convergence-{args.label}.json").write_text(json.dumps(out, indent=2))


if __name__ == "__main__":
    asyncio.run(main())
