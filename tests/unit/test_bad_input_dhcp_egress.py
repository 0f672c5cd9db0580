"""The bad-input corpus for DHCP and egress annotations (kvip issue #19): a malformed `kube-vip.io/hwaddr`, a
`kube-vip.io/requestedIP` of the wrong family or garbage, egress networks and ports that do not parse. Each is
one problem against its own Service (so one Event), costs only what it names — the DHCP client for a bad
MAC, the requested address for a bad requestedIP, the SNAT for bad egress annotations — never another
Service's VIP, lease or rule, and never raises. The e2e corpus (`tests/e2e/bad_input_cases.py`) plays a few
of these through a real agent; this plays them all through decide() and the Event recorder."""

from __future__ import annotations

import asyncio
import ipaddress
from typing import Any

import pytest
from lightkube import AsyncClient, KubeConfig

from kvip.core.decide import DecideConfig, decide
from kvip.core.dhcp import DhcpLease, dhcp_ask
from kvip.core.egress import EgressSettings
from kvip.core.model import (
    ClusterSnapshot,
    ElectionMode,
    EndpointView,
    Leadership,
    ServiceKey,
)
from kvip.kube import convert
from kvip.kube.events import EventRecorder, RateLimits
from kvip.lab.apiserver import StandIn
from kvip.lab.objects import load_balancer_service, namespace

HERE = "node-a"
HWADDR, REQUESTED = "kube-vip.io/hwaddr", "kube-vip.io/requestedIP"
EGRESS = {"kube-vip.io/egress": "true"}
DENIED, ALLOWED, PORTS = ("kube-vip.io/egress-denied-networks", "kube-vip.io/egress-allowed-networks",
                          "kube-vip.io/egress-destination-ports")
CONFIG = DecideConfig(node_name=HERE, election=ElectionMode.GLOBAL,
                      egress=EgressSettings((ipaddress.ip_network("10.244.0.0/16"),)))

BAD_MACS = ["01:00:5e:00:00:01", "ff:ff:ff:ff:ff:ff", "00:00:00:00:00:00", "02:00:00:00:01", "02:00:00:00:00:01:02",
            "02-00:00:00:00:01", "zz:zz:zz:zz:zz:zz", "0200.0000.0001", "02:00:00:00:00:0１", "02:00:00:00:00:01\nx",
            "x" * 5000]
BAD_REQUESTED = ["2001:db8::5", "10.250.200.300", "garbage", "0.0.0.0", "224.0.0.1", "10.1.1.1/24", "1" * 5000,
                 "１0.1.1.1"]
BAD_NETWORKS = ["10.0.0.0/33", "not-a-network", "10.0.0.0/8,,x", "fe80::1%eth0", "１0.0.0.0/8", "10.0.0.0/8/8",
                ",".join(f"10.{i // 256}.{i % 256}.0/24" for i in range(300)), "10.0.0.0/8 " * 2000]
BAD_PORTS = ["tcp:0", "tcp:65536", "icmp:1", "tcp:", "443x", "tcp:-1", "tcp:４４３", "tcp:443:1", "udp:53," * 300]


def dhcp_service(name: str, annotations: dict[str, str]) -> dict[str, Any]:
    return load_balancer_service(name, vips=["0.0.0.0"], via="spec", external_traffic_policy="Cluster",
                                 annotations=annotations)


def egress_service(name: str, vip: str, annotations: dict[str, str]) -> dict[str, Any]:
    return load_balancer_service(name, vips=[vip], external_traffic_policy="Cluster", annotations={**EGRESS,
                                                                                                  **annotations})


