"""BGP mode latency to a real router, and what one change costs the speaker as the table grows.

1. Announce / withdraw latency, end to end: Service+EndpointSlice created (deleted) in the API
   stand-in → the prefix present in (gone from) a BIRD router's RIB, one VIP at a time, over N VIPs,
   with 3 agents in BGP mode (the endpoint on one of them). p50/p99.
2. The speaker's cost per change as the announced set grows: one `BgpSpeaker.apply()` (rewrite the
   include file + `configure`) with 100 / 1,000 / 10,000 prefixes already announced.

Run as root: python3 bench/bench_bgp.py [--vips 100]
"""

from __future__ import annotations

import argparse
import asyncio
import ipaddress
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from kvip.config.bgp import BgpPeer, BgpSettings  # noqa: E402
from kvip.dataplane.bird.config import Announcement  # noqa: E402
from kvip.dataplane.bird.control import BirdControl, BirdControlError  # noqa: E402
from kvip.dataplane.bird.speaker import BgpSpeaker  # noqa: E402
from kvip.lab.bgp_router import BirdRouter, bgp_agent_env  # noqa: E402
from kvip.lab.cluster import LabCluster  # noqa: E402
from kvip.lab.objects import Endpoint, endpoint_slice, load_balancer_service  # noqa: E402
from kvip.lab.topology import topology  # noqa: E402

NODES = ("node-a", "node-b", "node-c")
RESULTS = Path(__file__).resolve().parent / "results"


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def present(router: BirdControl, prefix: str) -> bool:
    try:
        lines = await router.command(f"show route {prefix} table master4")
    except BirdControlError as exc:
        if "not found" in str(exc):
            return False
        raise
    return any(line.startswith(prefix) for line in lines)


async def wait_state(router: BirdControl, prefix: str, want: bool, timeout: float = 10.0) -> float:
    start = time.perf_counter()
    while await present(router, prefix) != want:
        if time.perf_counter() - start > timeout:
            raise TimeoutError(f"{prefix} present={want} not reached")
        await asyncio.sleep(0.001)
    return time.perf_counter() - start


async def end_to_end(vips: int, workdir: Path) -> dict[str, float]:
    announce, withdraw = [], []
    async with LabCluster(NODES, workdir=workdir, resync_period=30.0) as lab:
        assert lab.topology is not None
        router = BirdRouter(lab.topology, workdir)
        router.start()
        try:
            for name in NODES:
                lab.start_agent(name, env=bgp_agent_env(lab.topology, name, workdir))
            await lab.wait_agents_ready()
            control = BirdControl(str(router.bird.socket_path))
            while len(await asyncio.to_thread(router.established)) < len(NODES):
                await asyncio.sleep(0.1)
            for i in range(vips):
                vip = f"10.96.{i // 200}.{i % 200 + 1}"
                name = f"svc-{i}"
                lab.api.create(endpoint_slice(name, [Endpoint(f"10.244.0.{i % 200 + 1}", NODES[i % 3])]))
                start = time.perf_counter()
                lab.api.create(load_balancer_service(name, vips=[vip], external_traffic_policy="Local"))
                await wait_state(control, f"{vip}/32", True)
                announce.append(time.perf_counter() - start)
                start = time.perf_counter()
                lab.api.delete("services", name, "default")
                await wait_state(control, f"{vip}/32", False)
                withdraw.append(time.perf_counter() - start)
            await control.close()
        finally:
            router.stop()
    return {
        "vips": vips,
        "announce_p50_ms": round(statistics.median(announce) * 1000, 1),
        "announce_p99_ms": round(pct(announce, 0.99) * 1000, 1),
        "withdraw_p50_ms": round(statistics.median(withdraw) * 1000, 1),
        "withdraw_p99_ms": round(pct(withdraw, 0.99) * 1000, 1),
    }


def prefixes(count: int, offset: int = 0) -> frozenset[Announcement]:
    base = int(ipaddress.IPv4Address("10.100.0.0"))
    return frozenset(Announcement(ipaddress.ip_network(f"{ipaddress.IPv4Address(base + offset + i)}/32"))
                     for i in range(count))


async def apply_cost_here(workdir: Path, peer: str, router_id: str) -> dict[str, float]:
    """Runs inside a node namespace (the speaker's BIRD is a child of this process)."""
    out: dict[str, float] = {}
    for size in (100, 1_000, 10_000):
        settings = BgpSettings(asn=65101, peers=(BgpPeer(ipaddress.ip_address(peer), 65000),),
                               router_id=router_id, run_dir=str(workdir / f"speaker-{size}"))
        speaker = BgpSpeaker(settings)
        try:
            await speaker.observe()
            await speaker.apply(prefixes(size), frozenset())
            timings = []
            for i in range(20):
                extra = prefixes(1, 1_000_000 + i)
                start = time.perf_counter()
                await speaker.apply(extra, frozenset())
                have = await speaker.observe()
                timings.append(time.perf_counter() - start)
                assert extra <= have
            out[f"apply_plus_readback_ms_at_{size}"] = round(statistics.median(timings) * 1000, 1)
        finally:
            await speaker.close()
    out["ratio_10000_vs_100"] = round(out["apply_plus_readback_ms_at_10000"] / out["apply_plus_readback_ms_at_100"], 1)
    return out


def apply_cost(workdir: Path) -> dict[str, float]:
    """One change's cost in the speaker, by size of the announced set (median of 20 changes)."""
    with topology(["node-a"]) as topo:
        node = topo.nodes[0]
        run = subprocess.run(["ip", "netns", "exec", node.netns, sys.executable, __file__, "--apply-cost-here",
                              str(workdir), str(topo.router_address), str(node.address)],
                             capture_output=True, text=True, check=True)
    return json.loads(run.stdout)


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--vips", type=int, default=100)
    parser.add_argument("--apply-cost-here", nargs=3, metavar=("WORKDIR", "PEER", "ROUTER_ID"))
    args = parser.parse_args()
    if args.apply_cost_here:
        workdir, peer, router_id = args.apply_cost_here
        print(json.dumps(await apply_cost_here(Path(workdir), peer, router_id)))
        return
    with tempfile.TemporaryDirectory(prefix="kvip-bench-bgp-") as tmp:
        result = {"end_to_end": await end_to_end(args.vips, Path(tmp) / "e2e"),
                  "speaker_apply": await asyncio.to_thread(apply_cost, Path(tmp))}
    print(json.dumps(result, indent=2))
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "bgp.json").write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    asyncio.run(main())
