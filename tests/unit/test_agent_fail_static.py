"""A whole agent against the API stand-in and an in-memory dataplane: a task that raises is logged,
counted and restarted — the agent never withdraws because of it; only `stop` withdraws."""

from __future__ import annotations

import asyncio
import ipaddress
from collections.abc import AsyncIterator, Callable

import pytest
from lightkube import AsyncClient, KubeConfig

from kvip.agent.wiring import Agent
from kvip.config.agent import AgentConfig
from kvip.core.model import DesiredState, IPAddress
from kvip.dataplane.base import DataplaneBase
from kvip.lab.apiserver import StandIn
from kvip.lab.objects import (
    Endpoint,
    endpoint_slice,
    load_balancer_service,
    namespace,
    node,
)


class MemoryDataplane(DataplaneBase):
    """Holds VIP strings; its `maintain` raises once `explode` is set, like a backend with a bug."""

    name = "memory"

    def __init__(self) -> None:
        self.held: set[str] = set()
        self.removed: list[str] = []
        self.explode = asyncio.Event()
        self.maintain_calls = 0

    def desired(self, state: DesiredState) -> frozenset[str]:
        return frozenset(str(v) for v in state.advertisements)

    async def observe(self) -> frozenset[str]:
        return frozenset(self.held)

    async def apply(self, add: frozenset[str], remove: frozenset[str]) -> None:
        self.held = (self.held | add) - remove
        self.removed.extend(remove)

    async def changes(self) -> AsyncIterator[None]:
        await asyncio.Event().wait()
        yield None

    def vip_of(self, item: str) -> IPAddress:
        return ipaddress.ip_address(item)

    async def maintain(self) -> None:
        self.maintain_calls += 1
        if self.maintain_calls == 1:
            await self.explode.wait()
            raise RuntimeError("a bug in the backend's periodic work")
        await asyncio.Event().wait()


@pytest.fixture
async def client() -> AsyncIterator[AsyncClient]:
    api = StandIn()
    await api.start()
    for ns in ("default", "kube-system"):
        api.create(namespace(ns))
    api.create(node("n1"))
    api.create(load_balancer_service("web", vips=["10.96.0.1"]))
    api.create(endpoint_slice("web", [Endpoint("10.244.0.5", "n1")]))
    made = AsyncClient(config=KubeConfig.from_dict(api.kubeconfig()))
    try:
        yield made
    finally:
        await made.close()
        await api.stop()


async def until(predicate: Callable[[], bool], timeout: float = 10.0) -> None:
    async with asyncio.timeout(timeout):
        while not predicate():
            await asyncio.sleep(0.02)


def failures(agent: Agent, task: str) -> float:
    value = agent.metrics.registry.get_sample_value("kvip_task_failures_total", {"task": task})
    return value or 0.0


async def test_a_task_that_raises_is_restarted_and_nothing_is_withdrawn(client: AsyncClient) -> None:
    plane = MemoryDataplane()
    agent = Agent(AgentConfig(node_name="n1", metrics_address=""), client=client, backends=[plane])
    stop = asyncio.Event()
    running = asyncio.create_task(agent.run(stop))
    try:
        await until(lambda: plane.held == {"10.96.0.1"})
        plane.explode.set()
        await until(lambda: failures(agent, "maintain-memory") == 1 and plane.maintain_calls == 2)
        await asyncio.sleep(0.2)
        assert not running.done()
        assert plane.held == {"10.96.0.1"} and plane.removed == []
    finally:
        stop.set()
        await asyncio.wait_for(running, 10)
    assert plane.held == set()  # stop, and only stop, withdraws
