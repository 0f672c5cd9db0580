"""API traffic of one idle node, before and after kvip issue #21 (no periodic full relist).

One run against the API stand-in over real HTTP with lightkube (the agent's client), at 10,000
LoadBalancer Services and 30,000 EndpointSlices whose metadata looks like a real cluster's (owner
references, managedFields as the endpointslice controller and kubectl/helm write them).

Before: every node relisted every Service, EndpointSlice and its Node every 30 s (consistent reads,
no selector, unpaged) and reopened the three watches. Its cost per node-hour is computed from one
such relist's wire bytes (the stand-in's request log: headers, gzip-compressed body, chunk framing).
After: the agent's ClusterCache lists once, then watches with bookmarks and runs one consistency
check per check period. One check is measured (wire bytes, requests, CPU seconds of the agent's
thread: the stand-in runs in a thread of its own), and so is an idle watch's bookmark traffic; the
node-hour figure is checks/hour x one check + bookmarks at the real server's rate (one a minute per
watch) + the watch reopened at its 300 s timeout.

Changes: the same run then makes `--changes` edits (nine EndpointSlice endpoint moves to one Service label
edit, as in a cluster where pods churn and Services rarely change) and measures the watch bytes each costs,
once for kvip's cache and once for a client-go-informer-style baseline (an unfiltered list and watch of
Services and EndpointSlices, bookmarks on, no periodic relist: client-go's resync is local). Per node-hour
at 1 and 10 changes/s cluster-wide = idle + rate x 3,600 x bytes per change. `bench/cost_model.py` turns
this file into the cluster-wide cost model in docs/cost-model.md.

Run: .venv/bin/python bench/bench_api_traffic.py [--services 10000] [--slices-per-service 3]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from lightkube import AsyncClient, KubeConfig

from kvip.kube import convert
from kvip.kube.cache import ClusterCache
from kvip.kube.resources import EndpointSlice, Node, Service
from kvip.lab.apiserver import StandInThread
from kvip.lab.objects import (
    Endpoint,
    endpoint_slice,
    load_balancer_service,
    namespace,
    node,
)

RESULTS = Path(__file__).resolve().parent / "results"
HOUR = 3600.0
OLD_PERIOD = 30.0
BOOKMARKS_PER_WATCH_HOUR = 60  # the real API server: one bookmark a minute on a quiet watch
REOPENS_PER_WATCH_HOUR = HOUR / 300  # the agent asks for timeoutSeconds=300
PERIODS = (60.0, 120.0, 300.0, 600.0)
TIME = "2024-05-01T10:00:00Z"


def _fields(*paths: str) -> dict[str, Any]:
    return {f"f:{p}": {} for p in paths}


def service(i: int) -> dict[str, Any]:
    name, ns = f"svc-{i:05d}", f"team-{i % 100:02d}"
    obj = load_balancer_service(name, namespace=ns, vips=[f"10.{96 + i // 65025}.{i // 255 % 255}.{i % 255 + 1}"])
    obj["metadata"].update({
        "labels": {"app.kubernetes.io/name": name, "app.kubernetes.io/managed-by": "Helm"},
        "annotations": {"meta.helm.sh/release-name": name, "meta.helm.sh/release-namespace": ns},
        "managedFields": [
            {"manager": "helm", "operation": "Update", "apiVersion": "v1", "time": TIME, "fieldsType": "FieldsV1",
             "fieldsV1": {"f:metadata": {"f:annotations": _fields("meta.helm.sh/release-name",
                                                                  "meta.helm.sh/release-namespace"),
                                         "f:labels": _fields("app.kubernetes.io/name", "app.kubernetes.io/managed-by")},
                          "f:spec": {**_fields("externalTrafficPolicy", "sessionAffinity", "type",
                                               "allocateLoadBalancerNodePorts", "internalTrafficPolicy"),
                                     "f:ports": {'k:{"port":80,"protocol":"TCP"}': _fields(".", "name", "port",
                                                                                           "protocol", "targetPort")},
                                     "f:selector": {}}}},
            {"manager": "kvip", "operation": "Update", "apiVersion": "v1", "time": TIME, "fieldsType": "FieldsV1",
             "subresource": "status", "fieldsV1": {"f:status": {"f:loadBalancer": {"f:ingress": {}}}}},
        ],
    })
    return obj


def slices(i: int, count: int, nodes: int) -> list[dict[str, Any]]:
    name, ns = f"svc-{i:05d}", f"team-{i % 100:02d}"
    out = []
    for s in range(count):
        endpoints = [Endpoint(f"10.244.{(i * count + s) // 250 % 250}.{(i * count + s) % 250 + 1}", f"node-{n}")
                     for n in ((i + s) % nodes, (i + s + 1) % nodes)]
        obj = endpoint_slice(name, endpoints, namespace=ns, name=f"{name}-{s:05x}")
        obj["metadata"].update({
            "generateName": f"{name}-",
            "labels": {**obj["metadata"]["labels"], "app.kubernetes.io/name": name,
                       "app.kubernetes.io/managed-by": "Helm"},
            "annotations": {"endpoints.kubernetes.io/last-change-trigger-time": TIME},
            "ownerReferences": [{"apiVersion": "v1", "kind": "Service", "name": name, "blockOwnerDeletion": True,
                                 "controller": True, "uid": f"00000000-0000-4000-8000-{i:012d}"}],
            "managedFields": [{
                "manager": "kube-controller-manager", "operation": "Update", "apiVersion": "discovery.k8s.io/v1",
                "time": TIME, "fieldsType": "FieldsV1",
                "fieldsV1": {"f:addressType": {}, "f:endpoints": {}, "f:ports": {},
                             "f:metadata": {"f:annotations": _fields(".", "endpoints.kubernetes.io/last-change-"
                                                                          "trigger-time"),
                                            "f:generateName": {},
                                            "f:labels": _fields(".", "app.kubernetes.io/name",
                                                                "app.kubernetes.io/managed-by",
                                                                "endpointslice.kubernetes.io/managed-by",
                                                                "kubernetes.io/service-name"),
                                            "f:ownerReferences": {'k:{"uid":"00000000"}': {}}}}}],
        })
        out.append(obj)
    return out


def wire(api: StandInThread, after: int, verbs: tuple[str, ...] = ("list", "get")) -> tuple[int, int]:
    records = [r for r in api.request_log(after=after) if r.verb in verbs]
    return len(records), sum(r.bytes_out for r in records)


async def old_relist(client: AsyncClient, api: StandInThread) -> dict[str, Any]:
    """What every node did every 30 s before #21: three consistent, unpaged, unfiltered lists (+ converting)."""
    before, cpu = api.requests_served, time.thread_time()
    objects = 0
    for resource, conv, kw in ((Service, convert.load_balancer_entry, {"namespace": "*"}),
                               (EndpointSlice, convert.slice_entry, {"namespace": "*"}),
                               (Node, convert.node_entry, {"fields": {"metadata.name": "node-0"}})):
        async for obj in client.list(resource, **kw):  # type: ignore[attr-defined]
            conv(obj)
            objects += 1
    requests, received = wire(api, before)
    return {"requests": requests, "objects": objects, "bytes": received, "cpu_s": time.thread_time() - cpu}


