"""Allocator cost: one plan() that gives IPs to 10,000 new services, and a steady-state plan over the
same 10,000 once they all carry their annotation (what every controller pass costs). Time and peak
Python memory (tracemalloc). Run: python3 bench/bench_ipam.py [--services 10000]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import tracemalloc
from pathlib import Path
from types import MappingProxyType

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from kvip.core.ipam import parse_pools, plan  # noqa: E402
from kvip.core.model import PortView, ServiceKey, ServiceView  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--services", type=int, default=10_000)
    args = parser.parse_args()
    # One pool per Service, cidr- keys first (the provider's order): "shop" has its own, the rest global.
    config = parse_pools({"cidr-global": "10.96.0.0/16", "cidr-shop": "10.97.0.0/22"})
    fresh = [ServiceView(ServiceKey("default" if i % 10 else "shop", f"svc-{i}"), ports=(PortView("p", 80),))
             for i in range(args.services)]
    tracemalloc.start()
    t0 = time.perf_counter()
    assigned, problems = plan(config, fresh)
    first = time.perf_counter() - t0
    _, peak_first = tracemalloc.get_traced_memory()
    annotated = [ServiceView(s.key, ports=s.ports, annotations=MappingProxyType(
        {"kube-vip.io/loadbalancerIPs": ",".join(assigned[s.key].ips)})) for s in fresh if s.key in assigned]
    tracemalloc.reset_peak()
    t0 = time.perf_counter()
    again, _ = plan(config, annotated)
    steady = time.perf_counter() - t0
    _, peak_steady = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    result = {"services": args.services, "allocated": len(assigned), "problems": len(problems),
              "first_plan_s": first, "first_plan_peak_mib": peak_first / 2**20,
              "steady_plan_s": steady, "steady_plan_peak_mib": peak_steady / 2**20, "steady_new": len(again)}
    print(json.dumps(result, indent=2))
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "ipam.json").write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
