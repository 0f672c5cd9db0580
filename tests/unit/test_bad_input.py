"""A corpus of malformed Services: each gets its Events over real HTTP, none crashes anything, and
the one good service keeps its VIP throughout."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from lightkube import AsyncClient, KubeConfig

from kvip.core.decide import DecideConfig, decide
from kvip.core.model import ClusterSnapshot, EndpointView
from kvip.kube import convert
from kvip.kube.events import EventRecorder
from kvip.lab.apiserver import StandIn
from kvip.lab.objects import load_balancer_service, namespace

IPS = "kube-vip.io/loadbalancerIPs"


def broken(name: str, *, annotations: dict[str, str] | None = None, spec: dict[str, Any] | None = None,
           status: Any = None) -> dict[str, Any]:
    obj = load_balancer_service(name, external_traffic_policy="Cluster", annotations=annotations)
    obj["spec"].update(spec or {})
    if status is not None:
        obj["status"] = status
    return obj


CORPUS: list[tuple[str, dict[str, Any]]] = [
    ("octet-out-of-range", broken("b01", annotations={IPS: "10.96.0.300"})),
    ("empty-entries", broken("b02", annotations={IPS: ",,,"})),
    ("hostname-not-ip", broken("b03", annotations={IPS: "lb.example.com"})),
    ("cidr-not-ip", broken("b04", annotations={IPS: "10.96.0.0/24"})),
    ("link-local-v6", broken("b05", annotations={IPS: "fe80::1"})),
    ("link-local-v4", broken("b06", annotations={IPS: "169.254.1.1"})),
    ("loopback", broken("b07", annotations={IPS: "127.0.0.1"})),
    ("unspecified", broken("b08", annotations={IPS: "0.0.0.0"})),
    ("multicast", broken("b09", annotations={IPS: "224.0.0.5"})),
    ("v4-mapped-v6", broken("b10", annotations={IPS: "::ffff:10.96.0.1"})),
    ("broadcast", broken("b11", annotations={IPS: "255.255.255.255"})),
    ("garbage-unicode", broken("b12", annotations={IPS: "１０.96.0.1"})),
    ("double-colon-twice", broken("b13", annotations={IPS: "2001:db8::1::2"})),
    ("spaces-inside", broken("b14", annotations={IPS: "10.96. 0.1"})),
    ("bad-spec-ip", broken("b15", spec={"loadBalancerIP": "not-an-ip"})),
    ("v6-on-v4-only-service", broken("b16", annotations={IPS: "2001:db8::5"}, spec={"ipFamilies": ["IPv4"]})),
    ("v4-on-v6-only-service", broken("b17", annotations={IPS: "10.96.0.17"}, spec={"ipFamilies": ["IPv6"]})),
    ("ignore-not-boolean", broken("b18", annotations={IPS: "10.96.0.18", "kube-vip.io/ignore": "sometimes"})),
    ("negative-number", broken("b19", annotations={IPS: "-1"})),
    ("trailing-garbage", broken("b20", annotations={IPS: "10.96.0.20x"})),
    ("bad-status-ingress", broken("b21", status={"loadBalancer": {"ingress": [{"ip": "999.1.1.1"}]}})),
    ("conflicting-port-a", broken("b22", annotations={IPS: "10.96.0.99"})),
    ("conflicting-port-b", broken("b23", annotations={IPS: "10.96.0.99"})),
]
GOOD = load_balancer_service("good", vips=["10.96.0.1"], external_traffic_policy="Cluster")


def snapshot(objects: list[dict[str, Any]]) -> ClusterSnapshot:
    views = {v.key: v for v in (convert.service_view(o) for o in objects)}
    return ClusterSnapshot(views, {k: (EndpointView(("10.244.0.9",), "node-b"),) for k in views})


def test_corpus_is_large_enough() -> None:
    assert len(CORPUS) >= 20


@pytest.mark.parametrize("case,obj", CORPUS, ids=[c for c, _ in CORPUS])
def test_each_malformed_service_is_reported_and_never_costs_the_good_vip(case: str, obj: dict[str, Any]) -> None:
    config = DecideConfig(node_name="node-a")
    alone = decide(config, snapshot([GOOD]))
    together = decide(config, snapshot([GOOD, obj, *(o for c, o in CORPUS if c.startswith("conflicting"))]))
    assert {str(v) for v in together.vips} >= {str(v) for v in alone.vips} == {"10.96.0.1"}
    name = obj["metadata"]["name"]
    assert any(p.service.name == name for p in together.problems), case
    assert all(p.service.name != "good" for p in together.problems)


async def test_every_malformed_service_gets_its_event_once_over_http() -> None:
    api = StandIn()
    await api.start()
    api.create(namespace("default"))
    client = AsyncClient(config=KubeConfig.from_dict(api.kubeconfig()))
    recorder = EventRecorder(client, node_name="node-a")
    task = asyncio.create_task(recorder.run())
    try:
        state = decide(DecideConfig(node_name="node-a"), snapshot([GOOD, *(o for _, o in CORPUS)]))
        for _ in range(3):  # three reconcile passes with the same problems: still one Event each
            recorder.report(state.problems)
        expected = {(p.service.name, p.message) for p in state.problems}
        async with asyncio.timeout(10):
            while len(api.list("events", "default")) < len(expected):
                await asyncio.sleep(0.05)
        await asyncio.sleep(0.3)
        events = api.list("events", "default")
        assert {(e["involvedObject"]["name"], e["message"]) for e in events} == expected
        assert len(events) == len(expected)
        assert {e["involvedObject"]["name"] for e in events} == {o["metadata"]["name"] for _, o in CORPUS}
    finally:
        task.cancel()
        await client.close()
        await api.close()
