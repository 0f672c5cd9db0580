"""One VIP shared by three Services under per-service election, one `kube-vip.io/leaseName`: one advertiser.

kube-vip #879, #1579, #1286: without the shared Lease each Service elects its own leader and the VIP is
advertised from several nodes. Real agents, Leases on the stand-in, routes read from the kernel.
"""

from __future__ import annotations

import asyncio
import signal
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from kvip.lab.cluster import LabCluster
from kvip.lab.objects import Endpoint, endpoint_slice, load_balancer_service

pytestmark = pytest.mark.root

NODES = ("node-a", "node-b", "node-c")
VIP, ROUTE = "10.96.7.7", "10.96.7.7/32"
LEASE, RENEW, RETRY = 3.0, 2.0, 0.5
ENV = {"svc_election": "true", "vip_leaseduration": str(LEASE), "vip_renewdeadline": str(RENEW),
       "vip_retryperiod": str(RETRY)}
SHARED = {"kube-vip.io/leaseName": "shared-vip"}


@pytest.fixture
async def lab(tmp_path: Path) -> AsyncIterator[LabCluster]:
    async with LabCluster(NODES, workdir=tmp_path, resync_period=5.0, agent_env=ENV) as cluster:
        yield cluster


def advertisers(lab: LabCluster, among: set[str]) -> set[str]:
    return {n for n in among if ROUTE in lab.routes(n)}


async def exactly_one_throughout(lab: LabCluster, among: set[str], settle: float, watch: float) -> str:
    """Waits (up to `settle`) for one advertiser, then requires it to stay the only one for `watch` seconds."""
    start = time.monotonic()
    while len(current := advertisers(lab, among)) != 1:
        assert time.monotonic() - start < settle, f"no single advertiser of {VIP} after {settle}s: {current}"
        await asyncio.sleep(0.05)
    (leader,) = current
    end = time.monotonic() + watch
    while time.monotonic() < end:
        assert advertisers(lab, among) == {leader}, f"{VIP} advertised by {advertisers(lab, among)}"
        await asyncio.sleep(0.05)
    return leader


async def test_three_services_sharing_a_vip_and_a_lease_have_exactly_one_advertiser(lab: LabCluster) -> None:
    for name in NODES:
        lab.start_agent(name)
    await lab.wait_agents_ready()
    # Each Service's endpoint on a different node: with a Lease each, leaders would spread over all three.
    for (svc, port), node in zip((("http", 80), ("https", 443), ("dns", 53)), NODES):
        lab.api.create(load_balancer_service(svc, vips=[VIP], port=port, external_traffic_policy="Cluster",
                                             annotations=SHARED))
        lab.api.create(endpoint_slice(svc, [Endpoint(f"10.244.{port}.1", node)]))
    leader = await exactly_one_throughout(lab, set(NODES), settle=15, watch=4.0)
    assert lab.api.get("leases", "shared-vip", "default")["spec"]["holderIdentity"] == leader

    await lab.stop_agent(leader, sig=signal.SIGKILL)
    survivors = set(NODES) - {leader}  # the killed agent cannot withdraw: judge the survivors
    successor = await exactly_one_throughout(lab, survivors, settle=LEASE + RETRY + 3.0, watch=3.0)
    assert lab.api.get("leases", "shared-vip", "default")["spec"]["holderIdentity"] == successor
