"""The advertised-by writer against the API stand-in: one PATCH per change, none while nothing changes,
and none at all from a node that is not the Service's writer (counted at the stand-in)."""

from __future__ import annotations

import asyncio
import contextlib
import copy
from collections.abc import AsyncIterator
from dataclasses import replace

import pytest
from lightkube import AsyncClient
from lightkube.config.kubeconfig import KubeConfig

from kvip.core.advertised_by import ANNOTATION
from kvip.core.decide import DecideConfig, decide
from kvip.kube import advertised_by as module
from kvip.kube.advertised_by import AdvertisedByWriter
from kvip.kube.cache import ClusterCache
from kvip.kube.election import micro_time
from kvip.kube.heartbeat import LABEL, NodeView, node_lease_name
from kvip.lab.apiserver import WRITE_VERBS, StandIn
from kvip.lab.objects import Endpoint, endpoint_slice, load_balancer_service, namespace

NS = "kube-system"
VIP = "10.96.0.10"


def heartbeat(api: StandIn, node: str, advertised: list[str]) -> None:
    """What node's agent publishes (kvip.kube.heartbeat), written straight into the stand-in."""
    lease = {"apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
             "metadata": {"name": node_lease_name(node), "namespace": NS, "labels": {LABEL: "true"},
                          "annotations": NodeView.of(advertised, advertised, mode="table").annotations()},
             "spec": {"holderIdentity": node, "leaseDurationSeconds": 90, "renewTime": micro_time()}}
    with contextlib.suppress(Exception):
        api.delete("leases", node_lease_name(node), NS)
    api.create(lease)


@pytest.fixture
async def api() -> AsyncIterator[StandIn]:
    standin = StandIn()
    await standin.start()
    for ns in ("default", NS):
        standin.create(namespace(ns))
    standin.create(load_balancer_service("web", vips=[VIP]))
    standin.create(endpoint_slice("web", [Endpoint("10.244.1.1", "node-a"), Endpoint("10.244.2.1", "node-b")]))
    try:
        yield standin
    finally:
        await standin.stop()


@contextlib.asynccontextmanager
async def agent_view(api: StandIn, node: str, monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[AdvertisedByWriter]:
    """The writer of `node`, fed its cache's snapshot and decide() as the agent's passes would."""
    monkeypatch.setattr(module, "MIN_INTERVAL", 0.05)
    client = AsyncClient(config=KubeConfig.from_dict(api.kubeconfig()))
    cache = ClusterCache(client, node_name=node, on_change=lambda _: None)
    writer = AdvertisedByWriter(client, node_name=node, namespace=NS, config=DecideConfig(node_name=node), period=30)

    async def passes() -> None:
        while True:
            if cache.synced:
                snapshot = cache.snapshot()
                writer.report(snapshot, decide(DecideConfig(node_name=node), snapshot))
            await asyncio.sleep(0.02)

    tasks = [asyncio.create_task(t) for t in (cache.run(), writer.run(), passes())]
    try:
        yield writer
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await client.close()


def patches(api: StandIn) -> int:
    return len(api.request_log(resource="services", verbs=WRITE_VERBS))


async def annotation_becomes(api: StandIn, value: str | None, timeout: float = 5.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while (api.get("services", "web", "default")["metadata"].get("annotations") or {}).get(ANNOTATION) != value:
        assert asyncio.get_running_loop().time() < deadline, api.get("services", "web", "default")["metadata"]
        await asyncio.sleep(0.02)


async def test_one_patch_per_change_and_none_while_nothing_changes(api: StandIn, monkeypatch: pytest.MonkeyPatch) -> None:
    heartbeat(api, "node-a", [VIP])
    async with agent_view(api, "node-a", monkeypatch):
        await annotation_becomes(api, "node-a")
        assert patches(api) == 1
        await asyncio.sleep(0.5)  # many passes and plans later: still the one write
        assert patches(api) == 1
        heartbeat(api, "node-b", [VIP])
        await annotation_becomes(api, "node-a,node-b")
        await asyncio.sleep(0.5)
        assert patches(api) == 2
        heartbeat(api, "node-a", [])  # node-a withdrew: node-b is the first carrier now, and writes
        heartbeat(api, "node-b", [VIP])
        await asyncio.sleep(0.5)
        assert patches(api) == 2  # node-b's agent is not running here: node-a must not write for it


async def test_the_writer_restores_a_value_someone_else_overwrote(api: StandIn, monkeypatch: pytest.MonkeyPatch) -> None:
    heartbeat(api, "node-a", [VIP])
    async with agent_view(api, "node-a", monkeypatch):
        await annotation_becomes(api, "node-a")
        service = copy.deepcopy(api.get("services", "web", "default"))  # (get hands out the stored object)
        service["metadata"]["annotations"][ANNOTATION] = "node-z"
        api.replace(service)
        await annotation_becomes(api, "node-a")
        assert patches(api) == 2


async def test_a_node_that_is_not_the_writer_never_patches(api: StandIn, monkeypatch: pytest.MonkeyPatch) -> None:
    heartbeat(api, "node-a", [VIP])
    heartbeat(api, "node-b", [VIP])
    async with agent_view(api, "node-b", monkeypatch) as writer:
        await asyncio.sleep(1.0)
        assert writer.heartbeats.synced.is_set()
        assert patches(api) == 0  # node-a sorts first among the carriers


async def test_the_last_carrier_gone_the_first_live_node_removes_the_annotation(
        api: StandIn, monkeypatch: pytest.MonkeyPatch) -> None:
    heartbeat(api, "node-a", [VIP])
    async with agent_view(api, "node-a", monkeypatch):
        await annotation_becomes(api, "node-a")
        heartbeat(api, "node-a", [])
        await annotation_becomes(api, None)
        assert patches(api) == 2


async def test_plans_before_the_watch_echo_do_not_write_the_same_value_again(
        api: StandIn, monkeypatch: pytest.MonkeyPatch) -> None:
    """The writer's input stays the snapshot from before its PATCH (no pass has seen the echo yet)."""
    heartbeat(api, "node-a", [VIP])
    monkeypatch.setattr(module, "MIN_INTERVAL", 0.05)
    client = AsyncClient(config=KubeConfig.from_dict(api.kubeconfig()))
    cache = ClusterCache(client, node_name="node-a", on_change=lambda _: None)
    writer = AdvertisedByWriter(client, node_name="node-a", namespace=NS, config=DecideConfig(node_name="node-a"),
                                period=30)
    tasks = [asyncio.create_task(cache.run())]
    try:
        await asyncio.wait_for(cache.wait_synced(), 5)
        snapshot = cache.snapshot()
        writer.report(snapshot, decide(DecideConfig(node_name="node-a"), snapshot))
        tasks.append(asyncio.create_task(writer.run()))
        await annotation_becomes(api, "node-a")
        for _ in range(5):  # passes that still see the Service as it was before the PATCH
            writer.report(replace(snapshot), decide(DecideConfig(node_name="node-a"), snapshot))
            await asyncio.sleep(0.15)
        assert patches(api) == 1
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await client.close()
