"""A corpus of ≥ 150 malformed objects fed through the API stand-in to a running agent: every one that
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
                 ",".join(f"10.96.{i}.300" for i in range(300)),  # a huge list of bad entries
                 # kvip issue #17: zone ids, non-ASCII digits, log forging, too many or too long
                 "2001:db8::99%x", "2001:db8::99%eth0", "2001:db8::99%1\nforged", "fe80::1%lo",
                 "10.96.0.1\n2024-01-01 ERROR forged", "10.96.0.1\r\nforged", "\x1b[2J10.96.0.1", "\u202e1.0.69.01",
                 "١٠.96.0.1", "10.96.0.²", "10.096.0.1", "010.96.0.1", "10.96.0.1.", ".10.96.0.1", "10..96.0.1",
                 "2001:db8:::1", "2001:db8::1:2:3:4:5:6:7", "2001:db8::/64", "10.96.0.1 10.96.0.2", "1.2.3",
                 "256.0.0.1", "10.96.0.-1", "0.0.0.0/0", "::/0", "ff00::", "239.255.255.255", "127.255.255.254",
                 "::1%lo", "2001:db8::1%25eth0", "[::1]:80", "10.96.0.1:80", "http://10.96.0.1", "ⅰ.1.1.1",
                 "10.96.0.1\x00",
                 ",".join(f"10.97.0.{i}" for i in range(1, 18)),  # 17 VIPs: over the limit of 16
                 ",".join(f"10.{100 + i // 62500}.{i // 250 % 250}.{i % 250 + 1}" for i in range(20_000)),
                 "x" * 70_000, "10.96.0.1" + " " * 70_000, "1" * 5000, "0", "4294967295", "2001:db8::1" * 10]
LOCAL_PREFS = ["²", "1" * 5000, "-1", "4294967296", "٣٠٠", "+200", "1e3", "0x10", "200\nforged", "", "abc"]
COMMUNITIES = ["²:1", "65000:" + "9" * 5000, "65536:1", "65000:65536", "65000", "65000:1:2", "no-such-name",
               ",".join(f"65000:{i}" for i in range(33)), "65000:1\nforged", "x" * 70_000]
LARGE_COMMUNITIES = ["1:2", "4294967296:1:1", "1:²:1", ",".join(f"1:1:{i}" for i in range(33)), "1:2:3:4"]
INTERFACES = ["eth0\nforged", "a" * 16, "../etc", "eth 0", "eth0:1", "/dev/null", "-eth0"]
WRONG_TYPES: list[tuple[str, dict[str, Any]]] = [
    ("ann-list", {"metadata": {"annotations": {IPS: ["10.96.4.1"]}}}),
    ("ann-null", {"metadata": {"annotations": {IPS: None}}}),
    ("ann-object", {"metadata": {"annotations": {IPS: {"ip": "10.96.4.1"}}}}),
    ("ann-number", {"metadata": {"annotations": {"kvip.io/bgp-local-pref": 200}}}),
    ("annotations-list", {"metadata": {"annotations": ["x"]}}),
    ("lbip-list", {"spec": {"loadBalancerIP": ["10.96.4.1"]}}),
    ("lbip-number", {"spec": {"loadBalancerIP": 167772161}}),
    ("lbip-zone", {"spec": {"loadBalancerIP": "2001:db8::4%x"}}),
    ("lbip-long", {"spec": {"loadBalancerIP": "1" * 1000}}),
    ("ports-string", {"spec": {"ports": "80"}}),
    ("ports-object", {"spec": {"ports": {"port": 80}}}),
    ("port-bool", {"spec": {"ports": [{"port": True}]}}),
    ("port-huge", {"spec": {"ports": [{"port": 70000}]}}),
    ("port-negative", {"spec": {"ports": [{"port": -1}]}}),
    ("port-float", {"spec": {"ports": [{"port": 80.5}]}}),
    ("port-protocol", {"spec": {"ports": [{"port": 80, "protocol": "TCP\nforged"}]}}),
    ("ports-many", {"spec": {"ports": [{"port": i, "name": f"p{i}"} for i in range(1, 300)]}}),
    ("families-string", {"spec": {"ipFamilies": "IPv4"}}),
    ("families-many", {"spec": {"ipFamilies": ["IPv4", "IPv6", "IPv4"]}}),
    ("families-nested", {"spec": {"ipFamilies": [["IPv4"]]}}),
    ("class-object", {"spec": {"loadBalancerClass": {"x": 1}}}),
    ("policy-list", {"spec": {"externalTrafficPolicy": ["Local"]}}),
    ("ingress-string", {"status": {"loadBalancer": {"ingress": "10.96.4.1"}}}),
    ("ingress-many", {"status": {"loadBalancer": {"ingress": [{"ip": f"10.96.5.{i}"} for i in range(1, 30)]}}}),
    ("ingress-ip-list", {"status": {"loadBalancer": {"ingress": [{"ip": ["10.96.4.1"]}]}}}),
    ("ingress-zone", {"status": {"loadBalancer": {"ingress": [{"ip": "2001:db8::5%eth0"}]}}}),
    ("ann-bool", {"metadata": {"annotations": {"kube-vip.io/ignore": True}}}),
]


def merged(name: str, patch: dict[str, Any]) -> dict[str, Any]:
    """A LoadBalancer Service with `patch` merged into its metadata, spec and status."""
    obj = lb(name)
    for part, fields in patch.items():
        if isinstance(obj.get(part), dict):
            obj[part].update(fields)
        else:
            obj[part] = fields
    return obj

# Each: (name, objects to create, whether decide() reports a problem → an Event)
CORPUS: list[tuple[str, list[dict[str, Any]], bool]] = [
    (f"addr{i}", [annotated(f"addr{i}", value)], True) for i, value in enumerate(BAD_ADDRESSES)
] + [
    (f"lpref{i}", [lb(f"lpref{i}", vips=[f"10.96.6.{i + 1}"], annotations={"kvip.io/bgp-local-pref": v})], False)
    for i, v in enumerate(LOCAL_PREFS)  # BGP attributes are read in BGP mode only: no Event in table mode
] + [
    (f"comm{i}", [lb(f"comm{i}", vips=[f"10.96.7.{i + 1}"], annotations={"kvip.io/bgp-communities": v})],
     v.startswith("x" * 100))  # over 64 KiB: refused at the conversion, whatever the mode
    for i, v in enumerate(COMMUNITIES)
] + [
    (f"lcomm{i}", [lb(f"lcomm{i}", vips=[f"10.96.8.{i + 1}"], annotations={"kvip.io/bgp-large-communities": v})],
     False) for i, v in enumerate(LARGE_COMMUNITIES)
] + [
    (f"iface{i}", [lb(f"iface{i}", vips=[f"10.96.9.{i + 1}"], annotations={"kube-vip.io/serviceInterface": v})],
     True) for i, v in enumerate(INTERFACES)
] + [
    (f"type-{name}", [merged(f"type-{name}", patch)], True) for name, patch in WRONG_TYPES
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
    assert len(CORPUS) >= 150
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
        while True:  # an Event each, or (past the recorder's Event rate limit) a log line each
            warned = {e["involvedObject"]["name"] for e in lab.api.list("events", "default") if e["type"] == "Warning"}
            logged = {name for name in expected if f"service default/{name}: " in lab.agent_log("node-a")}
            if expected <= warned | logged:
                break
            assert asyncio.get_running_loop().time() < deadline, f"not reported: {sorted(expected - warned - logged)}"
            await asyncio.sleep(0.2)
        await asyncio.sleep(3.5)  # a full resync with all of it in the cache
        agent = lab.agents["node-a"]
        assert agent.running, lab.agent_log("node-a")[-3000:]
        assert "Traceback" not in lab.agent_log("node-a")
        assert all(line.startswith("20") for line in lab.agent_log("node-a").splitlines() if line), "a forged log line"
        assert "10.96.0.1/32" in lab.routes("node-a")
        assert {"10.96.3.20/32", "10.96.3.22/32", "10.96.3.23/32", "10.96.3.29/32"} <= lab.routes("node-a")