CORPUS: list[tuple[str, dict[str, Any], str]] = [  # (case, Service, what it costs)
    *((f"mac{i}", dhcp_service(f"mac{i}", {HWADDR: v}), "dhcp") for i, v in enumerate(BAD_MACS)),
    *((f"req{i}", dhcp_service(f"req{i}", {REQUESTED: v}), "requested") for i, v in enumerate(BAD_REQUESTED)),
    *((f"deny{i}", egress_service(f"deny{i}", f"10.96.5.{i + 1}", {DENIED: v}), "egress")
      for i, v in enumerate(BAD_NETWORKS)),
    *((f"allow{i}", egress_service(f"allow{i}", f"10.96.6.{i + 1}", {ALLOWED: v}), "egress")
      for i, v in enumerate(BAD_NETWORKS)),
    *((f"port{i}", egress_service(f"port{i}", f"10.96.7.{i + 1}", {PORTS: v}), "egress")
      for i, v in enumerate(BAD_PORTS)),
    ("egress-v6-no-v6-vip", egress_service("egv6", "10.96.8.1", {"kube-vip.io/egress-ipv6": "true"}), "egress"),
    ("egress-maybe", egress_service("egmaybe", "10.96.8.2", {"kube-vip.io/egress": "sometimes"}), "egress"),
]
GOOD_EGRESS = egress_service("good-egress", "10.96.0.1", {DENIED: "192.168.0.0/16", PORTS: "tcp:443"})
GOOD_DHCP = dhcp_service("good-dhcp", {HWADDR: "02:00:00:00:00:09", REQUESTED: "10.250.200.20"})
GOOD_LEASE = DhcpLease(ipaddress.ip_address("10.250.200.20"), "vip-good")


def snapshot(objects: list[dict[str, Any]]) -> ClusterSnapshot:
    views = {v.key: v for v in (convert.service_view(o) for o in objects)}
    return ClusterSnapshot(views, {k: (EndpointView(("10.244.1.5",), HERE),) for k in views})


def decided(objects: list[dict[str, Any]]) -> Any:
    cluster = snapshot([GOOD_EGRESS, GOOD_DHCP, *objects])
    return decide(CONFIG, cluster, Leadership(is_global_leader=True),
                  dhcp={ServiceKey("default", "good-dhcp"): GOOD_LEASE})


def test_the_corpus_covers_every_kind() -> None:
    assert len(CORPUS) >= 40
    assert {cost for _, _, cost in CORPUS} == {"dhcp", "requested", "egress"}


@pytest.mark.parametrize("case,obj,cost", CORPUS, ids=[c for c, _, _ in CORPUS])
def test_each_bad_annotation_is_reported_against_its_service_and_costs_only_what_it_names(
        case: str, obj: dict[str, Any], cost: str) -> None:
    alone, together = decided([]), decided([obj])
    name = obj["metadata"]["name"]
    assert [p for p in together.problems if p.service.name == name], case
    assert all(p.service.name not in ("good-egress", "good-dhcp") for p in together.problems)
    assert together.egress >= alone.egress and {str(v) for v in together.vips} >= {"10.96.0.1", "10.250.200.20"}
    key = ServiceKey("default", name)
    ask = dhcp_ask(convert.service_view(obj))[0]
    if cost == "dhcp":
        assert ask is None  # another MAC would lease another address: no client at all
    elif cost == "requested":
        assert ask is not None and ask.requested is None  # asked for any address, with its own MAC
    else:
        assert not [r for r in together.egress if r.service == key]  # never more SNAT than asked...
        assert together.decisions[key].advertised  # ...and the VIP itself stays


async def test_every_bad_dhcp_or_egress_annotation_gets_its_event_once_over_http() -> None:
    api = StandIn()
    await api.start()
    api.create(namespace("default"))
    client = AsyncClient(config=KubeConfig.from_dict(api.kubeconfig()))
    recorder = EventRecorder(client, node_name=HERE, limits=RateLimits(global_burst=1000))  # all at once
    task = asyncio.create_task(recorder.run())
    try:
        state = decided([obj for _, obj, _ in CORPUS])
        for _ in range(3):  # three passes with the same problems: still one Event each
            recorder.report(state.problems)
        expected = {(p.service.name, p.message) for p in state.problems}
        async with asyncio.timeout(20):
            while len(api.list("events", "default")) < len(expected):
                await asyncio.sleep(0.05)
        await asyncio.sleep(0.3)
        events = api.list("events", "default")
        assert {(e["involvedObject"]["name"], e["message"]) for e in events} == expected
        assert {e["involvedObject"]["name"] for e in events} == {o["metadata"]["name"] for _, o, _ in CORPUS}
        assert all(len(e["message"]) < 1100 for e in events)  # quoted and cut, never the raw 5000 characters
    finally:
        task.cancel()
        await client.close()
        await api.stop()
