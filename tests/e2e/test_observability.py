"""Drift made visible: metrics over HTTP, heartbeats, `kvip audit` exit codes, `kvip status`, Events via kubectl."""

from __future__ import annotations

import asyncio
import json
import re
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from kvip.lab.cluster import LabCluster
from kvip.lab.netns import run_in_netns
from kvip.lab.objects import Endpoint, endpoint_slice, load_balancer_service

pytestmark = pytest.mark.root

NODES = ("node-a", "node-b", "node-c")
VIP = "10.96.0.60"


@pytest.fixture
async def lab(tmp_path: Path) -> AsyncIterator[LabCluster]:
    async with LabCluster(NODES, workdir=tmp_path, resync_period=2.0) as cluster:
        cluster.api.create(load_balancer_service("web", vips=[VIP]))
        cluster.api.create(endpoint_slice("web", [Endpoint("10.244.1.1", "node-a"), Endpoint("10.244.2.1", "node-b")]))
        for name in NODES:
            cluster.start_agent(name)
        await cluster.wait_agents_ready()
        await cluster.wait_for({"node-a": {f"{VIP}/32"}, "node-b": {f"{VIP}/32"}, "node-c": set()})
        yield cluster


async def audit(lab: LabCluster, *extra: str) -> tuple[int, dict]:
    """Runs in a thread: the stand-in serves from this test's event loop, which must keep turning."""
    assert lab.topology is not None
    run = await asyncio.to_thread(run_in_netns, lab.topology.router_netns, [sys.executable, "-m", "kvip", "audit", "--kubeconfig",
                                                  str(lab.workdir / "admin.kubeconfig"), "-o", "json", *extra], check=False)
    return run.returncode, json.loads(run.stdout)


async def audit_until(lab: LabCluster, code: int, timeout: float = 15.0) -> dict:
    deadline = time.monotonic() + timeout
    while True:
        got, report = await audit(lab)
        if got == code:
            return report
        assert time.monotonic() < deadline, f"audit kept exiting {got}: {report}"
        await asyncio.sleep(0.5)


def metric(lab: LabCluster, node: str, name: str) -> dict[str, float]:
    text = run_in_netns(lab.node(node).netns, ["curl", "-s", "http://127.0.0.1:2112/metrics"]).stdout
    return {labels: float(value) for labels, value in re.findall(rf"^{name}(\{{[^}}]*\}})? (\S+)$", text, re.M)}


async def test_injected_drift_is_reported_by_metrics_and_audit_and_clears_after_repair(lab: LabCluster) -> None:
    report = await audit_until(lab, 0)
    assert report["vips"] == [{"vip": VIP, "services": ["default/web"], "expected": ["node-a", "node-b"],
                               "reported": ["node-a", "node-b"], "ok": True}]
    # Heartbeats are renewed by PATCH alone: no agent reads or rewrites its Lease whole (kvip issue #21).
    assert {r.verb for r in lab.api.request_log(resource="leases")} <= {"create", "patch", "list"}
    netns = lab.node("node-a").netns
    # Someone overwrites our route with theirs: kvip must not touch it, so node-a truly stops advertising.
    subprocess.run(["ip", "-n", netns, "route", "replace", f"{VIP}/32", "dev", "lo", "table", "198", "proto", "static"],
                   check=True)
    report = await audit_until(lab, 1)
    assert report["vips"][0]["reported"] == ["node-b"] and not report["vips"][0]["ok"]
    assert report["unresolvedNodes"] == []  # the digest and node-a's own "missing" name the VIP
    deadline = time.monotonic() + 10
    while (metric(lab, "node-a", "kvip_drift").get(f'{{vip="{VIP}"}}') != 1.0
           or metric(lab, "node-a", "kvip_drift_items").get('{backend="routes"}') != 1.0):
        assert time.monotonic() < deadline
        await asyncio.sleep(0.2)

    subprocess.run(["ip", "-n", netns, "route", "del", f"{VIP}/32", "table", "198", "proto", "static"], check=True)
    await lab.wait_for({"node-a": {f"{VIP}/32"}}, timeout=10)
    await audit_until(lab, 0)
    while (metric(lab, "node-a", "kvip_drift_items").get('{backend="routes"}') != 0.0
           or metric(lab, "node-a", "kvip_drift")):
        assert time.monotonic() < deadline + 10
        await asyncio.sleep(0.2)
    repairs = metric(lab, "node-a", "kvip_repairs_total")
    assert any("dataplane" in k or "retry" in k for k in repairs), repairs


async def test_stopped_agent_shows_as_stale_heartbeat(lab: LabCluster) -> None:
    await audit_until(lab, 0)
    await lab.stop_agent("node-c")
    deadline = time.monotonic() + 15
    while True:
        code, report = await audit(lab, "--stale-after", "3")
        if "node-c" in report["staleNodes"]:
            break
        assert time.monotonic() < deadline, report
        await asyncio.sleep(1)
    assert code == 1


async def test_status_command_shows_decisions_and_events_are_visible_with_kubectl(lab: LabCluster) -> None:
    # `kvip status` reads the agent's local unix socket (/status is not served on the metrics address).
    status = run_in_netns(lab.node("node-a").netns, [sys.executable, "-m", "kvip", "status", "-o", "json",
                                                     "--socket", str(lab.status_socket("node-a"))])
    doc = json.loads(status.stdout)
    assert doc["services"]["default/web"]["advertised"] is True
    assert doc["services"]["default/web"]["lastKnownGoodEndpoint"] == "10.244.1.1"
    table = run_in_netns(lab.node("node-c").netns, [sys.executable, "-m", "kvip", "status",
                                                    "--socket", str(lab.status_socket("node-c"))]).stdout
    assert "no-ready-local-endpoint" in table
    lab.api.create(load_balancer_service("bad", vips=["2001:db8::300::1"], via="annotation"))
    assert lab.topology is not None
    deadline = time.monotonic() + 10
    while True:
        events = (await asyncio.to_thread(run_in_netns, lab.topology.router_netns, [
            "kubectl", "--kubeconfig", str(lab.workdir / "admin.kubeconfig"), "get", "events", "-o", "json"])).stdout
        reasons = {(e["involvedObject"]["name"], e["reason"]) for e in json.loads(events)["items"]}
        if ("bad", "InvalidVIP") in reasons:
            break
        assert time.monotonic() < deadline, reasons
        await asyncio.sleep(0.3)
