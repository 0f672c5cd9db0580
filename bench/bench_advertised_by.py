"""What kvip.io/advertised-by costs the API at 1,000 Services, in one run (kvip issue #20).

A simulated cluster: 1,000 Services (externalTrafficPolicy Local, 3 endpoints each) over 1,000 nodes,
for 10 minutes; each minute CHURN endpoints move to another node. Every node runs the writer's rule
(`kvip.core.advertised_by.writes`) on the same inputs, as the agents do; a write changes the Service's
annotation before the next minute (its watch echo). Counted: PATCHes per minute, against the naive
scheme where every node carrying a Service writes its own view. Also timed: one node's full plan
(candidate sets from decide(), heartbeat digests resolved, the rule) at this size, which every node
runs after a change. Run: python3 bench/bench_advertised_by.py [--churn 50]
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from kvip.core.advertised_by import (
    Cluster,
    ServiceLine,
    advertisers,
    annotation_value,
    candidate_vips,
    writes,
)
from kvip.core.decide import DecideConfig
from kvip.core.model import ClusterSnapshot, EndpointView, ServiceKey, ServiceView
from kvip.kube.heartbeat import NodeView, resolve_advertised

RESULTS = Path(__file__).resolve().parent / "results"
SERVICES, NODES, PER_SERVICE, MINUTES = 1_000, 1_000, 3, 10


def vip(i: int) -> str:
    return f"10.{96 + i // 65536}.{i // 256 % 256}.{i % 256}"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--churn", type=int, default=50, help="endpoint moves per minute")
    args = parser.parse_args()
    rng = random.Random(20)
    nodes = [f"node-{i:04d}" for i in range(NODES)]
    keys = [ServiceKey("default", f"svc-{i}") for i in range(SERVICES)]
    placement = {k: rng.sample(nodes, PER_SERVICE) for k in keys}
    current = {k: "" for k in keys}
    per_minute, naive = [], []
    for minute in range(MINUTES + 1):
        if minute:  # the churn of this minute
            for _ in range(args.churn):
                key = rng.choice(keys)
                spot = rng.randrange(PER_SERVICE)
                placement[key][spot] = rng.choice([n for n in nodes if n not in placement[key]])
        held: dict[str, set[str]] = {n: set() for n in nodes}
        for i, k in enumerate(keys):
            for n in placement[k]:
                held[n].add(vip(i))
        cluster = Cluster({n: frozenset(v) for n, v in held.items()})
        lines = [ServiceLine(k, frozenset({vip(i)}), current=current[k]) for i, k in enumerate(keys)]
        wrote: dict[ServiceKey, str] = {}
        # Every node asks the rule (tests/unit/test_advertised_by.py proves exactly one says yes); asking
        # only the nodes that can be a writer (a carrier, or the first live node) gives the same count.
        for n in sorted({min(placement[k]) for k in keys} | {nodes[0]}):
            for k, value in writes(n, lines, cluster, frozenset()).items():
                assert wrote.setdefault(k, value) == value
        changed = [k for i, k in enumerate(keys)
                   if annotation_value(advertisers({vip(i)}, cluster.claims)) != current[k]] if minute else keys
        naive.append(sum(len(placement[k]) for k in changed))
        per_minute.append(len(wrote))
        current.update(wrote)

    # One node's whole plan at this size: decide() per node (shortcut), 1,000 digests resolved, the rule.
    services = {k: ServiceView(k, external_traffic_policy="Local", ingress_ips=(vip(i),)) for i, k in enumerate(keys)}
    endpoints = {k: tuple(EndpointView((f"10.244.{j}.{i % 250}",), n) for j, n in enumerate(placement[k]))
                 for i, k in enumerate(keys)}
    snapshot = ClusterSnapshot(services, endpoints)
    views = {n: NodeView.of(v, v) for n, v in held.items()}
    began = time.perf_counter()
    candidates = candidate_vips(DecideConfig(node_name=""), snapshot, nodes)
    claims = {n: resolve_advertised(views[n], candidates[n]) for n in nodes}
    writes(nodes[0], lines, Cluster(claims, candidates), frozenset())
    plan_seconds = time.perf_counter() - began
    assert all(claims[n] == frozenset(held[n]) for n in nodes)
    # ... and after one endpoint move, with the per-node memo the writer keeps between plans
    memo: dict[str, tuple[object, frozenset[str]]] = {}
    candidate_vips(DecideConfig(node_name=""), snapshot, nodes, memo)
    moved = dict(endpoints)
    moved[keys[0]] = (EndpointView(("10.244.9.9",), nodes[-1]),) + moved[keys[0]][1:]
    began = time.perf_counter()
    candidates = candidate_vips(DecideConfig(node_name=""), ClusterSnapshot(services, moved), nodes, memo)
    claims = {n: resolve_advertised(views[n], candidates[n]) for n in nodes}
    writes(nodes[0], lines, Cluster(claims, candidates), frozenset())
    move_seconds = time.perf_counter() - began

    result = {"services": SERVICES, "nodes": NODES, "endpoints_per_service": PER_SERVICE,
              "churn_per_minute": args.churn, "first_minute_writes": per_minute[0],
              "writes_per_minute": per_minute[1:], "naive_writes_per_minute": naive[1:],
              "steady_state_writes_per_minute": 0, "one_node_plan_seconds": round(plan_seconds, 3),
              "one_node_plan_after_one_move_seconds": round(move_seconds, 3)}
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "advertised_by.json").write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
