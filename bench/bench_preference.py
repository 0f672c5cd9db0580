"""kvip.io/preferred-nodes with real agents (table mode) and the VIP's route read from each node's kernel.

1. Handover gap: the preferred zone label moves between node-a and node-b; after the hold-down the other
   node asks and the holder hands over. Each node's table 198 is read every 10 ms (both nodes at once):
   per handover, the time the VIP was on no node and on both nodes. p50 / max over N handovers.
2. Flapping: the preferred node's health (a label its Service's node selector excludes) toggles every
   F seconds for D seconds while the other node holds the Lease: VIP moves and handovers per minute, with
   a hold-down longer than F and with one much shorter (what the hysteresis prevents).

3. With --mode arp: the handover gap of 1. in ARP mode (the VIP as an address on each node's eth0, as
   tests/e2e/test_arp_mode.py reads it; gratuitous ARP every --arp-rate ms), to hold against the issue's
   "never by two, never by none for longer than one announce interval".

Run as root: python3 bench/bench_preference.py [--trials 20] [--holddown 3] [--flap 1.5] [--flap-seconds 60]
             python3 bench/bench_preference.py --mode arp [--trials 20] [--arp-rate 3000]
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from kvip.lab.cluster import LabCluster
from kvip.lab.objects import Endpoint, endpoint_slice, load_balancer_service

NODES = ("node-a", "node-b")
VIP = "10.96.7.1"
RESULTS = Path(__file__).resolve().parent / "results"
TIMING = {"vip_leaseduration": "3", "vip_renewdeadline": "2", "vip_retryperiod": "0.5", "svc_election": "true"}
ARP = {"vip_routingtable": "false", "vip_arp": "true", "vip_interface": "eth0"}
MODE = {"arp": False}  # set by --mode arp: where has_vip looks


async def has_vip_arp(lab: LabCluster, node: str) -> bool:
    process = await asyncio.create_subprocess_exec(
        "ip", "-n", lab.node(node).netns, "-j", "-4", "addr", "show", "dev", "eth0",
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.DEVNULL)
    out, _ = await process.communicate()
    return process.returncode == 0 and any(
        a.get("local") == VIP for link in json.loads(out or b"[]") for a in link.get("addr_info", ()))


async def has_vip(lab: LabCluster, node: str) -> bool:
    if MODE["arp"]:
        return await has_vip_arp(lab, node)
    process = await asyncio.create_subprocess_exec(
        "ip", "-n", lab.node(node).netns, "-j", "-4", "route", "show", "table", "198", "proto", "248",
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.DEVNULL)
    out, _ = await process.communicate()
    return process.returncode == 0 and any(r.get("dst") == VIP for r in json.loads(out or b"[]"))


async def holders(lab: LabCluster) -> frozenset[str]:
    found = await asyncio.gather(*(has_vip(lab, n) for n in NODES))
    return frozenset(n for n, held in zip(NODES, found, strict=True) if held)


def label(lab: LabCluster, node: str, labels: dict[str, str | None]) -> None:
    lab.api.patch("nodes", node, {"metadata": {"labels": labels}})


async def until_holder(lab: LabCluster, node: str, timeout: float) -> list[tuple[float, frozenset[str]]]:
    samples: list[tuple[float, frozenset[str]]] = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        at = time.monotonic()
        current = await holders(lab)
        samples.append((at, current))
        if current == {node}:
            return samples
        await asyncio.sleep(max(0.0, at + 0.01 - time.monotonic()))
    raise RuntimeError(f"{node} never held the VIP alone")


def windows(samples: list[tuple[float, frozenset[str]]], count: int) -> float:
    """Seconds covered by samples with `count` holders (from each such sample to the next sample)."""
    return sum(b[0] - a[0] for a, b in itertools.pairwise(samples) if len(a[1]) == count)


async def start(lab: LabCluster, holddown: float) -> None:
    lab.api.create(load_balancer_service("web", vips=[VIP], external_traffic_policy="Cluster", annotations={
        "kvip.io/preferred-nodes": "100:zone=a", "kvip.io/node-selector": "!sick"}))
    lab.api.create(endpoint_slice("web", [Endpoint("10.244.1.1", "node-b")]))
    for name in NODES:
        lab.start_agent(name, env={"kvip_preference_holddown": str(holddown)})


async def handover_gaps(trials: int, holddown: float, env: dict[str, str] | None = None) -> dict[str, float | int]:
    gaps, overlaps, took = [], [], []
    with tempfile.TemporaryDirectory() as workdir:
        async with LabCluster(NODES, workdir=Path(workdir), resync_period=30.0, agent_env={**TIMING, **(env or {})}) as lab:
            label(lab, "node-b", {"zone": "a"})
            await start(lab, holddown)
            await until_holder(lab, "node-b", 20)
            target = "node-b"
            for _ in range(trials):
                target, other = ("node-a", "node-b") if target == "node-b" else ("node-b", "node-a")
                label(lab, other, {"zone": None})
                label(lab, target, {"zone": "a"})
                moved = time.monotonic()
                samples = await until_holder(lab, target, holddown + 10)
                took.append(time.monotonic() - moved)
                gaps.append(windows(samples, 0))
                overlaps.append(windows(samples, 2))
                await asyncio.sleep(0.3)
    return {"trials": trials, "holddown_s": holddown, "gap_p50_ms": statistics.median(gaps) * 1000,
            "gap_max_ms": max(gaps) * 1000, "overlap_max_ms": max(overlaps) * 1000,
            "relabel_to_handover_p50_s": statistics.median(took)}


async def flapping(seconds: float, holddown: float, half: float) -> dict[str, float]:
    with tempfile.TemporaryDirectory() as workdir:
        async with LabCluster(NODES, workdir=Path(workdir), resync_period=30.0, agent_env=TIMING) as lab:
            label(lab, "node-a", {"zone": "a", "sick": "yes"})
            await start(lab, holddown)
            await until_holder(lab, "node-b", 20)
            moves, last, ends = 0, frozenset({"node-b"}), time.monotonic() + seconds
            sick = True
            next_flip = time.monotonic()
            while time.monotonic() < ends:
                if time.monotonic() >= next_flip:
                    sick = not sick
                    label(lab, "node-a", {"sick": "yes" if sick else None})
                    next_flip += half
                current = await holders(lab)
                if current and current != last:
                    moves += 1
                    last = current
                await asyncio.sleep(0.02)
            log = (Path(workdir) / "agent-node-b.log").read_text(errors="replace")
            handed = log.count("handed lease")
    return {"holddown_s": holddown, "flap_every_s": half, "seconds": seconds, "vip_moves_per_min": moves * 60 / seconds,
            "handovers_per_min": handed * 60 / seconds}


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--trials", type=int, default=20)
    parser.add_argument("--holddown", type=float, default=3.0)
    parser.add_argument("--flap", type=float, default=1.5)
    parser.add_argument("--flap-seconds", type=float, default=60.0)
    parser.add_argument("--mode", choices=("table", "arp"), default="table")
    parser.add_argument("--arp-rate", type=int, default=3000, help="vip_arpRate, ms (kube-vip's default 3000)")
    args = parser.parse_args()
    if args.mode == "arp":
        MODE["arp"] = True
        arp = await handover_gaps(args.trials, args.holddown, {**ARP, "vip_arpRate": str(args.arp_rate)})
        arp = {**arp, "arp_announce_interval_ms": args.arp_rate}
        print(json.dumps(arp, indent=2))
        RESULTS.mkdir(exist_ok=True)
        (RESULTS / "preference_arp.json").write_text(json.dumps(arp, indent=2) + "\n")
        return
    result = {"handover": await handover_gaps(args.trials, args.holddown),
              "flapping": await flapping(args.flap_seconds, args.holddown, args.flap),
              "flapping_without_hysteresis": await flapping(args.flap_seconds, 0.1, args.flap)}
    print(json.dumps(result, indent=2))
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "preference.json").write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    asyncio.run(main())
