"""A hostile tenant's churn (kvip issue #17): 10,000 updates of LoadBalancer Services each carrying a
60 KiB kept annotation (`kvip.io/blob`, under the 64 KiB limit so the agent really holds it), with a
label edited on every update, against one agent in a lab node (table mode) on the API stand-in.

Reports the agent's RSS (VmRSS) every 500 updates and its growth after warm-up (target: flat), and the
longest event-loop stall seen from outside: /healthz polled every 10 ms from a thread in the node's
namespace (target: < 100 ms). The agent's good VIP is checked after the run. Results go to
bench/results/hostile.json. Run as root: python3 bench/bench_hostile.py [--updates 10000] [--services 100]
"""

from __future__ import annotations

import argparse
import asyncio
import http.client
import json
import socket
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from kvip.lab.cluster import LabCluster
from kvip.lab.objects import Endpoint, endpoint_slice, load_balancer_service
from kvip.runtime.netns import socket_in

RESULTS = Path(__file__).resolve().parent / "results"
NODE = "node-a"
BLOB = 60 * 1024


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise RuntimeError(f"no VmRSS for {pid}")


def http_get(netns: str, path: str) -> tuple[int, str]:
    """GET `path` from the agent's listener inside `netns` (a socket made there, used from here)."""
    sock = socket_in(netns, socket.AF_INET, socket.SOCK_STREAM)
    sock.settimeout(10)
    sock.connect(("127.0.0.1", 2112))
    conn = http.client.HTTPConnection("127.0.0.1", 2112)
    conn.sock = sock
    conn.request("GET", path)
    response = conn.getresponse()
    body = response.read().decode()
    conn.close()
    return response.status, body


class HealthPoller(threading.Thread):
    """GET /healthz every `interval` inside `netns`; each answer's latency, and every failure."""

    def __init__(self, netns: str, interval: float = 0.01) -> None:
        super().__init__(daemon=True)
        self.netns, self.interval = netns, interval
        self.latencies: list[float] = []
        self.failures: list[str] = []
        self.done = threading.Event()

    def run(self) -> None:
        while not self.done.wait(self.interval):
            started = time.monotonic()
            try:
                status, _ = http_get(self.netns, "/healthz")
                if status != 200:
                    self.failures.append(f"status {status}")
            except OSError as exc:
                self.failures.append(repr(exc))
            self.latencies.append(time.monotonic() - started)


def vip(index: int) -> str:
    return f"10.96.{index // 250}.{index % 250 + 1}"


def service(index: int, revision: int, resource_version: str = "", ignored: bool = False) -> dict[str, object]:
    annotations = {"kvip.io/blob": f"{revision:08d}" + "x" * (BLOB - 8)}
    if ignored:
        annotations["kube-vip.io/ignore"] = "true"
    obj = load_balancer_service(f"tenant-{index}", vips=[vip(index)], external_traffic_policy="Cluster",
                                annotations=annotations)
    obj["metadata"]["labels"] = {"app": f"tenant-{index}", "revision": str(revision), "editor": "x" * 60}
    if resource_version:
        obj["metadata"]["resourceVersion"] = resource_version
    return obj


def metric(text: str, name: str) -> float:
    return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines() if line.startswith(name))


async def run(updates: int, services: int, workdir: Path) -> dict[str, object]:
    async with LabCluster((NODE,), workdir=workdir, resync_period=30.0) as lab:
        api = lab.api
        api.create(load_balancer_service("good", vips=["10.96.255.1"], external_traffic_policy="Cluster"))
        api.create(endpoint_slice("good", [Endpoint("10.244.1.1", NODE)]))
        for i in range(services):
            api.create(service(i, 0))
            api.create(endpoint_slice(f"tenant-{i}", [Endpoint("10.244.2.2", NODE)]))
        pid = lab.start_agent(NODE).process.pid
        everything = {"10.96.255.1/32"} | {f"{vip(i)}/32" for i in range(services)}
        await lab.wait_for({NODE: everything}, timeout=30)
        poller = HealthPoller(lab.node(NODE).netns)
        poller.start()
        samples = [(0, rss_kib(pid))]
        started = time.monotonic()
        for n in range(1, updates + 1):
            index = n % services
            current = api.get("services", f"tenant-{index}", "default")["metadata"]["resourceVersion"]
            # The last update ignores one Service: its route leaving proves the agent read the whole stream.
            api.replace(service(index, n, current, ignored=n == updates))
            if n % 20 == 0:
                await asyncio.sleep(0.01)  # the stand-in serves the watches from this loop
            if n % 500 == 0:
                samples.append((n, rss_kib(pid)))
        sent = time.monotonic() - started
        await lab.wait_for({NODE: everything - {f"{vip(updates % services)}/32"}}, timeout=120)
        caught_up = time.monotonic() - started
        await asyncio.sleep(3)
        samples.append((updates + 1, rss_kib(pid)))
        _, metrics = await asyncio.to_thread(http_get, lab.node(NODE).netns, "/metrics")
        poller.done.set()
        poller.join()
        routes = lab.routes(NODE)
        log = lab.agent_log(NODE)
    warm = [kib for n, kib in samples if n >= updates // 4]  # warm-up: the first quarter of the updates
    latencies = sorted(poller.latencies)
    return {
        "updates": updates, "services": services, "annotation_bytes": BLOB, "seconds_to_send": round(sent, 1),
        "seconds_until_agent_caught_up": round(caught_up, 1),
        "relists": metric(metrics, "kvip_source_relists"), "watch_restarts": metric(metrics, "kvip_source_watch_restarts"),
        "rss_kib": samples, "rss_growth_whole_run_kib": samples[-1][1] - samples[0][1], "rss_after_warmup_kib": {"first": warm[0], "last": warm[-1], "max": max(warm),
                                                     "growth": warm[-1] - warm[0]},
        "healthz_polls": len(latencies), "healthz_failures": poller.failures[:10],
        "healthz_ms": {"p50": round(statistics.median(latencies) * 1000, 1),
                       "p99": round(latencies[int(len(latencies) * 0.99)] * 1000, 1),
                       "max": round(latencies[-1] * 1000, 1)},
        "good_vip_held": "10.96.255.1/32" in routes, "tracebacks": log.count("Traceback"),
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--updates", type=int, default=10_000)
    parser.add_argument("--services", type=int, default=100)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="kvip-bench-hostile-") as tmp:
        result = asyncio.run(run(args.updates, args.services, Path(tmp)))
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "hostile.json").write_text(json.dumps(result, indent=1) + "\n")
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
