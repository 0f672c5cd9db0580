"""A status write's own watch event wakes no pass: first sync writes each status once, in linear time.

The rule (`settled_by_status`) with plain values and hypothesis — whenever it calls an update quiet,
decide() gives the same answer before and after it — and then a whole agent against the API stand-in:
Services without status get theirs written once each, and the writes' own events cost no pass.
"""

from __future__ import annotations

import asyncio
import ipaddress
from collections.abc import AsyncIterator, Callable
from dataclasses import replace
from types import MappingProxyType

import pytest
from hypothesis import given
from hypothesis import strategies as st
from lightkube import AsyncClient, KubeConfig

from kvip.agent.wiring import Agent
from kvip.config.agent import AgentConfig
from kvip.core.decide import DecideConfig, decide
from kvip.core.model import (
    ClusterSnapshot,
    DesiredState,
    EndpointView,
    IPAddress,
    ServiceKey,
    ServiceView,
)
from kvip.core.vips import LOADBALANCER_IPS_ANNOTATION
from kvip.dataplane.base import DataplaneBase
from kvip.kube.status_writer import settled_by_status
from kvip.lab.apiserver import WRITE_VERBS, StandIn
from kvip.lab.objects import (
    Endpoint,
    endpoint_slice,
    load_balancer_service,
    namespace,
    node,
)

WEB = ServiceKey("default", "web")
HERE = "n1"


def web(*, annotation: str | None = None, spec: str | None = None, ingress: tuple[str, ...] = (),
        rv: str = "1") -> ServiceView:
    annotations = {LOADBALANCER_IPS_ANNOTATION: annotation} if annotation is not None else {}
    return ServiceView(WEB, load_balancer_ip=spec, ingress_ips=ingress, resource_version=rv,
                       annotations=MappingProxyType(annotations))


def test_our_own_write_of_the_spec_vip_is_quiet() -> None:
    assert settled_by_status(web(spec="10.96.0.7"), web(spec="10.96.0.7", ingress=("10.96.0.7",), rv="2"))


def test_our_own_write_of_annotated_dual_stack_vips_is_quiet() -> None:
    old = web(annotation="10.96.0.7, fd00::7")
    assert settled_by_status(old, replace(old, ingress_ips=("10.96.0.7", "fd00::7"), resource_version="2"))


def test_a_resource_version_alone_is_quiet() -> None:
    assert settled_by_status(web(spec="10.96.0.7"), web(spec="10.96.0.7", rv="2"))


def test_the_advertised_by_annotation_written_by_one_node_wakes_no_pass_on_any_node() -> None:
    old = web(annotation="10.96.0.7")
    written = replace(old, resource_version="2", annotations=MappingProxyType(
        {**old.annotations, "kvip.io/advertised-by": "node-a,node-b"}))
    assert settled_by_status(old, written)
    rewritten = replace(written, resource_version="3", annotations=MappingProxyType(
        {**written.annotations, "kvip.io/advertised-by": "node-b"}))
    assert settled_by_status(written, rewritten)
    # ... but any annotation decide() reads is still a change, even in the same update.
    edited = replace(written, annotations=MappingProxyType(
        {**written.annotations, LOADBALANCER_IPS_ANNOTATION: "10.96.0.8"}))
    assert not settled_by_status(old, edited)


def test_somebody_writing_other_addresses_into_the_status_is_a_change() -> None:
    assert not settled_by_status(web(spec="10.96.0.7"), web(spec="10.96.0.7", ingress=("10.96.0.8",), rv="2"))


def test_a_status_cleared_by_somebody_is_a_change() -> None:
    assert not settled_by_status(web(spec="10.96.0.7", ingress=("10.96.0.7",)), web(spec="10.96.0.7", rv="2"))


def test_a_spec_change_arriving_with_the_status_is_a_change() -> None:
    assert not settled_by_status(web(spec="10.96.0.7"), web(spec="10.96.0.8", ingress=("10.96.0.7",), rv="2"))


def test_a_status_that_is_the_vip_source_is_a_change() -> None:
    assert not settled_by_status(web(ingress=("10.96.0.7",)), web(ingress=("10.96.0.8",), rv="2"))


