"""kube-vip's own configurations run kvip unchanged: the Helm chart's default env (ARP, one global Lease), the
routing-table DaemonSet of kube-vip's e2e suite, ARP with svc_election; svc_namespace confines an agent to its
namespace; an agent with no node name takes the host name; unsupported switches are one warning line each."""

from __future__ import annotations

import asyncio
import socket
import subprocess
import time
from pathlib import Path

import pytest

from kvip.lab.cluster import LabCluster
from kvip.lab.objects import (
    Endpoint,
    endpoint_slice,
    load_balancer_service,
    namespace,
    node,
)

pytestmark = pytest.mark.root

NODES = ("node-a", "node-b", "node-c")
VIP = "10.250.100.20"
FAST_LEASES = {"vip_leaseduration": "3", "vip_renewdeadline": "2", "vip_retryperiod": "1"}
# The lab's own defaults (vip_routingtable=true, vip_loglevel=debug) blanked: empty counts as unset.
BLANK_LAB = {"vip_routingtable": "", "vip_loglevel": "-4"}
# kube-vip's Helm chart: its default values' env, as the chart renders it (vip_interface "" = the default route's).
HELM_DEFAULT_ENV = {"vip_interface": "", "vip_arp": "true", "lb_enable": "true", "lb_port": "6443", "vip_cidr": "32",
                    "cp_enable": "false", "svc_enable": "true", "svc_election": "false", "vip_leaderelection": "false"}
# kube-vip's e2e routing-table DaemonSet (testing/e2e/kube-vip-routing-table.yaml.tmpl) for Services only.
ROUTING_TABLE_ENV = {"vip_loglevel": "-4", "vip_arp": "false", "vip_interface": "eth0", "vip_leaderelection": "false",
                     "address": "", "vip_leaseduration": "5", "vip_renewdeadline": "3", "vip_retryperiod": "1",
                     "cp_enable": "false", "vip_subnet": "32,128", "cp_namespace": "kube-system",
                     "vip_routingtable": "true", "svc_enable": "true", "svc_election": "false",
                     "enable_node_labeling": "false", "enable_endpoints": "false"}
ARP_SVC_ELECTION_ENV = {"vip_loglevel": "-4", "vip_arp": "true", "vip_interface": "eth0", "svc_enable": "true",
                        "svc_election": "true", "vip_leaderelection": "false", **FAST_LEASES}


def eth0_holders(lab: LabCluster, vip: str = VIP) -> set[str]:
    return {n for n in NODES if f"inet {vip}/32" in subprocess.run(
        ["ip", "-n", lab.node(n).netns, "addr", "show", "dev", "eth0"], capture_output=True, text=True,
        check=False).stdout}


async def until(check: object, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():  # type: ignore[operator]
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached")
        await asyncio.sleep(0.1)


def web(lab: LabCluster, *, policy: str, on: str = "node-b", ns: str = "default", vip: str = VIP,
        name: str = "web") -> None:
    lab.api.create(load_balancer_service(name, namespace=ns, vips=[vip], external_traffic_policy=policy))
    lab.api.create(endpoint_slice(name, [Endpoint("10.244.1.1", on)], namespace=ns))


def log_lines(lab: LabCluster, node_name: str, needle: str) -> list[str]:
    return [line for line in lab.agent_log(node_name).splitlines() if needle in line]


async def test_helm_chart_defaults_elect_one_arp_node_on_the_global_services_lease(tmp_path: Path) -> None:
    async with LabCluster(NODES, workdir=tmp_path, agent_env={**BLANK_LAB, **HELM_DEFAULT_ENV, **FAST_LEASES}) as lab:
        web(lab, policy="Cluster")
        for name in NODES:  # a node's default route, whose interface the chart's vip_interface "" means
            subprocess.run(["ip", "-n", lab.node(name).netns, "route", "add", "default", "dev", "eth0"],  # noqa: ASYNC221
                           check=True)
            lab.start_agent(name)
        await until(lambda: len(eth0_holders(lab)) == 1)
        lease = lab.api.get("leases", "plndr-svcs-lock", "kube-system")
        assert eth0_holders(lab) == {lease["spec"]["holderIdentity"]}
        for name in NODES:  # lb_enable: one warning line; the global Lease: one info line
            assert len(log_lines(lab, name, "lb_enable=true: not supported")) == 1
            assert len(log_lines(lab, name, "one global Lease plndr-svcs-lock")) == 1
            assert not log_lines(lab, name, "unknown variable")


async def test_kube_vip_s_routing_table_daemonset_advertises_from_the_endpoint_node(tmp_path: Path) -> None:
    async with LabCluster(NODES, workdir=tmp_path, agent_env=ROUTING_TABLE_ENV) as lab:
        web(lab, policy="Local", on="node-b")
        for name in NODES:
            lab.start_agent(name)
        await lab.wait_for({"node-a": set(), "node-b": {f"{VIP}/32"}, "node-c": set()}, timeout=20)
        assert not any(log_lines(lab, n, "WARNING") for n in NODES)  # every variable read as kube-vip does


async def test_arp_with_svc_election_holds_the_vip_on_the_service_lease_holder(tmp_path: Path) -> None:
    async with LabCluster(NODES, workdir=tmp_path, agent_env={**BLANK_LAB, **ARP_SVC_ELECTION_ENV}) as lab:
        web(lab, policy="Cluster")
        for name in NODES:
            lab.start_agent(name)
        await until(lambda: len(eth0_holders(lab)) == 1)
        lease = lab.api.get("leases", "kubevip-web", "default")
        assert eth0_holders(lab) == {lease["spec"]["holderIdentity"]}


async def test_svc_namespace_confines_the_agent_to_its_namespace(tmp_path: Path) -> None:
    async with LabCluster(NODES, workdir=tmp_path, agent_env={"svc_namespace": "tenant-a"}) as lab:
        lab.api.create(namespace("tenant-a"))
        web(lab, policy="Cluster", ns="tenant-a", vip="10.250.100.21")
        web(lab, policy="Cluster", ns="default", vip="10.250.100.22", name="other")
        lab.start_agent("node-a")
        await lab.wait_for({"node-a": {"10.250.100.21/32"}}, timeout=20)
        await asyncio.sleep(1.0)  # a watch on every namespace would have added the other VIP by now
        assert lab.routes("node-a") == {"10.250.100.21/32"}


async def test_an_agent_without_a_node_name_takes_the_host_name(tmp_path: Path) -> None:
    host = socket.gethostname().lower()
    async with LabCluster(NODES, workdir=tmp_path) as lab:
        lab.api.create(node(host, address="10.250.0.99"))
        web(lab, policy="Local", on=host)
        lab.start_agent("node-a", env={"vip_nodename": "", "vip_ddns": "true"})
        await lab.wait_for({"node-a": {f"{VIP}/32"}}, timeout=20)
        assert len(log_lines(lab, "node-a", f"using the host name {host!r}")) == 1
        assert len(log_lines(lab, "node-a", "vip_ddns=true: not supported")) == 1
