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
  4. `--memory-sizes 10000 --slices-per-service 3`: the agent's peak RSS (VmHWM) and steady RSS (VmRSS once
     every status is written and the agent idled 5 s, and again after one consistency check of each source).
`--agent-src DIR` runs the agent from another tree's src/ (the code before a change: `git archive HEAD`).
`--tracemalloc DIR` loads a bench-only hook into the agent (sitecustomize on PYTHONPATH, never part of kvip):
tracemalloc snapshots at the traced peak, when idle and after the check (`tracemalloc.Snapshot.load`).

Run as root: python3 bench/bench_convergence.py [--sizes 1000,10000] [--sync-sizes 1000,2000,10000]
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import os
import shutil
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


# --managed-fields: what a real API server adds to every object (about 0.9 KB here), which kvip never reads.
MANAGED: list[list[dict]] = []
MANAGED_FIELDS = [{"manager": "kube-controller-manager", "operation": "Update", "apiVersion": "v1",
                   "time": "2026-11-30T12:00:00Z", "fieldsType": "FieldsV1",
                   "fieldsV1": {"f:metadata": {"f:annotations": {".": {}, "f:kube-vip.io/loadbalancerIPs": {}}},
                                "f:spec": {"f:ports": {".": {}, 'k:{"port":80,"protocol":"TCP"}': {
                                    ".": {}, "f:port": {}, "f:protocol": {}, "f:targetPort": {}}},
                                    "f:type": {}, "f:externalTrafficPolicy": {}, "f:sessionAffinity": {}}}}] * 2


def populate(lab: LabCluster, services: int, slices_per_service: int, node: str, policy: str,
             via: str = "ingress") -> None:
    def created(obj: dict) -> dict:
        if MANAGED:
            obj["metadata"]["managedFields"] = MANAGED[0]
        return obj

    for i in range(services):
        name = f"svc-{i}"
        lab.api.create(created(load_balancer_service(name, vips=[vip(i)], external_traffic_policy=policy, via=via)))
        for s in range(slices_per_service):
            lab.api.create(created(endpoint_slice(name, [Endpoint(f"10.244.{s}.{i % 250 + 1}", node)],
                                                  name=f"{name}-{s}")))


def proc_cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def peak_rss_mib(pid: int, field: str = "VmHWM") -> float:
    """The agent's peak resident set (VmHWM) so far; `field="VmRSS"`: the resident set now."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(f"{field}:"):
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
    spy = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")  # (the venv's, unactivated)
    return subprocess.Popen([spy, "record", "-p", str(pid), "-r", "500", "-f", "raw", "-o", str(target)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


SLICES = [1]  # --slices-per-service
TRACE: list[Path] = []  # --tracemalloc DIR: snapshots taken inside the agent (a sitecustomize hook, bench only)

# Loaded by the agent's interpreter through PYTHONPATH (never part of kvip): tracemalloc from the start, a
# snapshot dumped whenever the bench touches DIR/take-NAME, and one at each new traced peak (8 MB steps).
TRACE_HOOK = """
import ctypes, os, threading, time, tracemalloc
DIR = os.environ.get("KVIP_BENCH_TRACEMALLOC")
FRAMES = int(os.environ.get("KVIP_BENCH_TRACE_FRAMES", "6"))  # 0: no tracing, the trim probe only
def _rss():
    return next(int(l.split()[1]) for l in open("/proc/self/status") if l.startswith("VmRSS:"))
if DIR:
    if FRAMES:
        tracemalloc.start(FRAMES)
    def _watch():
        top = 0
        while True:
            time.sleep(0.2)
            for name in os.listdir(DIR):
                if name.startswith("take-") and FRAMES:
                    os.unlink(os.path.join(DIR, name))
                    tracemalloc.take_snapshot().dump(os.path.join(DIR, name[5:] + ".snap"))
                elif name.startswith("trim-"):
                    os.unlink(os.path.join(DIR, name))
                    before = _rss()
                    ctypes.CDLL("libc.so.6").malloc_trim(0)
                    open(os.path.join(DIR, name[5:] + ".trim"), "w").write(f"{before} {_rss()}")
            now = tracemalloc.get_traced_memory()[0] if FRAMES else 0
            if now > top + 8_000_000:
                top = now
                tracemalloc.take_snapshot().dump(os.path.join(DIR, "peak.snap"))
    threading.Thread(target=_watch, daemon=True).start()