def test_a_new_service_is_a_change() -> None:
    assert not settled_by_status(None, web(spec="10.96.0.7"))


ADDRESSES = st.sampled_from(["10.96.0.7", "10.96.0.8", "fd00::7", "garbage", " 10.96.0.7"])
SOURCES = st.one_of(st.none(), ADDRESSES, st.lists(ADDRESSES, max_size=3).map(", ".join))
INGRESS = st.lists(ADDRESSES, max_size=3).map(tuple)


@given(SOURCES, st.one_of(st.none(), ADDRESSES), INGRESS, INGRESS, st.sampled_from(["Local", "Cluster"]))
def test_whenever_an_update_is_quiet_decide_gives_the_same_answer(
        annotation: str | None, spec: str | None, before: tuple[str, ...], after: tuple[str, ...], policy: str) -> None:
    old = replace(web(annotation=annotation, spec=spec, ingress=before), external_traffic_policy=policy)
    new = replace(old, ingress_ips=after, resource_version="2")
    if not settled_by_status(old, new):
        return
    endpoints = {WEB: (EndpointView(("10.244.0.5",), HERE),)}
    config = DecideConfig(node_name=HERE)
    assert (decide(config, ClusterSnapshot({WEB: old}, endpoints))
            == decide(config, ClusterSnapshot({WEB: new}, endpoints)))


class Held(DataplaneBase):
    """An in-memory dataplane that never hints: only API events and the test wake the loop."""

    name = "memory"

    def __init__(self) -> None:
        self.held: frozenset[str] = frozenset()

    def desired(self, state: DesiredState) -> frozenset[str]:
        return frozenset(str(v) for v in state.advertisements)

    async def observe(self) -> frozenset[str]:
        return self.held

    async def apply(self, add: frozenset[str], remove: frozenset[str]) -> None:
        self.held = (self.held | add) - remove

    async def changes(self) -> AsyncIterator[None]:
        await asyncio.Event().wait()
        yield None

    def vip_of(self, item: str) -> IPAddress:
        return ipaddress.ip_address(item)


def vip(i: int) -> str:
    return f"10.96.{i // 256}.{i % 256}"


@pytest.fixture
async def cluster() -> AsyncIterator[tuple[StandIn, AsyncClient]]:
    api = StandIn()
    await api.start()
    for ns in ("default", "kube-system"):
        api.create(namespace(ns))
    api.create(node(HERE))
    client = AsyncClient(config=KubeConfig.from_dict(api.kubeconfig()))
    try:
        yield api, client
    finally:
        await client.close()
        await api.stop()


async def until(predicate: Callable[[], bool], timeout: float) -> None:
    async with asyncio.timeout(timeout):
        while not predicate():
            await asyncio.sleep(0.02)


SERVICES = 300


async def test_first_sync_writes_each_missing_status_once_and_the_echoes_wake_no_pass(
        cluster: tuple[StandIn, AsyncClient]) -> None:
    api, client = cluster
    for i in range(SERVICES):
        api.create(load_balancer_service(f"svc-{i}", vips=[vip(i)], via="annotation"))
        api.create(endpoint_slice(f"svc-{i}", [Endpoint("10.244.0.5", HERE)]))
    agent = Agent(AgentConfig(node_name=HERE, metrics_address="", advertised_by=False), client=client, backends=[Held()])
    stop = asyncio.Event()
    running = asyncio.create_task(agent.run(stop))
    writes = lambda: api.request_log(resource="services/status", verbs=WRITE_VERBS)
    try:
        await until(lambda: len(writes()) >= SERVICES, timeout=60)
        await until(lambda: all(s.ingress_ips for s in agent.cache.services.store.values()), timeout=10)
        await asyncio.sleep(0.5)
        assert len(writes()) == SERVICES
        assert len({r.path for r in writes()}) == SERVICES
        # The first pass (and a few woken by the sources syncing one after the other), never one per write.
        assert agent.reconciler.passes <= 5
    finally:
        stop.set()
        await asyncio.wait_for(running, 10)