RATES = (1.0, 10.0)


def make_change(standin: Any, k: int, services: int, per_service: int, nodes: int) -> None:
    """Change k: an EndpointSlice's endpoints move to other nodes (9 in 10) or a Service label edit."""
    i = (k * 7919) % services
    name, ns = f"svc-{i:05d}", f"team-{i % 100:02d}"
    if k % 10 == 9:
        standin.patch("services", name, {"metadata": {"labels": {"kvip-bench/edit": str(k)}}}, ns)
        return
    obj = standin.get("endpointslices", f"{name}-{k % per_service:05x}", ns)
    for endpoint in obj.get("endpoints") or []:  # each moves one node over (never a no-op: no event)
        endpoint["nodeName"] = f"node-{(int(endpoint['nodeName'].rsplit('-', 1)[1]) + 1) % nodes}"
    standin.replace(obj)


async def watch_bytes_per_change(api: StandInThread, args: argparse.Namespace, start: int,
                                 consume: Any) -> float:
    """Wire bytes the watches of `consume` receive per change (streams closed after, so the log has them)."""
    seq = api.requests_served
    running = asyncio.create_task(consume())
    await asyncio.sleep(1.0)  # the watches are open
    for k in range(start, start + args.changes):
        api._call_sync(lambda k=k: make_change(api.standin, k, args.services, args.slices_per_service, args.nodes))
        if k % 20 == 0:
            await asyncio.sleep(0)
    await asyncio.sleep(2.0)  # delivered
    api._call_sync(api.standin.store.close_watchers)  # server side first: the log then has the streams' bytes
    await asyncio.sleep(0.5)
    running.cancel()
    await asyncio.gather(running, return_exceptions=True)
    watches = [r for r in api.request_log(after=seq) if r.verb == "watch"]
    return sum(r.bytes_out for r in watches) / args.changes