"""


def agent_env(agent_src: str | None) -> dict[str, str]:
    path = [agent_src] if agent_src else []
    env = dict(EXTRA_ENV)
    if TRACE:
        hook = TRACE[0] / "hook"
        hook.mkdir(parents=True, exist_ok=True)
        (hook / "sitecustomize.py").write_text(TRACE_HOOK)
        path.insert(0, str(hook))
        env["KVIP_BENCH_TRACEMALLOC"] = str(TRACE[0])
    return {**env, **({"PYTHONPATH": os.pathsep.join(path)} if path else {})}


def trace_snapshot(name: str, what: str = "take") -> None:
    """Ask the agent's hook for a snapshot now (--tracemalloc); it lands as DIR/NAME.snap. what="trim": the
    hook calls malloc_trim(0) and writes VmRSS before and after (KiB) to DIR/NAME.trim (a probe of the lever)."""
    if TRACE:
        (TRACE[0] / f"{what}-{name}").touch()


async def bench_latency(services: int, samples: int, workdir: Path, agent_src: str | None) -> dict:
    async with LabCluster(("node-a",), workdir=workdir / f"latency-{services}", resync_period=3600.0) as lab:
        populate(lab, services, SLICES[0], "node-a", "Local")
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
        populate(lab, services, SLICES[0], "node-a", "Local", via="annotation")
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
        cpu, rss = proc_cpu_seconds(agent.process.pid), peak_rss_mib(agent.process.pid)
        await asyncio.sleep(2.0)  # late duplicates would show here
        patches = len(lab.api.request_log(resource="services/status", verbs=WRITE_VERBS))
        return {"services": services, "distinct_statuses_written": len(paths()), "status_patches": patches,
                "start_to_cache_synced_s": ready_s, "start_to_all_written_s": all_written_s,
                "agent_cpu_s": cpu, "peak_rss_mib": rss, "passes": agent_passes(lab, "node-a")}


async def bench_memory(services: int, workdir: Path, agent_src: str | None, check_after: float) -> dict:
    """Peak and steady RSS through a first sync at `services` x SLICES: steady = VmRSS once every status is
    written and the agent idled, and again after one consistency check of each source (the check period is
    `check_after`, so it runs after the sync). /status is never read before the last figure: it costs memory."""
    async with LabCluster(("node-a",), workdir=workdir / f"memory-{services}", resync_period=3600.0) as lab:
        populate(lab, services, SLICES[0], "node-a", "Local", via="annotation")
        agent = lab.start_agent("node-a", env={**agent_env(agent_src), "kvip_check_period": str(check_after)})
        pid, t0 = agent.process.pid, time.perf_counter()

        def written() -> int:
            return len({r.path for r in lab.api.request_log(resource="services/status", verbs=WRITE_VERBS)})

        def lists() -> list:
            return [r for r in lab.api.request_log(verbs=("list",)) if r.resource in ("services", "endpointslices")]

        while written() < services and time.perf_counter() - t0 < 900:
            await asyncio.sleep(0.1)
        all_written_s = time.perf_counter() - t0
        listed = len(lists())
        await asyncio.sleep(5.0)
        idle_rss, sync_peak = peak_rss_mib(pid, "VmRSS"), peak_rss_mib(pid)
        trace_snapshot("idle")
        while {r.resource for r in lists()[listed:]} != {"services", "endpointslices"}:
            if time.perf_counter() - t0 > check_after + 300:
                raise TimeoutError("no consistency check")
            await asyncio.sleep(0.2)
        while True:  # every page of both checks served
            seen = len(lists())
            await asyncio.sleep(2.0)
            if len(lists()) == seen:
                break
        await asyncio.sleep(3.0)
        checked_rss, peak = peak_rss_mib(pid, "VmRSS"), peak_rss_mib(pid)
        trace_snapshot("after-check")
        trace_snapshot("after-check", "trim")
        await asyncio.sleep(3.0 if TRACE else 0.0)
        return {"services": services, "slices": services * SLICES[0], "start_to_all_written_s": all_written_s,
                "peak_rss_mib_sync": sync_peak, "steady_rss_mib_idle": idle_rss,
                "steady_rss_mib_after_check": checked_rss, "peak_rss_mib": peak,
                "agent_cpu_s": proc_cpu_seconds(pid), "passes": agent_passes(lab, "node-a")}


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
    parser.add_argument("--managed-fields", action="store_true", help="objects carry managedFields (real servers)")
    parser.add_argument("--slices-per-service", type=int, default=1, help="EndpointSlices per Service")
    parser.add_argument("--memory-sizes", default="", help="e.g. 10000: peak and steady RSS (phase `memory`)")
    parser.add_argument("--check-after", type=float, default=60.0, help="the agent's check period, memory phase")
    parser.add_argument("--tracemalloc", default=None, help="directory for tracemalloc snapshots of the agent")
    args = parser.parse_args()
    SLICES[0] = args.slices_per_service
    if args.tracemalloc:
        TRACE.append(Path(args.tracemalloc).resolve())
    if args.managed_fields:
        MANAGED.append(MANAGED_FIELDS)
    skip = set(filter(None, args.skip.split(",")))
    EXTRA_ENV.update(item.split("=", 1) for item in args.agent_env)
    if args.profile:
        PROFILE.append(Path(args.profile))
    out: dict = {"label": args.label, "slices_per_service": SLICES[0], "latency": [], "first_sync": [],
                 "memory": [], "gc": None}
    with tempfile.TemporaryDirectory(prefix="kvip-bench-") as tmp:
        if "latency" not in skip:
            for size, samples in zip(map(int, args.sizes.split(",")), map(int, args.samples.split(","))):
                out["latency"].append(await bench_latency(size, samples, Path(tmp), args.agent_src))
                print(json.dumps({k: v for k, v in out["latency"][-1].items() if k != "samples_ms"}), flush=True)
        if "sync" not in skip:
            for size in map(int, args.sync_sizes.split(",")):
                out["first_sync"].append(await bench_first_sync(size, Path(tmp), args.agent_src))
                print(json.dumps(out["first_sync"][-1]), flush=True)
        for size in map(int, filter(None, args.memory_sizes.split(","))):
            out["memory"].append(await bench_memory(size, Path(tmp), args.agent_src, args.check_after))
            print(json.dumps(out["memory"][-1]), flush=True)
    if "gc" not in skip:
        out["gc"] = bench_gc(10_000)
        print(json.dumps(out["gc"]), flush=True)
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / f"convergence-{args.label}.json").write_text(json.dumps(out, indent=2))


if __name__ == "__main__":
    asyncio.run(main())
