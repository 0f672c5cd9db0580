"""Global leader-election failover time with real agents: kill -9 the leader, time until a survivor
holds the VIP route. p50/p99 over N trials, for fast settings (3/2/0.5 s) and kube-vip's defaults
(15/10/2 s), plus clean-stop (SIGTERM) failover. Run as root: python3 bench/bench_failover.py [--trials 20]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import signal
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from kvip.lab.cluster import LabCluster  # noqa: E402
from kvip.lab.objects import Endpoint, endpoint_slice, load_balancer_service  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results"
NODES = ("node-a", "node-b", "node-c")
ROUTE = "10.96.0.50/32"


async def single_holder(lab: LabCluster, nodes: set[str], timeout: float) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        held = {n for n in nodes if ROUTE in lab.routes(n)}
        if len(held) == 1:
            return held.pop()
        await asyncio.sleep(0.01)
    raise TimeoutError(f"no single holder among {nodes}")


async def trials(timing: tuple[float, float, float], count: int, sig: int, workdir: Path) -> list[float]:
    lease, renew, retry = timing
    env = {"vip_leaderelection": "true", "vip_leaseduration": str(lease), "vip_renewdeadline": str(renew),
           "vip_retryperiod": str(retry)}
    results = []
    async with LabCluster(NODES, workdir=workdir, resync_period=30.0, agent_env=env) as lab:
        lab.api.create(load_balancer_service("web", vips=["10.96.0.50"], external_traffic_policy="Cluster"))
        lab.api.create(endpoint_slice("web", [Endpoint("10.244.1.1", "node-c")]))
        for name in NODES:
            lab.start_agent(name)
        await lab.wait_agents_ready()
        for _ in range(count):
            leader = await single_holder(lab, set(NODES), lease * 3 + 10)
            t0 = time.monotonic()
            await lab.stop_agent(leader, sig=sig)
            await single_holder(lab, set(NODES) - {leader}, lease * 3 + 10)
            results.append(time.monotonic() - t0)
            if sig == signal.SIGKILL:  # its route stays in the kernel until its agent comes back
                lab.start_agent(leader)
                await lab.wait_for({leader: set()}, timeout=30)
            else:
                lab.start_agent(leader)
            await asyncio.sleep(retry * 2)
    return results


def summary(values: list[float]) -> dict[str, float]:
    q = statistics.quantiles(values, n=100) if len(values) > 1 else [values[0]] * 99
    return {"trials": len(values), "p50_s": statistics.median(values), "p99_s": q[98], "max_s": max(values)}


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--trials", type=int, default=20)
    args = parser.parse_args()
    out = {}
    with tempfile.TemporaryDirectory(prefix="kvip-failover-") as tmp:
        for label, timing in (("fast_3_2_0.5", (3.0, 2.0, 0.5)), ("kube_vip_defaults_15_10_2", (15.0, 10.0, 2.0))):
            kill = await trials(timing, args.trials, signal.SIGKILL, Path(tmp) / f"{label}-kill")
            term = await trials(timing, max(5, args.trials // 4), signal.SIGTERM, Path(tmp) / f"{label}-term")
            out[label] = {"sigkill": summary(kill), "sigterm": summary(term),
                          "bound_kill_s": timing[0] + timing[2]}
            print(label, json.dumps(out[label]), flush=True)
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "failover.json").write_text(json.dumps(out, indent=2))


if __name__ == "__main__":
    asyncio.run(main())