async def informer_style(client: AsyncClient, api: StandInThread) -> None:
    """The baseline once synced: a client-go informer pair watches every Service and EndpointSlice
    (no field selector). Its one list costs the same as kvip's first sync and is not a per-change cost."""
    now = str(api._call_sync(lambda: api.standin.store.rv))  # synced: from here on, changes only

    async def follow(resource: Any) -> None:
        async for _ in client.watch(resource, namespace="*", resource_version=now):
            pass

    await asyncio.gather(follow(Service), follow(EndpointSlice))


def per_hour_at(rate: float, idle_requests: float, idle_bytes: float, per_change: float) -> dict[str, int]:
    return {"requests": int(idle_requests), "bytes": int(idle_bytes + rate * HOUR * per_change)}


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--services", type=int, default=10_000)
    parser.add_argument("--slices-per-service", type=int, default=3)
    parser.add_argument("--nodes", type=int, default=100)
    parser.add_argument("--idle", type=float, default=20.0, help="seconds of idle watching measured")
    parser.add_argument("--changes", type=int, default=400, help="edits made to measure watch bytes per change")
    parser.add_argument("--out", default="api_traffic.json", help="file name under bench/results")
    args = parser.parse_args()

    total = args.services * (1 + args.slices_per_service) + 200
    api = StandInThread(history_limit=total, bookmark_interval=1.0)
    api.start()
    standin = api.standin
    t0 = time.perf_counter()

    def populate() -> None:
        for n in range(100):
            standin.create(namespace(f"team-{n:02d}"))
        standin.create(namespace("default"))
        for n in range(args.nodes):
            standin.create(node(f"node-{n}", address=f"192.168.{n // 250}.{n % 250 + 1}"))
        for i in range(args.services):
            standin.create(service(i))
            for obj in slices(i, args.slices_per_service, args.nodes):
                standin.create(obj)

    api._call_sync(populate)
    print(f"populated in {time.perf_counter() - t0:.1f}s", file=sys.stderr)
    client = AsyncClient(config=KubeConfig.from_dict(standin.kubeconfig()), timeout=120)

    before = await old_relist(client, api)
    before["per_node_hour"] = {"requests": int(HOUR / OLD_PERIOD * (before["requests"] + 3)),
                               "bytes": int(HOUR / OLD_PERIOD * before["bytes"]),
                               "objects": int(HOUR / OLD_PERIOD * before["objects"])}

    cache = ClusterCache(client, node_name="node-0", on_change=lambda _: None, check_period=HOUR)
    start_seq, cpu = api.requests_served, time.thread_time()
    running = asyncio.create_task(cache.run())
    await asyncio.wait_for(cache.wait_synced(), 300)
    first = {"cpu_s": time.thread_time() - cpu}
    first["requests"], first["bytes"] = wire(api, start_seq)

    watch_started = time.perf_counter()
    # One consistency check of every source, as the check loop runs it (nothing differs: idle).
    seq, cpu = api.requests_served, time.thread_time()
    for reflector in cache.reflectors:
        assert await reflector.check()
    check = {"cpu_s": time.thread_time() - cpu}
    check["requests"], check["bytes"] = wire(api, seq)
    check["repairs"] = sum(r.status().check_repairs for r in cache.reflectors)

    # Idle watching: bookmarks only (the stand-in sends one a second here).
    await asyncio.sleep(args.idle)
    api._call_sync(standin.store.close_watchers)  # end the streams so the log has their byte counts
    await asyncio.sleep(0.5)
    watches = [r for r in api.request_log(after=start_seq) if r.verb == "watch" and r.bytes_out]

    # Changes, to kvip's cache (it re-opens its watches from where it was) ...
    async def kvip_watches() -> None:
        await asyncio.Event().wait()  # the cache's own tasks do the watching

    kvip_per_change = await watch_bytes_per_change(api, args, 0, kvip_watches)
    running.cancel()
    await asyncio.gather(running, return_exceptions=True)
    # ... and to the informer-style baseline, with the same kind and number of edits.
    informer_per_change = await watch_bytes_per_change(api, args, args.changes, lambda: informer_style(client, api))
    idle = time.perf_counter() - watch_started
    bookmarks = idle * len(watches)  # one a second on each
    watch_bytes = sum(r.bytes_out for r in watches)
    per_bookmark = watch_bytes / max(1.0, bookmarks + len(watches))  # headers of each stream spread over it
    relists = sum(r.status().relists for r in cache.reflectors)
    await client.close()
    api.stop()

    watch_hour_requests = len(cache.reflectors) * REOPENS_PER_WATCH_HOUR
    watch_hour_bytes = len(cache.reflectors) * (BOOKMARKS_PER_WATCH_HOUR + REOPENS_PER_WATCH_HOUR) * per_bookmark
    after = {f"{int(p)}s": {"requests": int(HOUR / p * check["requests"] + watch_hour_requests),
                            "bytes": int(HOUR / p * check["bytes"] + watch_hour_bytes)} for p in PERIODS}
    result = {"services": args.services, "endpointslices": args.services * args.slices_per_service,
              "before_one_relist": before, "after_first_sync": first, "after_one_check": check,
              "after_watch_bytes_per_line": round(per_bookmark, 1), "after_relists_total": relists,
              "after_per_node_hour_by_check_period": after,
              "changes_measured": args.changes,
              "watch_bytes_per_change": {"kvip": round(kvip_per_change), "informer": round(informer_per_change)}}
    # Per node-hour at 1 and 10 changes/s cluster-wide, idle cost included (kvip at its default check period).
    informer_idle = (watch_hour_requests, watch_hour_bytes)
    result["per_node_hour_idle"] = {
        "kvip": after["600s"], "before": {k: before["per_node_hour"][k] for k in ("requests", "bytes")},
        "informer": per_hour_at(0.0, informer_idle[0], informer_idle[1], 0.0)}
    result["per_node_hour_with_changes"] = {
        f"{rate:g}/s": {
            "kvip": per_hour_at(rate, after["600s"]["requests"], after["600s"]["bytes"], kvip_per_change),
            "informer": per_hour_at(rate, informer_idle[0], informer_idle[1], informer_per_change),
            "before": per_hour_at(rate, before["per_node_hour"]["requests"], before["per_node_hour"]["bytes"],
                                  kvip_per_change),
        } for rate in RATES}
    print(json.dumps(result, indent=2))
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / args.out).write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    asyncio.run(main())
