"""The API stand-in authorizes like RBAC: a grant is (apiGroup, resource, verb, namespace or cluster-wide).

kvip issue #22: the stand-in used to match (resource, verb) only, so a rule in the wrong namespace or
API group passed the least-privilege test.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from lightkube import AsyncClient, KubeConfig
from lightkube.core.exceptions import ApiError

from kvip.kube.resources import ConfigMap, Lease
from kvip.lab.apiserver import StandIn, serving


@pytest.fixture
async def api() -> AsyncIterator[StandIn]:
    async with serving(tokens={"token-a": "node-a"}) as standin:
        yield standin


async def status_of(call: object) -> int:
    try:
        await call  # type: ignore[misc]
    except ApiError as exc:
        return exc.status.code or 0
    return 200


async def test_a_namespaced_grant_covers_only_its_namespace_and_not_a_list_across_all(api: StandIn) -> None:
    api.set_allowed("node-a", {("coordination.k8s.io", "leases", "list", "kube-system")})
    client = AsyncClient(config=KubeConfig.from_dict(api.kubeconfig(token="token-a")))
    try:
        assert await status_of(_drain(client.list(Lease, namespace="kube-system"))) == 200
        assert await status_of(_drain(client.list(Lease, namespace="default"))) == 403
        assert await status_of(_drain(client.list(Lease, namespace="*"))) == 403
    finally:
        await client.close()


async def test_a_cluster_wide_grant_covers_every_namespace(api: StandIn) -> None:
    api.set_allowed("node-a", {("", "configmaps", "list", None)})
    client = AsyncClient(config=KubeConfig.from_dict(api.kubeconfig(token="token-a")))
    try:
        assert await status_of(_drain(client.list(ConfigMap, namespace="default"))) == 200
        assert await status_of(_drain(client.list(ConfigMap, namespace="*"))) == 200
    finally:
        await client.close()


async def test_a_grant_in_another_api_group_does_not_count(api: StandIn) -> None:
    api.set_allowed("node-a", {("", "leases", "list", None)})  # core group: no such resource there
    client = AsyncClient(config=KubeConfig.from_dict(api.kubeconfig(token="token-a")))
    try:
        assert await status_of(_drain(client.list(Lease, namespace="kube-system"))) == 403
    finally:
        await client.close()


async def _drain(listing: object) -> None:
    async for _ in listing:  # type: ignore[attr-defined]
        pass
