"""CPU per EndpointSlice change: a from-scratch decide() against the incremental one (kvip issue #21).

A simulated cache of N Services (N = 1,000 and 10,000; a VIP each, one in fifty shared by two Services,
3 endpoints in one EndpointSlice each, a third of them on this node), BGP attributes on, as an agent in
BGP mode sees it. One change = one EndpointSlice replaced (an endpoint turns unready, or ready again).
Timed, in process CPU time, for what the agent's pass does with it before the diff:
- from scratch: `convert.snapshot` (group every slice under its Service) + `decide()` over every Service;
- incremental: `EndpointIndex.update` (regroup the changed Service) + `IncrementalDecider.decide()`.
Every incremental answer is checked equal to decide()'s on the same snapshot (outside the timing).
Run: python3 bench/bench_decide.py
"""

from __future__ import annotations

import ipaddress
import json
import random
import sys
import time
from collections import Counter
from pathlib import Path
from types import MappingProxyType

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from kvip.core.decide import DecideConfig, decide
from kvip.core.incremental import IncrementalDecider
from kvip.core.model import (
    ClusterSnapshot,
    EndpointView,
    NodeView,
    PortView,
    ServiceKey,
    ServiceView,
)
from kvip.core.vips import LOADBALANCER_IPS_ANNOTATION
from kvip.kube import convert
from kvip.kube.cache import EndpointIndex

RESULTS = Path(__file__).resolve().parent / "results"
NODE = "node-0"
CONFIG = DecideConfig(NODE, bgp_attributes=True)


def cluster(size: int) -> tuple[dict[ServiceKey, ServiceView], dict[tuple[str, str], convert.SliceEntry]]:
    services, slices = {}, {}
    for i in range(size):
        key = ServiceKey(f"ns-{i % 100}", f"svc-{i}")
        vip = ipaddress.ip_address(0x0A600000 + (i - i % 2 if i % 50 < 2 else i))  # 1 in 50 shared
        services[key] = ServiceView(key, ports=(PortView("http", 80 + i % 2),),
                                    annotations=MappingProxyType({LOADBALANCER_IPS_ANNOTATION: str(vip)}))
        slices[(key.namespace, f"svc-{i}-abcde")] = (key, endpoints(i, ready=True))
    return services, slices


def endpoints(i: int, ready: bool) -> tuple[EndpointView, ...]:
    return tuple(EndpointView((f"10.{i // 65536}.{i // 256 % 256}.{i % 256 + j}",),
                              NODE if (i + j) % 3 == 0 else f"node-{j + 1}", ready=ready or j > 0)
                 for j in range(3))


def same(a: object, b: object) -> bool:
    assert isinstance(a, type(b))
    return (a.advertisements == b.advertisements and a.decisions == b.decisions  # type: ignore[attr-defined]
            and Counter(a.problems) == Counter(b.problems) and a.egress == b.egress)  # type: ignore[attr-defined]


def run(size: int, changes: int, scratch_changes: int, rng: random.Random) -> dict[str, object]:
    services, slices = cluster(size)
    index, decider, node = EndpointIndex(), IncrementalDecider(CONFIG), NodeView(NODE)
    decider.decide(ClusterSnapshot(dict(services), index.update(slices), node))
    keys = list(slices)
    scratch_cpu = incremental_cpu = 0.0
    redecided = 0
    for n in range(changes):
        slice_key = rng.choice(keys)
        service, old = slices[slice_key]
        slices[slice_key] = (service, endpoints(int(service.name[4:]), ready=not old[0].ready))
        start = time.process_time()
        snapshot = ClusterSnapshot(dict(services), index.update(slices), node)
        state = decider.decide(snapshot)
        incremental_cpu += time.process_time() - start
        redecided += decider.redecided
        if n < scratch_changes:
            start = time.process_time()
            reference = decide(CONFIG, convert.snapshot(services, slices.values(), node))
            scratch_cpu += time.process_time() - start
            assert same(state, reference), "the incremental answer differs from decide()"
    per_scratch, per_incremental = scratch_cpu / scratch_changes, incremental_cpu / changes
    return {"services": size, "vips_advertised": len(state.advertisements),
            "from_scratch_ms_per_change": round(per_scratch * 1e3, 3),
            "incremental_ms_per_change": round(per_incremental * 1e3, 3),
            "ratio": round(per_scratch / per_incremental, 1),
            "services_redecided_per_change": redecided / changes,
            "changes_timed": {"from_scratch": scratch_changes, "incremental": changes}}


def main() -> None:
    rng = random.Random(21)
    result = {"python": sys.version.split()[0], "runs": [run(1_000, 200, 50, rng), run(10_000, 200, 10, rng)]}
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "decide.json").write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
