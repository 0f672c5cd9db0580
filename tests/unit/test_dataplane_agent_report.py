"""A whole agent against the API stand-in, with an egress backend standing in for nftables: its rules appear
in /status, in the metrics and, when nftables refuses one, as drift in /status, kvip_drift_items and the
heartbeat Lease that `kvip audit` reads; a table flushed behind kvip's back is put back and counted."""

from __future__ import annotations

import asyncio
import ipaddress
import json
from collections.abc import AsyncIterator, Callable

import pytest
from lightkube import AsyncClient, KubeConfig

from kvip.agent.dataplane_report import DataplaneReport
from kvip.agent.metrics import AgentMetrics
from kvip.agent.wiring import Agent
from kvip.config.agent import AgentConfig
from kvip.core.dhcp import DHCP_PENDING, DhcpAsk, DhcpLease
from kvip.core.dhcp_lease import ClientState, Lease, Phase
from kvip.core.model import DesiredState, IPAddress, ServiceDecision, ServiceKey
from kvip.dataplane.base import ApplyError, DataplaneBase
from kvip.kube.heartbeat import DRIFT_ANNOTATION
from kvip.lab.apiserver import StandIn
from kvip.lab.objects import (
    Endpoint,
    endpoint_slice,
    load_balancer_service,
    namespace,
    node,
)
from kvip.reconcile import ReconcileResult
from kvip.runtime.tasks import cancel_and_wait

HERE = "n1"
VIP = "10.96.0.10"


class FakeNft(DataplaneBase):
    """Holds `pod>vip` items; `refuse` makes a change that adds fail as nft would."""

    name = "egress"

    def __init__(self) -> None:
        self.held: set[str] = set()
        self.refuse = False

    def desired(self, state: DesiredState) -> frozenset[str]:
        return frozenset(f"{r.pod}>{r.vip}" for r in state.egress)

    async def observe(self) -> frozenset[str]:
        return frozenset(self.held)

    async def apply(self, add: frozenset[str], remove: frozenset[str]) -> None:
        if self.refuse and add:  # one `nft -f` transaction: nothing of it applied, every item failed
            raise ApplyError({item: "Error: Could not process rule: No such file or directory" for item in add | remove})
        self.held = (self.held - remove) | add

    async def changes(self) -> AsyncIterator[None]:
        await asyncio.Event().wait()
        yield None

    def vip_of(self, item: str) -> IPAddress:
        return ipaddress.ip_address(item.split(">")[1])

    def status(self) -> dict[str, object]:
        return {"table": "inet kvip_egress", "rules": len(self.held)}


async def until(what: str, predicate: Callable[[], bool], timeout: float = 10.0) -> None:
    try:
        async with asyncio.timeout(timeout):
            while not predicate():
                await asyncio.sleep(0.02)
    except TimeoutError:
        raise AssertionError(f"timed out waiting for {what}") from None


def metric(agent: Agent, name: str) -> float:
    return metric_of(agent.metrics, name)


def metric_of(metrics: AgentMetrics, name: str) -> float:
    for line in metrics.render().decode().splitlines():
        if line.startswith((name + " ", name + "{")):
            return float(line.rsplit(" ", 1)[1])
    raise AssertionError(f"no metric {name}")


@pytest.fixture
async def running() -> AsyncIterator[tuple[StandIn, Agent, FakeNft]]:
    api = StandIn()
    await api.start()
    for ns in ("default", "kube-system"):
        api.create(namespace(ns))
    api.create(node(HERE))
    api.create(load_balancer_service("web", vips=[VIP], annotations={"kube-vip.io/egress": "true"}))
    api.create(endpoint_slice("web", [Endpoint("10.244.1.5", HERE), Endpoint("10.244.1.6", HERE)]))
    client = AsyncClient(config=KubeConfig.from_dict(api.kubeconfig()))
    nft = FakeNft()
    config = AgentConfig(node_name=HERE, metrics_address="", advertised_by=False, resync_period=30.0,
                         egress_pod_cidrs=(ipaddress.ip_network("10.244.0.0/16"),))
    agent = Agent(config, client=client, backends=[nft])
    stop = asyncio.Event()
    task = asyncio.create_task(agent.run(stop))
    try:
        yield api, agent, nft
    finally:
        stop.set()
        await cancel_and_wait([task])
        await client.close()
        await api.stop()


def heartbeat_drift(api: StandIn) -> list[str]:
    try:
        lease = api.get("leases", f"kvip-node-{HERE}", "kube-system")
    except Exception:  # noqa: BLE001 (not written yet)
        return []
    return json.loads((lease["metadata"].get("annotations") or {}).get(DRIFT_ANNOTATION, "[]"))


