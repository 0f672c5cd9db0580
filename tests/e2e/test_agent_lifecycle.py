"""Agent lifecycle and bad input, end to end: shutdown semantics, Events, one bad service costs nothing."""

from __future__ import annotations

import asyncio
import signal
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from kvip.lab.apiserver import WRITE_VERBS
from kvip.lab.cluster import LabCluster
from kvip.lab.objects import Endpoint, endpoint_slice, load_balancer_service

pytestmark = pytest.mark.root


@pytest.fixture
async def lab(tmp_path: Path) -> AsyncIterator[LabCluster]:
    async with LabCluster(("node-a",), workdir=tmp_path, resync_period=3.0) as cluster:
        cluster.api.create(load_balancer_service("web", vips=["10.96.0.10"]))
        cluster.api.create(endpoint_slice("web", [Endpoint("10.244.1.5", "node-a")]))
        yield cluster


async def test_sigterm_withdraws_every_route(lab: LabCluster) -> None:
    lab.start_agent("node-a")
    await lab.wait_for({"node-a": {"10.96.0.10/32"}})
    assert await lab.stop_agent("node-a", sig=signal.SIGTERM) == 0
    assert lab.routes("node-a") == set()


async def test_keep_routes_on_exit_leaves_routes_for_the_next_agent(lab: LabCluster) -> None:
    lab.start_agent("node-a", env={"kvip_keep_routes_on_exit": "true"})
    await lab.wait_for({"node-a": {"10.96.0.10/32"}})
    await lab.stop_agent("node-a", sig=signal.SIGTERM)
    assert lab.routes("node-a") == {"10.96.0.10/32"}


async def test_malformed_service_gets_an_event_and_never_costs_another_vip_its_route(lab: LabCluster) -> None:
    lab.api.create(load_balancer_service("broken", vips=["10.96.0.300", "fe80::1"], via="annotation"))
    lab.api.create(endpoint_slice("broken", [Endpoint("10.244.1.6", "node-a")]))
    lab.start_agent("node-a")
    await lab.wait_for({"node-a": {"10.96.0.10/32"}})
    for _ in range(100):
        events = [e for e in lab.api.list("events", "default") if e["involvedObject"]["name"] == "broken"]
        if events:
            break
        await asyncio.sleep(0.05)
    assert events and events[0]["type"] == "Warning" and events[0]["reason"] == "InvalidVIP"
    assert "broken" in lab.agent_log("node-a")
    await asyncio.sleep(3.5)  # a full resync later: still one Event per problem, routes unchanged
    posted = [e for e in lab.api.list("events", "default") if e["involvedObject"]["name"] == "broken"]
    assert len(posted) == len({e["message"] for e in posted}) == 2  # the bad address and the link-local one
    assert lab.routes("node-a") == {"10.96.0.10/32"}


async def test_invalid_configuration_exits_with_a_clear_message(lab: LabCluster) -> None:
    agent = lab.start_agent("node-a", env={"vip_routingtableid": "banana"})
    assert agent.process.wait(10) == 2
    assert "vip_routingtableid" in lab.agent_log("node-a")


async def test_api_loss_keeps_routes_by_default_and_withdraws_after_the_configured_bound(lab: LabCluster) -> None:
    # Short durations stand in for the 60 s: the bound is 2 s here, the tolerance the same ± 1 s.
    lab.start_agent("node-a", env={"kvip_on_api_loss": "withdraw-after=2s"})
    await lab.wait_for({"node-a": {"10.96.0.10/32"}})
    await asyncio.sleep(2.5)  # a quiet cluster: no event for a while before the loss
    await lab.api.stop()  # the API server disappears
    await asyncio.sleep(1.0)
    assert lab.routes("node-a") == {"10.96.0.10/32"}  # within the bound: fail-static
    elapsed = 1.0 + await lab.wait_for({"node-a": set()}, timeout=8.0)
    assert 2.0 <= elapsed <= 3.0 + 1.0, elapsed
    await lab.api.restart()
    await lab.wait_for({"node-a": {"10.96.0.10/32"}}, timeout=8.0)


async def test_api_loss_with_default_policy_keeps_routes(lab: LabCluster) -> None:
    lab.start_agent("node-a")
    await lab.wait_for({"node-a": {"10.96.0.10/32"}})
    await lab.api.stop()
    await asyncio.sleep(4.0)
    assert lab.routes("node-a") == {"10.96.0.10/32"}
    await lab.api.restart()


async def test_status_ingress_is_written_once_and_never_rewritten(lab: LabCluster) -> None:
    lab.api.create(load_balancer_service("annotated", vips=["10.96.0.77"], via="annotation"))
    lab.api.create(endpoint_slice("annotated", [Endpoint("10.244.1.7", "node-a")]))
    lab.start_agent("node-a")
    await lab.wait_for({"node-a": {"10.96.0.10/32", "10.96.0.77/32"}})
    for _ in range(100):
        service = lab.api.get("services", "annotated", "default")
        if service["status"]["loadBalancer"].get("ingress"):
            break
        await asyncio.sleep(0.05)
    assert service["status"]["loadBalancer"]["ingress"] == [{"ip": "10.96.0.77"}]
    await asyncio.sleep(7.0)  # two resync periods: relists, passes, heartbeats — but no status rewrite
    # Count the write requests: a rewrite of the same status changes no resourceVersion.
    writes = [(r.method, r.path) for r in lab.api.request_log(resource="services/status", verbs=WRITE_VERBS)]
    assert writes == [("PATCH", "/api/v1/namespaces/default/services/annotated/status")]
