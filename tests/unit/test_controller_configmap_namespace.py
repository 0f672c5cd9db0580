"""The controller reads its `kubevip` ConfigMap only from its own namespace (kvip issue #17, row 10).

Before: it watched ConfigMaps named `kubevip` in every namespace, and one created by a tenant in its
own namespace wiped the pools until the next relist. Now the watch is namespaced, and a Role in the
controller's namespace is all it needs.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

import pytest
from lightkube import AsyncClient, KubeConfig

from kvip.controller.allocator import Controller
from kvip.lab.apiserver import StandIn
from kvip.lab.objects import namespace

POOLS = {"range-global": "10.96.50.1-10.96.50.3"}
# The controller's ConfigMap grant, written out: list and watch in kube-system only.
CONFIGMAP_GRANTS = {("", "configmaps", "list", "kube-system"), ("", "configmaps", "watch", "kube-system")}


def configmap(ns: str, data: dict[str, str]) -> dict[str, object]:
    return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "kubevip", "namespace": ns}, "data": data}


@pytest.fixture
async def api() -> AsyncIterator[StandIn]:
    standin = StandIn(tokens={"token-ctl": "controller"})
    await standin.start()
    for ns in ("kube-system", "tenant"):
        standin.create(namespace(ns))
    try:
        yield standin
    finally:
        await standin.stop()


async def test_a_tenants_kubevip_configmap_neither_wipes_nor_replaces_the_pools(api: StandIn) -> None:
    api.set_allowed("controller", CONFIGMAP_GRANTS)
    api.create(configmap("kube-system", POOLS))
    client = AsyncClient(config=KubeConfig.from_dict(api.kubeconfig(token="token-ctl")))
    controller = Controller(client, identity="ctl-1", namespace="kube-system", resync_period=60)
    task = asyncio.create_task(controller.configmaps.run())
    try:
        await asyncio.wait_for(controller.configmaps.synced.wait(), 5)
        assert controller.configmaps.store == {"pools": POOLS}
        api.create(configmap("tenant", {"range-global": "192.0.2.1-192.0.2.9"}))
        for _ in range(25):  # the watch delivers within milliseconds; the wipe showed at once
            await asyncio.sleep(0.02)
            assert controller.configmaps.store == {"pools": POOLS}, "the tenant's ConfigMap changed the pools"
        api.patch("configmaps", "kubevip", {"data": {"range-global": "10.96.50.1-10.96.50.4"}},
                  namespace="kube-system")
        for _ in range(100):
            if controller.configmaps.store.get("pools", {}).get("range-global") == "10.96.50.1-10.96.50.4":
                break
            await asyncio.sleep(0.02)
        assert controller.configmaps.store == {"pools": {"range-global": "10.96.50.1-10.96.50.4"}}
        assert "forbidden" not in (controller.configmaps.status().last_error or "").lower()
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        await client.close()
