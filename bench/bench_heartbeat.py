"""What one heartbeat renewal costs, by VIP count, before and after kvip issue #21, in one run.

Before: GET the node's Lease, then PUT it back carrying both full VIP lists as JSON (what
kvip.kube.heartbeat did until #21, reproduced in `legacy_renewal`). After: `HeartbeatPublisher.renew()`,
one merge PATCH of renewTime. Both against the API stand-in over HTTP; from its request log: requests,
bytes sent (request bodies) and received (responses on the wire) per renewal, and the size of the stored
Lease, which is what etcd writes on every renewal whatever the request was. Run:
python3 bench/bench_heartbeat.py [--renewals 20]
"""

from __future__ import annotations

import argparse
import asyncio
import ipaddress
import json
import statistics
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from lightkube import AsyncClient, KubeConfig

from kvip.kube.election import micro_time
from kvip.kube.errors import ApiFailure, classify
from kvip.kube.heartbeat import LABEL, HeartbeatPublisher, node_lease_name
from kvip.kube.resources import Lease
from kvip.lab.apiserver import StandIn
from kvip.lab.objects import namespace

RESULTS = Path(__file__).resolve().parent / "results"
NS, NODE, PERIOD = "kube-system", "node-a", 30.0
COUNTS = (100, 10_000)


def vips(count: int) -> list[str]:
    base = int(ipaddress.ip_address("10.96.0.0"))
    return sorted(str(ipaddress.ip_address(base + i)) for i in range(count))


async def legacy_renewal(client: AsyncClient, advertised: list[str], desired: list[str]) -> None:
    """The renewal before #21: read the Lease for its resourceVersion, write it back whole with both lists."""
    name = node_lease_name(NODE)
    body: dict[str, Any] = {
        "apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
        "metadata": {"name": name, "namespace": NS, "labels": {LABEL: "true"},
                     "annotations": {"kvip.io/advertised": json.dumps(advertised),
                                     "kvip.io/desired": json.dumps(desired), "kvip.io/mode": "table"}},
        "spec": {"holderIdentity": NODE, "leaseDurationSeconds": int(3 * PERIOD), "renewTime": micro_time()},
    }
    try:
        current = await client.get(Lease, name, namespace=NS)
    except Exception as exc:
        if classify(exc) is not ApiFailure.NOT_FOUND:
            raise
        await client.create(Lease(body), namespace=NS)
        return
    body["metadata"]["resourceVersion"] = current["metadata"]["resourceVersion"]
    await client.replace(Lease(body), namespace=NS)


async def measure(api: StandIn, renew: Callable[[], Awaitable[None]], renewals: int) -> dict[str, Any]:
    """The first write creates the Lease and is not counted; then `renewals` renewals of an unchanged view."""
    await renew()
    per: list[tuple[int, int, int, float]] = []
    for _ in range(renewals):
        mark = api.requests_served
        t0 = time.perf_counter()
        await renew()
        elapsed = time.perf_counter() - t0
        log = api.request_log(resource="leases", after=mark)
        per.append((len(log), sum(r.bytes_in for r in log), sum(r.bytes_out for r in log), elapsed))
    verbs = sorted({r.verb for r in api.request_log(resource="leases", after=mark)})
    stored = len(json.dumps(api.get("leases", node_lease_name(NODE), NS), separators=(",", ":")))
    return {"requests": per[-1][0], "verbs": verbs, "bytes_sent_range": [min(p[1] for p in per), max(p[1] for p in per)], "bytes_sent": per[-1][1], "bytes_received": per[-1][2],
            "stored_lease_bytes": stored, "renewal_ms_median": statistics.median(p[3] for p in per) * 1000}


async def run(renewals: int) -> dict[str, Any]:
    api = StandIn()
    await api.start()
    api.create(namespace(NS))
    client = AsyncClient(config=KubeConfig.from_dict(api.kubeconfig()))
    result: dict[str, Any] = {"renewals_measured": renewals, "period_s": PERIOD}
    try:
        for count in COUNTS:
            listed = vips(count)
            before = await measure(api, lambda listed=listed: legacy_renewal(client, listed, listed), renewals)
            api.delete("leases", node_lease_name(NODE), NS)
            beat = HeartbeatPublisher(client, node_name=NODE, namespace=NS, mode="table", period=PERIOD)
            beat.report(listed, listed)
            after = await measure(api, beat.renew, renewals)
            beat.report(listed[1:], listed)  # one VIP withdrawn: the renewal that carries new digests
            mark = api.requests_served
            await beat.renew()
            after["changed_view_bytes_sent"] = sum(r.bytes_in for r in api.request_log(resource="leases", after=mark))
            api.delete("leases", node_lease_name(NODE), NS)
            result[str(count)] = {"before": before, "after": after}
    finally:
        await client.close()
        await api.close()
    return result


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--renewals", type=int, default=20)
    args = parser.parse_args()
    result = asyncio.run(run(args.renewals))
    for count in COUNTS:
        for side in ("before", "after"):
            r = result[str(count)][side]
            # etcd stores the whole object on every write: 120 renewals an hour per node, 1,000 nodes.
            r["etcd_gb_per_hour_1000_nodes"] = r["stored_lease_bytes"] * 3600 / PERIOD * 1000 / 1e9
    print(json.dumps(result, indent=2))
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "heartbeat.json").write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
