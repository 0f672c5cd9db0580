"""A corpus of ≥ 50 malformed objects fed through the API stand-in to a running agent: every one that
names a problem gets its Event, none crashes the agent, and the good VIP never leaves the table."""

from __future__ import annotations

import asyncio
import copy
from pathlib import Path
from typing import Any

import pytest

from kvip.lab.cluster import LabCluster
from kvip.lab.objects import Endpoint, endpoint_slice, load_balancer_service

pytestmark = pytest.mark.root

IPS = "kube-vip.io/loadbalancerIPs"


def lb(name: str, **kw: Any) -> dict[str, Any]:
    return load_balancer_service(name, external_traffic_policy="Cluster", **kw)


def annotated(name: str, value: str) -> dict[str, Any]:
    return lb(name, annotations={IPS: value})


def spec_patched(name: str, **spec: Any) -> dict[str, Any]:
    obj = lb(name)
    obj["spec"].update(spec)
    return obj


BAD_ADDRESSES = ["10.96.0.300", ",,,", "lb.example.com", "10.96.0.0/24", "fe80::1", "169.254.1.1", "127.0.0.1",
                 "0.0.0.0", "224.0.0.5", "::ffff:10.96.0.1", "255.255.255.255", "１０.96.0.1", "2001:db8::1::2",
                 "10.96. 0.1", "-1", "10.96.0.20x", "::", "::1", "ff02::1", "10.96.0", "1.2.3.4.5", "0x0a.0.0.1",
                 "10.96.0.1%eth0", "[2001:db8::1]", "2001:db8::g", " ; drop table", "ö", "10.96.0.1,10.96.0.300",
                 ",".join(f"10.96.{i}.300" for i in range(300))]  # a huge list of bad entries

# Each: (name, objects to create, whether decide() reports a problem → an Event)
CORPUS: list[tuple[str, list[dict[str, Any]], bool]] = [
    (f"addr{i}", [annotated(f"addr{i}", value)], True) for i, value in enumerate(BAD_ADDRESSES)
] + [
    ("badspec", [spec_patched("badspec", loadBalancerIP="not-an-ip")], True),
    ("v6onv4", [spec_patched("v6onv4", ipFamilies=["IPv4"]) | {"metadata": {
        "name": "v6onv4", "namespace": "default", "annotations": {IPS: "2001:db8::5"}}}], True),
    ("v4onv6", [spec_patched("v4onv6", ipFamilies=["IPv6"]) | {"metadata": {
        "name": "v4onv6", "namespace": "default", "annotations": {IPS: "10.96.0.17"}}}], True),
    ("ignoremaybe", [lb("ignoremaybe", vips=["10.96.3.1"], annotations={"kube-vip.io/ignore": "sometimes"})], True),
    ("badingress", [lb("badingress") | {"status": {"loadBalancer": {"ingress": [{"ip": "999.1.1.1"}]}}}], True),
    ("clash-a", [lb("clash-a", vips=["10.96.3.9"])], True),
    ("clash-b", [lb("clash-b", vips=["10.96.3.9"])], True),
    ("noports", [spec_patched("noports", ports=None) | {"metadata": {
        "name": "noports", "namespace": "default", "annotations": {IPS: "10.96.3.20"}}}], False),
    ("weirdpolicy", [spec_patched("weirdpolicy", externalTrafficPolicy="Sideways") | {"metadata": {
        "name": "weirdpolicy", "namespace": "default", "annotations": {IPS: "10.96.3.21"}}}], False),
    ("hugeannotation", [lb("hugeannotation", vips=["10.96.3.22"], annotations={"x.io/blob": "y" * 200_000})], False),
    ("unicode-label", [lb("unicode-label", vips=["10.96.3.23"]) | {"metadata": {
        "name": "unicode-label", "namespace": "default", "labels": {"app": "ünïcødé"}}}], False),
    ("otherclass", [lb("otherclass", vips=["10.96.3.24"], load_balancer_class="acme.io/lb")], False),
    ("orphan-slice", [endpoint_slice("no-such-service", [Endpoint("10.244.9.9", "node-a")])], False),
    ("slice-no-endpoints", [lb("slice-no-endpoints", vips=["10.96.3.25"]),
                            endpoint_slice("slice-no-endpoints", []) | {"endpoints": None}], False),
    ("slice-no-addresses", [lb("slice-no-addresses", vips=["10.96.3.26"]),
                            endpoint_slice("slice-no-addresses", []) | {"endpoints": [{"nodeName": "node-a"}]}], False),
    ("slice-garbage-conditions", [lb("slice-garbage-conditions", vips=["10.96.3.27"]), endpoint_slice(
        "slice-garbage-conditions", []) | {"endpoints": [{"addresses": ["x"], "conditions": "ready"}]}], False),
    ("slice-no-label", [endpoint_slice("x", [Endpoint("10.244.9.8", "node-a")], name="unlabelled") | {
        "metadata": {"name": "unlabelled", "namespace": "default"}}], False),
    ("slice-huge", [lb("slice-huge", vips=["10.96.3.28"]), endpoint_slice(
        "slice-huge", [Endpoint(f"10.245.{i // 250}.{i % 250 + 1}", "node-b") for i in range(1000)])], False),
    ("dup-vips", [annotated("dup-vips", "10.96.3.29,10.96.3.29,10.96.3.29")], False),
    ("nodeport-type", [spec_patched("nodeport-type", type="NodePort")], False),
    ("missing-spec", [{"apiVersion": "v1", "kind": "Service", "metadata": {"name": "missing-spec",
                                                                          "namespace": "default"}}], False),
]


async def test_corpus_through_the_stand_in_never_costs_the_good_vip(tmp_path: Path) -> None:
    assert len(CORPUS) >= 50
    async with LabCluster(("node-a",), workdir=tmp_path, resync_period=3.0) as lab:
        lab.api.create(lb("good", vips=["10.96.0.1"]))
        lab.api.create(endpoint_slice("good", [Endpoint("10.244.1.1", "node-b")]))
        lab.start_agent("node-a")
        await lab.wait_for({"node-a": {"10.96.0.1/32"}})
        for name, objects, _ in CORPUS:
            for obj in objects:
                lab.api.create(copy.deepcopy(obj))
                if obj["kind"] == "Service" and "slice" not in name and name != "orphan-slice":
                    lab.api.create(endpoint_slice(obj["metadata"]["name"], [Endpoint("10.244.2.2", "node-b")]))
            assert "10.96.0.1/32" in lab.routes("node-a")
        expected = {name for name, _, reports in CORPUS if reports}
        deadline = asyncio.get_running_loop().time() + 20
        while True:
            warned = {e["involvedObject"]["name"] for e in lab.api.list("events", "default") if e["type"] == "Warning"}
            if expected <= warned:
                break
            assert asyncio.get_running_loop().time() < deadline, f"no Event for {sorted(expected - warned)}"
            await asyncio.sleep(0.2)
        await asyncio.sleep(3.5)  # a full resync with all of it in the cache
        agent = lab.agents["node-a"]
        assert agent.running, lab.agent_log("node-a")[-3000:]
        assert "Traceback" not in lab.agent_log("node-a")
        assert "10.96.0.1/32" in lab.routes("node-a")
        assert {"10.96.3.20/32", "10.96.3.22/32", "10.96.3.23/32", "10.96.3.29/32"} <= lab.routes("node-a")
