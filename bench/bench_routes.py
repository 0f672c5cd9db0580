"""Route programming throughput: RouteTable vs `ip -batch`, in the same run, in a private namespace.

Adds then deletes N /32 routes in table 198 with protocol 248 both ways and reports seconds and the
ratio (RouteTable time / ip -batch time). Run as root: python3 bench/bench_routes.py [--routes 10000]
"""

from __future__ import annotations

import argparse
import asyncio
import ipaddress
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from kvip.core.model import Advertisement, DesiredState  # noqa: E402
from kvip.dataplane.routes import RouteTable  # noqa: E402
from kvip.lab.topology import topology  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results"


def vips(n: int) -> list[str]:
    return [f"10.{96 + i // 65536}.{(i // 256) % 256}.{i % 256}" for i in range(n)]


def ip_batch(netns: str, lines: list[str]) -> float:
    with tempfile.NamedTemporaryFile("w", suffix=".batch", delete=False) as f:
        f.write("\n".join(lines) + "\n")
    t0 = time.perf_counter()
    subprocess.run(["ip", "-n", netns, "-batch", f.name], check=True)
    return time.perf_counter() - t0


async def kvip_routes(netns: str, addresses: list[str]) -> tuple[float, float, int]:
    table = RouteTable(netns=netns)
    state = DesiredState({ipaddress.ip_address(a): Advertisement(ipaddress.ip_address(a), frozenset())
                          for a in addresses})
    items = table.desired(state)
    await table.observe()  # open the socket and learn links outside the timing
    t0 = time.perf_counter()
    await table.apply(items, frozenset())
    add = time.perf_counter() - t0
    held = len(await table.observe())
    t0 = time.perf_counter()
    await table.apply(frozenset(), items)
    delete = time.perf_counter() - t0
    await table.close()
    return add, delete, held


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--routes", type=int, default=10_000)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    addresses = vips(args.routes)
    rows = []
    with topology(["bench"]) as topo:
        netns = topo.node("bench").netns
        for _ in range(args.rounds):
            ip_add = ip_batch(netns, [f"route add {a}/32 dev lo table 198 proto 248" for a in addresses])
            ip_del = ip_batch(netns, [f"route del {a}/32 table 198 proto 248" for a in addresses])
            k_add, k_del, held = asyncio.run(kvip_routes(netns, addresses))
            assert held == args.routes, held
            rows.append({"ip_batch_add_s": ip_add, "ip_batch_del_s": ip_del, "kvip_add_s": k_add, "kvip_del_s": k_del})
    best = {k: min(r[k] for r in rows) for k in rows[0]}
    result = {
        "routes": args.routes, "rounds": args.rounds, "best": best,
        "add_ratio_kvip_over_ip_batch": best["kvip_add_s"] / best["ip_batch_add_s"],
        "del_ratio_kvip_over_ip_batch": best["kvip_del_s"] / best["ip_batch_del_s"],
    }
    print(json.dumps(result, indent=2))
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "routes.json").write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
