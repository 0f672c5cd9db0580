"""The API stand-in's own cost, the floor under every convergence figure kvip reports.

Measures over real HTTP with lightkube (the agent's client): watch event latency from a write at
the stand-in to the event decoded at the client (p50/p99), and the time to list 10,000
EndpointSlices. Run: python3 bench/bench_apiserver.py [--objects 10000] [--events 500]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from lightkube import AsyncClient, KubeConfig  # noqa: E402

from kvip.kube.resources import EndpointSlice  # noqa: E402
from kvip.lab.apiserver import StandIn  # noqa: E402
from kvip.lab.objects import Endpoint, endpoint_slice, namespace  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results"


def pct(values: list[float], q: int) -> float:
    return statistics.quantiles(values, n=100)[q - 1] * 1000


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--objects", type=int, default=10_000)
    parser.add_argument("--events", type=int, default=500)
    args = parser.parse_args()
    api = StandIn(history_limit=args.objects + args.events + 100)
    await api.start()
    api.create(namespace("default"))
    client = AsyncClient(config=KubeConfig.from_dict(api.kubeconfig()))

    # Watch latency: write in the stand-in's loop, timestamp when the client has the decoded event.
    api.create(endpoint_slice("probe", [Endpoint("10.0.0.1", "n1")]))
    written: dict[str, float] = {}
    latencies: list[float] = []
    done = asyncio.Event()

    async def consume() -> None:
        async for _, obj in client.watch(EndpointSlice, namespace="*", resource_version=str(api.resource_version)):
            rv = obj["metadata"]["resourceVersion"]
            if rv in written:
                latencies.append(time.perf_counter() - written.pop(rv))
                if len(latencies) == args.events:
                    done.set()
                    return

    consumer = asyncio.create_task(consume())
    await asyncio.sleep(0.2)
    for i in range(args.events):
        t0 = time.perf_counter()
        obj = api.patch("endpointslices", "probe-kvip", {"metadata": {"labels": {"i": str(i)}}}, namespace="default")
        written[obj["metadata"]["resourceVersion"]] = t0
        await asyncio.sleep(0.002)  # one write at a time: latency, not throughput
    await asyncio.wait_for(done.wait(), 60)
    consumer.cancel()

    for i in range(args.objects):
        api.create(endpoint_slice(f"svc-{i}", [Endpoint(f"10.1.{i // 250}.{i % 250 + 1}", f"n{i % 3}")],
                                  name=f"svc-{i}-a"))
    timings = []
    for _ in range(3):
        t0 = time.perf_counter()
        count = len([o async for o in client.list(EndpointSlice, namespace="*")])
        timings.append(time.perf_counter() - t0)
    await client.close()
    await api.stop()
    result = {
        "watch_events": args.events,
        "watch_latency_ms_p50": pct(latencies, 50), "watch_latency_ms_p99": pct(latencies, 99),
        "list_objects": count, "list_seconds_best_of_3": min(timings),
    }
    print(json.dumps(result, indent=2))
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "apiserver.json").write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    asyncio.run(main())
