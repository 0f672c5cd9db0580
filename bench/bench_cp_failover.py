"""Client-visible API downtime when the control-plane VIP fails over (ARP mode, real agents, TLS).

Three control-plane nodes (each its own API server on :6443, `kvip.lab.control_plane`), one elected
holder of the VIP; a client namespace asks https://VIP:6443/livez every 20 ms on a fresh connection
(timeout 0.5 s). Per trial: fault the leader, wait until exactly one other node holds the VIP and the
client is answered again; downtime = longest span without an answer that had failed requests in it.
Faults: the leader's agent kill -9, its API server's death (connections refused), SIGTERM of its agent.
Timings: 3/2/1 s (--trials, default 20) and kube-vip's defaults 15/10/2 s (--slow-trials, default 5:
each trial waits out a 15 s lease). Beside each: the bound the Lease timing allows.
Run as root: python3 bench/bench_cp_failover.py [--trials 20] [--slow-trials 5]
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

from kvip.lab.control_plane import ControlPlaneLab, CpMode

RESULTS = Path(__file__).resolve().parent / "results"
FAULTS = ("kill-9", "api-server-death", "sigterm")


def bound(fault: str, lease: float, retry: float) -> float:
    """What the Lease timing allows: a released Lease is taken on the next retry; a lapsed one only
    lease_duration after the others last saw it change (seen within one retry), on their next retry."""
    return 2 * retry if fault == "sigterm" else lease + 2 * retry


async def trials(fault: str, timing: tuple[int, int, int], count: int, workdir: Path) -> dict[str, object]:
    lease, renew, retry = timing
    env = {"vip_leaseduration": str(lease), "vip_renewdeadline": str(renew), "vip_retryperiod": str(retry)}
    downtimes, moves = [], []
    async with ControlPlaneLab(CpMode("arp"), workdir, timing=env, resync_period=30.0) as lab:
        await lab.start_agents()
        probe = lab.probe("http", interval=0.02, timeout=0.5).start()
        try:
            for _ in range(count):
                leader, _ = await lab.single_holder(timeout=lease * 3 + 20)
                await probe.wait_ok_after(time.monotonic(), 30)
                await asyncio.sleep(retry)
                t0 = time.monotonic()
                if fault == "api-server-death":
                    await lab.kill_api(leader)
                else:
                    await lab.kill_agent(leader, signal.SIGKILL if fault == "kill-9" else signal.SIGTERM)
                # kill -9 leaves the old VIP behind: wait for one holder among the others.
                await lab.wait_holders(lambda held, gone=leader: len(held - {gone}) == 1, timeout=lease * 3 + 20)
                moves.append(time.monotonic() - t0)
                ok_at = await probe.wait_ok_after(time.monotonic(), 30)
                downtimes.append(probe.downtime(t0, until=ok_at))
                if fault == "api-server-death":
                    await lab.restore_api(leader)
                else:
                    lab.start_agent(leader)  # as the kubelet restarts a static Pod
                await lab.wait_holders(lambda held, gone=leader: len(held) == 1 and gone not in held,
                                       timeout=lease * 3 + 20)
                await lab.cluster.wait_agents_ready()
        finally:
            probe.stop()
    return {"fault": fault, "timing": list(timing), "trials": count,
            "downtime_p50": statistics.median(downtimes), "downtime_max": max(downtimes),
            "moved_p50": statistics.median(moves), "moved_max": max(moves), "bound": bound(fault, lease, retry),
            "downtimes": [round(d, 3) for d in downtimes]}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--trials", type=int, default=20)
    parser.add_argument("--slow-trials", type=int, default=5)
    parser.add_argument("--faults", default=",".join(FAULTS))
    args = parser.parse_args()
    out = []
    for timing, count in (((3, 2, 1), args.trials), ((15, 10, 2), args.slow_trials)):
        if count <= 0:
            continue
        for fault in args.faults.split(","):
            with tempfile.TemporaryDirectory(prefix="kvip-bench-cp-") as tmp:
                result = asyncio.run(trials(fault, timing, count, Path(tmp)))
            out.append(result)
            print(f"{fault:17} {'/'.join(map(str, timing)):8} n={count:2}  downtime p50 "
                  f"{result['downtime_p50']:.2f}s max {result['downtime_max']:.2f}s  VIP moved p50 "
                  f"{result['moved_p50']:.2f}s max {result['moved_max']:.2f}s  bound {result['bound']:.1f}s",
                  flush=True)
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "cp_failover.json").write_text(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
