"""The heartbeat Lease against the API stand-in over HTTP: renewed by one PATCH (no GET), created on 404,
and the same size at 100 and at 10,000 VIPs (kvip issue #21)."""

from __future__ import annotations

import ipaddress
import json
from collections.abc import AsyncIterator

import pytest
from lightkube import AsyncClient, KubeConfig

from kvip.kube.heartbeat import (
    LEGACY_ADVERTISED,
    LEGACY_DESIRED,
    MAX_LISTED,
    HeartbeatPublisher,
    NodeView,
    VipSetDigest,
    view_from_annotations,
)
from kvip.lab.apiserver import WRITE_VERBS, StandIn
from kvip.lab.objects import namespace

NS = "kube-system"
LEASE = "kvip-node-node-a"
# Exactly what kvip.deploy.rbac grants the agent without election: a GET would be refused.
HEARTBEAT_ONLY = {("coordination.k8s.io", "leases", "create", NS), ("coordination.k8s.io", "leases", "patch", NS)}


def vips(count: int, start: int = 0) -> list[str]:
    base = int(ipaddress.ip_address("10.96.0.0"))
    return [str(ipaddress.ip_address(base + i)) for i in range(start, start + count)]


@pytest.fixture
async def api() -> AsyncIterator[StandIn]:
    standin = StandIn(tokens={"token-a": "node-a"})
    await standin.start()
    standin.create(namespace(NS))
    standin.set_allowed("node-a", HEARTBEAT_ONLY)
    try:
        yield standin
    finally:
        await standin.stop()


@pytest.fixture
async def publisher(api: StandIn) -> AsyncIterator[HeartbeatPublisher]:
    client = AsyncClient(config=KubeConfig.from_dict(api.kubeconfig(token="token-a")))
    yield HeartbeatPublisher(client, node_name="node-a", namespace=NS, mode="table", period=30.0)
    await client.close()


def lease_requests(api: StandIn, after: int) -> list[tuple[str, int]]:
    return [(r.verb, r.status) for r in api.request_log(resource="leases", after=after)]


def stored_size(api: StandIn) -> int:
    return len(json.dumps(api.get("leases", LEASE, NS), separators=(",", ":")))


async def test_first_write_creates_on_404_and_every_renewal_after_is_one_patch_without_a_get(
        api: StandIn, publisher: HeartbeatPublisher) -> None:
    publisher.report(vips(100), vips(100))
    await publisher.renew()
    assert lease_requests(api, 0) == [("patch", 404), ("create", 201)]
    for _ in range(3):
        mark = api.requests_served
        await publisher.renew()
        assert lease_requests(api, mark) == [("patch", 200)]
    lease = api.get("leases", LEASE, NS)
    assert lease["spec"]["holderIdentity"] == "node-a"
    assert view_from_annotations(lease["metadata"]["annotations"]) == NodeView.of(vips(100), vips(100), mode="table")


async def test_a_renewal_sends_the_annotations_only_when_the_view_changed(api: StandIn,
                                                                        publisher: HeartbeatPublisher) -> None:
    publisher.report(vips(10), vips(10))
    await publisher.renew()
    mark = api.requests_served
    await publisher.renew()
    [unchanged] = api.request_log(resource="leases", verbs=WRITE_VERBS, after=mark)
    publisher.report(vips(9), vips(10))
    await publisher.renew()
    [changed] = api.request_log(resource="leases", verbs=WRITE_VERBS, after=unchanged.seq)
    assert unchanged.bytes_in < 80 < changed.bytes_in  # {"spec":{"renewTime":...}} alone, then the new digests
    said = view_from_annotations(api.get("leases", LEASE, NS)["metadata"]["annotations"])
    assert said.advertised == VipSetDigest.of(vips(9)) and said.missing == ("10.96.0.9",)


@pytest.mark.parametrize("drift", [0, 40])
async def test_the_lease_and_its_renewal_are_the_same_size_at_100_and_10000_vips(api: StandIn, drift: int) -> None:
    sizes = {}
    for count in (100, 10_000):
        client = AsyncClient(config=KubeConfig.from_dict(api.kubeconfig(token="token-a")))
        beat = HeartbeatPublisher(client, node_name="node-a", namespace=NS, mode="table", period=30.0)
        beat.report(vips(count - drift, start=drift), vips(count))  # the first `drift` VIPs not (yet) advertised
        await beat.renew()
        mark = api.requests_served
        await beat.renew()
        [renewal] = api.request_log(resource="leases", verbs=WRITE_VERBS, after=mark)
        sizes[count] = (stored_size(api), renewal.bytes_in)
        await client.close()
        api.delete("leases", LEASE, NS)
    (small_doc, small_renewal), (large_doc, large_renewal) = sizes[100], sizes[10_000]
    assert large_renewal == small_renewal
    assert large_doc - small_doc <= 8  # only the digits of the two counts grow
    assert large_doc < 2048


async def test_a_lease_left_by_an_older_kvip_loses_its_full_lists_on_the_first_write(
        api: StandIn, publisher: HeartbeatPublisher) -> None:
    api.create({"apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
                "metadata": {"name": LEASE, "namespace": NS, "labels": {"kvip.io/heartbeat": "true"},
                             "annotations": {LEGACY_ADVERTISED: json.dumps(vips(500)),
                                             LEGACY_DESIRED: json.dumps(vips(500))}},
                "spec": {"holderIdentity": "node-a"}})
    publisher.report(vips(3), vips(3))
    await publisher.renew()
    annotations = api.get("leases", LEASE, NS)["metadata"]["annotations"]
    assert LEGACY_ADVERTISED not in annotations and LEGACY_DESIRED not in annotations
    assert view_from_annotations(annotations).advertised == VipSetDigest.of(vips(3))


async def test_a_deleted_lease_is_created_again_with_the_current_view(api: StandIn,
                                                                     publisher: HeartbeatPublisher) -> None:
    publisher.report(vips(5), vips(5))
    await publisher.renew()
    api.delete("leases", LEASE, NS)
    await publisher.renew()
    annotations = api.get("leases", LEASE, NS)["metadata"]["annotations"]
    assert view_from_annotations(annotations) == NodeView.of(vips(5), vips(5), mode="table")


def test_only_max_listed_differences_are_written_however_many_there_are() -> None:
    view = NodeView.of(vips(10), vips(1000))
    assert len(view.missing) == MAX_LISTED and view.desired.count == 1000


def test_a_legacy_lease_reads_as_the_same_view() -> None:
    legacy = {LEGACY_ADVERTISED: json.dumps(vips(4)), LEGACY_DESIRED: json.dumps(vips(5)), "kvip.io/mode": "bgp"}
    assert view_from_annotations(legacy) == NodeView.of(vips(4), vips(5), mode="bgp")
