"""`kvip controller` end to end: two controllers (one leads), services get IPs, agents advertise them,
deleting a service frees its IP for the next one; and the controller against the API stand-in reading the
ConfigMap as kube-vip-cloud-provider does (allow-share-global, search-order, interface-global, a Service
being deleted)."""

from __future__ import annotations

import asyncio
import contextlib
import subprocess
import sys
import time
from pathlib import Path

import pytest
from lightkube import AsyncClient, KubeConfig

from kvip.controller.allocator import Controller
from kvip.core.election_rules import LeaseTiming
from kvip.lab.apiserver import StandIn
from kvip.lab.cluster import LabCluster
from kvip.lab.netns import popen_in_netns
from kvip.lab.objects import Endpoint, endpoint_slice, load_balancer_service, namespace

pytestmark = pytest.mark.root

IPS = "kube-vip.io/loadbalancerIPs"


async def annotation(lab: LabCluster | StandIn, name: str, timeout: float = 15.0) -> str:
    api = lab.api if isinstance(lab, LabCluster) else lab
    deadline = time.monotonic() + timeout
    while True:
        value = (api.get("services", name, "default")["metadata"].get("annotations") or {}).get(IPS)
        if value:
            return value
        assert time.monotonic() < deadline, f"{name} got no IP"
        await asyncio.sleep(0.05)


async def test_two_controllers_one_allocates_agents_advertise_and_deletion_frees(tmp_path: Path) -> None:
    async with LabCluster(("node-a",), workdir=tmp_path, resync_period=5.0) as lab:
        assert lab.topology is not None
        lab.api.create({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "kubevip",
                        "namespace": "kube-system"}, "data": {"range-global": "10.96.50.1-10.96.50.3"}})
        controllers = []
        for identity in ("ctl-1", "ctl-2"):
            log = open(tmp_path / f"{identity}.log", "wb")
            controllers.append(popen_in_netns(lab.topology.router_netns, [
                sys.executable, "-m", "kvip", "controller", "--kubeconfig", str(tmp_path / "admin.kubeconfig"),
                "--identity", identity, "--lease-duration", "3", "--renew-deadline", "2", "--retry-period", "0.5"],
                stdout=log, stderr=subprocess.STDOUT))
        lab.start_agent("node-a")
        try:
            for name in ("web", "api"):
                obj = load_balancer_service(name, external_traffic_policy="Cluster")
                lab.api.create(obj)
                lab.api.create(endpoint_slice(name, [Endpoint("10.244.1.1", "node-a")]))
            assert await annotation(lab, "api") == "10.96.50.1"  # sorted by name: api before web
            assert await annotation(lab, "web") == "10.96.50.2"
            await lab.wait_for({"node-a": {"10.96.50.1/32", "10.96.50.2/32"}})

            holder = lab.api.get("leases", "kvip-controller", "kube-system")["spec"]["holderIdentity"]
            other = "ctl-2" if holder == "ctl-1" else "ctl-1"
            assert "allocated" in (tmp_path / f"{holder}.log").read_text()
            assert "allocated" not in (tmp_path / f"{other}.log").read_text()

            lab.api.delete("services", "api", namespace="default")
            await lab.wait_for({"node-a": {"10.96.50.2/32"}})
            lab.api.create(load_balancer_service("next", external_traffic_policy="Cluster"))
            assert await annotation(lab, "next") == "10.96.50.1"  # the freed address, lowest first
            lab.api.create(load_balancer_service("more", external_traffic_policy="Cluster"))
            lab.api.create(load_balancer_service("tail", external_traffic_policy="Cluster"))
            await annotation(lab, "more")
            deadline = time.monotonic() + 10
            while not any(e["reason"] == "PoolExhausted" and e["involvedObject"]["name"] == "tail"
                          for e in lab.api.list("events", "default")):
                assert time.monotonic() < deadline, "no PoolExhausted Event"
                await asyncio.sleep(0.1)
        finally:
            for proc in controllers:
                proc.terminate()
            for proc in controllers:  # poll: their clean stop talks to the stand-in on this loop
                for _ in range(200):
                    if proc.poll() is not None:
                        break
                    await asyncio.sleep(0.05)
                else:
                    proc.kill()


async def test_the_controller_reads_the_configmap_as_the_cloud_provider_does() -> None:
    api = StandIn()
    await api.start()
    for ns in ("kube-system", "default"):
        api.create(namespace(ns))
    api.create({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "kubevip", "namespace": "kube-system"},
                "data": {"cidr-global": "10.96.60.0/30", "allow-share-global": "true", "search-order": "desc",
                         "interface-global": "eth9"}})
    doomed = load_balancer_service("doomed", external_traffic_policy="Cluster")
    doomed["metadata"]["finalizers"] = ["example.com/hold"]
    api.create(doomed)
    api.delete("services", "doomed", namespace="default")  # a finalizer holds it: deletionTimestamp set
    client = AsyncClient(config=KubeConfig.from_dict(api.kubeconfig()))
    controller = Controller(client, identity="ctl-1", resync_period=60,
                            timing=LeaseTiming(lease_duration=3, renew_deadline=2, retry_period=0.5))
    task = asyncio.create_task(controller.run())
    try:
        api.create(load_balancer_service("web", external_traffic_policy="Cluster", port=80))
        assert await annotation(api, "web") == "10.96.60.3"  # desc: the highest, the CIDR's last address kept
        api.create(load_balancer_service("web-tls", external_traffic_policy="Cluster", port=443))
        assert await annotation(api, "web-tls") == "10.96.60.3"  # allow-share-global, other port
        web = api.get("services", "web", "default")["metadata"]["annotations"]
        assert web["kube-vip.io/serviceInterface"] == "eth9"
        assert IPS not in (api.get("services", "doomed", "default")["metadata"].get("annotations") or {})
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        await api.stop()