async def test_egress_rules_show_in_status_and_metrics_and_a_refused_rule_is_drift_everywhere(
        running: tuple[StandIn, Agent, FakeNft]) -> None:
    api, agent, nft = running
    await until("both rules held", lambda: len(nft.held) == 2)
    doc = agent.status_document()
    assert doc["egress"] == [{"service": "default/web", "vip": VIP, "pods": ["10.244.1.5", "10.244.1.6"],
                              "table": "inet kvip_egress"}]
    assert doc["dhcp"] == [] and doc["dataplaneDrift"] == []
    assert metric(agent, "kvip_egress_rules") == 2
    assert metric(agent, "kvip_egress_repairs_total") == 0

    # Someone flushes the table: the next pass puts both rules back, and counts them as repairs.
    nft.held.clear()
    agent.trigger.fire("dataplane:egress")
    await until("rules put back", lambda: len(nft.held) == 2)
    await until("repairs counted", lambda: metric(agent, "kvip_egress_repairs_total") == 2)

    # nftables refuses the rule of a new pod: drift in /status, in kvip_drift_items and on the heartbeat.
    nft.refuse = True
    current = api.get("endpointslices", "web-kvip", "default")
    api.replace({**current, **endpoint_slice("web", [Endpoint("10.244.1.5", HERE), Endpoint("10.244.1.7", HERE)])})
    await until("drift in /status", lambda: agent.status_document()["dataplaneDrift"] != [])
    assert agent.status_document()["dataplaneDrift"] == [
        f"egress 10.244.1.6>{VIP}: Error: Could not process rule: No such file or directory",
        f"egress 10.244.1.7>{VIP}: Error: Could not process rule: No such file or directory"]
    assert metric(agent, 'kvip_drift_items{backend="egress"}') == 2
    await until("drift on the heartbeat", lambda: heartbeat_drift(api) == agent.status_document()["dataplaneDrift"])
    assert metric(agent, "kvip_egress_repairs_total") == 2  # a new rule refused is drift, not a repair

    nft.refuse = False
    agent.trigger.fire("retry")
    await until("drift gone from the heartbeat", lambda: heartbeat_drift(api) == [], timeout=15)
    assert agent.status_document()["dataplaneDrift"] == []
    assert metric(agent, "kvip_dhcp_leases{state=\"bound\"}") == 0


class FakeRunner:
    """The DHCP runner's two read-only views, set by the test."""

    def __init__(self) -> None:
        self.running: dict[tuple[ServiceKey, int], tuple[DhcpAsk, ClientState]] = {}
        self.held: dict[ServiceKey, DhcpLease] = {}

    def clients(self) -> dict[tuple[ServiceKey, int], tuple[DhcpAsk, ClientState]]:
        return dict(self.running)

    def leases(self) -> dict[ServiceKey, DhcpLease]:
        return dict(self.held)


def a_pass(pending: tuple[ServiceKey, ...] = ()) -> ReconcileResult:
    decisions = {key: ServiceDecision(key, (), True, False, DHCP_PENDING) for key in pending}
    return ReconcileResult(DesiredState({}, decisions), (), {}, 0.0, 0.0)


def bound_state(renewals: int) -> ClientState:
    lease = Lease(ipaddress.IPv4Address("10.250.200.11"), ipaddress.IPv4Address("10.250.0.1"), 0.0, 120, 60, 105)
    return ClientState(Phase.BOUND, 1, lease, renewals=renewals)


async def test_dhcp_leases_renewals_and_losses_are_counted_and_a_pending_service_is_drift() -> None:
    web, ask = ServiceKey("default", "web"), DhcpAsk(bytes.fromhex("020000000001"), "vip-web")
    runner = FakeRunner()
    metrics = AgentMetrics("n1", lambda: ())
    report = DataplaneReport(runner, metrics, None, 30.0)  # type: ignore[arg-type]
    for renewals in (0, 1, 2):  # bound, then renewed twice
        runner.running[(web, 4)] = (ask, bound_state(renewals))
        runner.held[web] = DhcpLease(ipaddress.ip_address("10.250.200.11"), "vip-web")
        report.observe(a_pass())
    assert metric_of(metrics, 'kvip_dhcp_leases{state="bound"}') == 1
    assert metric_of(metrics, "kvip_dhcp_renewals_total") == 2
    assert report.sections()["dhcp"][0] | {"expiresInSeconds": None, "renewsInSeconds": None} == {
        "service": "default/web", "interface": "vip-web", "mac": "02:00:00:00:00:01", "address": "10.250.200.11",
        "state": "bound", "renewsInSeconds": None, "expiresInSeconds": None, "server": "10.250.0.1", "renewals": 2, "lost": None}

    # The server stays away past the lease: the address is lost, counted once, and the Service is drift.
    lost = "lease of 10.250.200.11 expired: no DHCP server answered for 60s after T1"
    runner.running[(web, 4)] = (ask, ClientState(Phase.SELECTING, lost=lost, renewals=2))
    runner.held[web] = DhcpLease(None, "vip-web", lost)
    report.observe(a_pass(pending=(web,)))
    report.observe(a_pass(pending=(web,)))
    assert metric_of(metrics, "kvip_dhcp_lease_lost_total") == 1
    assert metric_of(metrics, 'kvip_dhcp_leases{state="bound"}') == 0
    assert metric_of(metrics, 'kvip_dhcp_leases{state="selecting"}') == 1
    assert metric_of(metrics, 'kvip_drift_items{backend="dhcp"}') == 1
    assert report.drift() == (f"dhcp default/web: led here, no lease: {lost}",)
