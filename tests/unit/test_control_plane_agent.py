"""Whole agents against the API stand-in with the control-plane VIP: static Pod (no Service watches),
election on its own Lease that an unhealthy API server gives up, SIGTERM withdrawing it at once, DNS."""

from __future__ import annotations

import asyncio
import dataclasses
import ipaddress
from collections.abc import AsyncIterator, Callable, Sequence

import pytest
from lightkube import AsyncClient, KubeConfig

from kvip.agent.control_plane import ControlPlane
from kvip.agent.wiring import Agent
from kvip.config.agent import AgentConfig, load_config
from kvip.core.model import IPAddress
from kvip.lab.apiserver import StandIn, serving
from kvip.lab.apiserver.store import StoreError
from kvip.lab.objects import node
from tests.unit.test_agent_fail_static import MemoryDataplane

CP_VIP = "192.168.0.40"
STATIC_POD = {"vip_arp": "true", "cp_enable": "true", "address": CP_VIP, "vip_leaderelection": "true",
              "vip_leaseduration": "3", "vip_renewdeadline": "2", "vip_retryperiod": "0.2"}


class Health:
    """Stands in for ApiServerHealth: the test flips `healthy`."""

    def __init__(self, healthy: bool = True) -> None:
        self.healthy = healthy

    async def run(self) -> None:
        await asyncio.Event().wait()


@pytest.fixture
async def api() -> AsyncIterator[StandIn]:
    async with serving() as standin:
        for name in ("cp-1", "cp-2"):
            standin.create(node(name))
        yield standin


def config(name: str, **env: str) -> AgentConfig:
    loaded = load_config({**STATIC_POD, "vip_nodename": name, **env})
    return dataclasses.replace(loaded, metrics_address="", status_socket="")


class Running:
    def __init__(self, api: StandIn, cfg: AgentConfig, health: Health) -> None:
        self.client = AsyncClient(config=KubeConfig.from_dict(api.kubeconfig()))
        self.plane = MemoryDataplane()
        self.plane.maintain_calls = 1  # never explode
        self.health = health
        self.agent = Agent(cfg, client=self.client, backends=[self.plane],
                           control_plane=ControlPlane(cfg, on_change=lambda _: None, health=health))  # type: ignore[arg-type]
        self.stop = asyncio.Event()
        self.task = asyncio.create_task(self.agent.run(self.stop))

    def set_health(self, healthy: bool) -> None:
        self.health.healthy = healthy
        self.agent.trigger.fire("apiserver-health")

    async def close(self) -> None:
        self.stop.set()
        await asyncio.wait_for(self.task, 10)
        await self.client.close()


async def until(predicate: Callable[[], bool], timeout: float = 10.0) -> None:
    async with asyncio.timeout(timeout):
        while not predicate():
            await asyncio.sleep(0.02)


def holder(api: StandIn) -> str | None:
    try:
        lease = api.get("leases", "plndr-cp-lock", "kube-system")
    except StoreError:
        return None
    return (lease.get("spec") or {}).get("holderIdentity")


async def test_static_pod_watches_no_services_and_its_vip_follows_the_api_servers_health(api: StandIn) -> None:
    one = Running(api, config("cp-1"), Health())
    try:
        assert [r.name for r in one.agent.cache.reflectors] == ["nodes"]
        await until(lambda: one.plane.held == {CP_VIP} and holder(api) == "cp-1")
        one.set_health(False)
        await until(lambda: one.plane.held == set())
        await until(lambda: holder(api) is None)  # released at once, not left to expire
        one.set_health(True)
        await until(lambda: one.plane.held == {CP_VIP})
    finally:
        await one.close()


async def test_election_one_holder_and_an_unhealthy_leader_hands_over(api: StandIn) -> None:
    one, two = Running(api, config("cp-1"), Health()), Running(api, config("cp-2"), Health())
    try:
        await until(lambda: holder(api) in ("cp-1", "cp-2"))
        await asyncio.sleep(0.5)
        assert len([r for r in (one, two) if r.plane.held]) == 1
        leader, follower = (one, two) if holder(api) == "cp-1" else (two, one)
        assert leader.plane.held == {CP_VIP}
        leader.set_health(False)
        await until(lambda: follower.plane.held == {CP_VIP} and leader.plane.held == set())
    finally:
        await one.close()
        await two.close()


async def test_sigterm_withdraws_the_vip_and_releases_the_lease(api: StandIn) -> None:
    one = Running(api, config("cp-1"), Health())
    await until(lambda: one.plane.held == {CP_VIP} and holder(api) == "cp-1")
    await one.close()
    assert one.plane.held == set() and holder(api) is None


async def test_preserve_on_leadership_loss_keeps_the_ipv4_vip_on_exit(api: StandIn) -> None:
    one = Running(api, config("cp-1", vip_preserve_on_leadership_loss="true"), Health())
    await until(lambda: one.plane.held == {CP_VIP})
    await one.close()
    assert one.plane.held == {CP_VIP} and holder(api) is None


async def test_a_dns_name_is_resolved_off_the_loop_and_a_new_answer_fires_a_pass() -> None:
    answers: list[Sequence[IPAddress]] = [[ipaddress.ip_address("10.0.0.1"), ipaddress.ip_address("fd00::1")]]
    fired: list[str] = []

    async def resolve(name: str) -> Sequence[IPAddress]:
        assert name == "api.example.com"
        if not answers[0]:
            raise OSError("SERVFAIL")
        return answers[0]

    cfg = config("cp-1", address="api.example.com", dns_mode="ipv6")
    plane = ControlPlane(cfg, on_change=fired.append, health=Health(), resolve=resolve)  # type: ignore[arg-type]
    assert plane.state().addresses == ()
    await plane.resolve_once("api.example.com")
    assert [str(a) for a in plane.state().addresses] == ["fd00::1"] and fired == ["dns"]
    await plane.resolve_once("api.example.com")
    assert fired == ["dns"]  # same answer: no pass
    answers[0] = []
    await plane.resolve_once("api.example.com")
    assert [str(a) for a in plane.state().addresses] == ["fd00::1"]  # a failed lookup keeps the last answer
    answers[0] = [ipaddress.ip_address("fd00::2")]
    await plane.resolve_once("api.example.com")
    assert [str(a) for a in plane.state().addresses] == ["fd00::2"] and fired == ["dns", "dns"]
