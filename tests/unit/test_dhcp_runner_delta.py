"""The DHCP runner follows decide() pass by pass, looking again only at Services that changed (issue #21):
at 10,000 Services, asking every advertised one whether it wants DHCP was half of each pass's CPU."""

from __future__ import annotations

from types import MappingProxyType, SimpleNamespace
from typing import Any

import pytest

import kvip.agent.dhcp as runner_module
from kvip.agent.dhcp import DhcpRunner
from kvip.core.dhcp import DHCP_PENDING
from kvip.core.model import ServiceKey, ServiceView

DHCP, PLAIN = ServiceKey("default", "dhcp"), ServiceKey("default", "plain")


def view(key: ServiceKey, ips: str, **annotations: str) -> ServiceView:
    return ServiceView(key, uid=f"{key.name}-0123456789", annotations={"kube-vip.io/loadbalancerIPs": ips,
                                                                       **annotations})


def decided(advertised: bool, reason: str = "") -> Any:
    return SimpleNamespace(advertised=advertised, reason=reason)


def result(decisions: dict[ServiceKey, Any], changed: frozenset[ServiceKey] | None = None) -> Any:
    return SimpleNamespace(desired=SimpleNamespace(decisions=MappingProxyType(decisions)), changed_services=changed)


class Cluster:
    def __init__(self) -> None:
        self.services: dict[ServiceKey, ServiceView] = {}

    def snapshot(self) -> MappingProxyType[ServiceKey, ServiceView]:
        return MappingProxyType(dict(self.services))  # a new mapping per change, as the cache's snapshot


@pytest.fixture
def cluster() -> Cluster:
    found = Cluster()
    found.services = {DHCP: view(DHCP, "0.0.0.0"), PLAIN: view(PLAIN, "192.0.2.10")}
    return found


@pytest.fixture
def asked(monkeypatch: pytest.MonkeyPatch) -> list[ServiceKey]:
    calls: list[ServiceKey] = []
    real = runner_module.dhcp_ask

    def counting(service: ServiceView) -> Any:
        calls.append(service.key)
        return real(service)

    monkeypatch.setattr(runner_module, "dhcp_ask", counting)
    return calls


def runner(cluster: Cluster) -> DhcpRunner:
    config: Any = SimpleNamespace(interface="eth0", disable_service_updates=True, keep_routes_on_exit=False)
    services = {"now": cluster.snapshot()}
    made = DhcpRunner(config, lambda: services["now"], None, lambda: None)  # type: ignore[arg-type]
    made.refresh = lambda: services.update(now=cluster.snapshot())  # type: ignore[attr-defined]
    return made


async def test_a_pass_that_changed_nothing_asks_no_service_again(cluster: Cluster, asked: list[ServiceKey]) -> None:
    dhcp = runner(cluster)
    decisions = {DHCP: decided(False, DHCP_PENDING), PLAIN: decided(True)}
    dhcp.observe(result(decisions))
    assert set(asked) == {DHCP, PLAIN} and set(dhcp._wanted or {}) == {DHCP}
    asked.clear()
    dhcp.observe(result(dict(decisions)))  # the same decisions and views again
    assert asked == [] and set(dhcp._wanted or {}) == {DHCP}


async def test_only_the_service_whose_view_changed_is_asked_and_its_new_mac_is_wanted(
        cluster: Cluster, asked: list[ServiceKey]) -> None:
    dhcp = runner(cluster)
    decisions = {DHCP: decided(False, DHCP_PENDING), PLAIN: decided(True)}
    dhcp.observe(result(decisions))
    before = (dhcp._wanted or {})[DHCP].mac
    asked.clear()
    cluster.services[DHCP] = view(DHCP, "0.0.0.0", **{"kube-vip.io/hwaddr": "02:00:00:00:00:42"})
    dhcp.refresh()  # type: ignore[attr-defined]
    dhcp.observe(result(decisions))
    assert asked == [DHCP]
    assert (dhcp._wanted or {})[DHCP].mac != before and (dhcp._wanted or {})[DHCP].mac.hex(":") == "02:00:00:00:00:42"


async def test_a_service_no_longer_led_here_is_no_longer_wanted(cluster: Cluster, asked: list[ServiceKey]) -> None:
    dhcp = runner(cluster)
    dhcp.observe(result({DHCP: decided(False, DHCP_PENDING), PLAIN: decided(True)}))
    dhcp.observe(result({DHCP: decided(False, "not-leader"), PLAIN: decided(True)}))
    assert dhcp._wanted == {}
    dhcp.observe(result({PLAIN: decided(True)}))  # and gone from the decisions altogether: still not wanted
    assert dhcp._wanted == {}


async def test_the_reconcilers_list_of_changed_decisions_is_trusted_instead_of_comparing_again(
        cluster: Cluster, asked: list[ServiceKey], monkeypatch: pytest.MonkeyPatch) -> None:
    dhcp = runner(cluster)
    dhcp.observe(result({DHCP: decided(False, DHCP_PENDING), PLAIN: decided(True)}))
    asked.clear()
    compared: list[Any] = []
    real = runner_module.changed_keys
    monkeypatch.setattr(runner_module, "changed_keys", lambda old, new: compared.append(new) or real(old, new))
    decisions = {DHCP: decided(False, DHCP_PENDING), PLAIN: decided(False, "not-leader")}
    dhcp.observe(result(decisions, changed=frozenset({DHCP})))
    assert asked == [DHCP] and set(dhcp._wanted or {}) == {DHCP}
    assert all(new is not dhcp._decisions for new in compared)  # only the views were compared
