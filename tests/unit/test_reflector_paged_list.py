"""The reflector's (re)list in pages (kvip issue #21: only one page is ever held decoded), against the
stand-in: every page comes from the first page's snapshot, the watch resumes from that snapshot, and a
continue token compacted away starts the list again instead of failing the source."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Mapping
from typing import Any

import pytest
from lightkube import AsyncClient, KubeConfig

from kvip.kube import convert
from kvip.kube.reflector import Reflector
from kvip.kube.resources import EndpointSlice
from kvip.lab.apiserver import StandIn, serving
from kvip.lab.objects import Endpoint, endpoint_slice
from kvip.runtime.tasks import wait_event


@pytest.fixture
async def api() -> AsyncIterator[StandIn]:
    async with serving(namespaces=("default",), bookmark_interval=0.2) as standin:
        for name in ("web", "db", "cache"):
            standin.create(endpoint_slice(name, [Endpoint("10.244.0.1", "node-a")]))
        yield standin


@pytest.fixture
async def client(api: StandIn) -> AsyncIterator[AsyncClient]:
    lightkube = AsyncClient(config=KubeConfig.from_dict(api.kubeconfig()))
    try:
        yield lightkube
    finally:
        await lightkube.close()


def paged_slices(client: AsyncClient, on_first_object: Any = None) -> Reflector[Any, Any]:
    """Two slices per page, no consistency check during the test; `on_first_object` runs while the first
    page is being converted (between the first and the second page's request)."""
    pending = [on_first_object] if on_first_object else []

    def converting(obj: Mapping[str, Any]) -> Any:
        while pending:
            pending.pop()()
        return convert.slice_entry(obj)

    return Reflector(client, EndpointSlice, name="endpointslices", convert=converting, key_of=convert.slice_key,
                     on_change=lambda _: None, labels=(convert.SERVICE_NAME_LABEL,), resync_period=3600.0,
                     list_page=2)


@contextlib.asynccontextmanager
async def running(source: Reflector[Any, Any]) -> AsyncIterator[Reflector[Any, Any]]:
    task = asyncio.create_task(source.run())
    try:
        assert await wait_event(source.synced, 5.0)
        yield source
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def until(condition: Any, timeout: float) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not condition():
        assert asyncio.get_running_loop().time() < deadline, "not within the deadline"
        await asyncio.sleep(0.05)


async def test_the_list_is_read_in_pages_into_one_store(api: StandIn, client: AsyncClient) -> None:
    async with running(paged_slices(client)) as source:
        assert len(api.request_log(resource="endpointslices", verbs=("list",))) == 2  # 3 slices, 2 per page
        assert set(source.store) == {("default", f"{name}-kvip") for name in ("web", "db", "cache")}
        assert source.status().relists == 1


async def test_a_slice_created_between_two_pages_arrives_by_the_watch_from_the_snapshot(
        api: StandIn, client: AsyncClient) -> None:
    def create_late() -> None:
        api.create(endpoint_slice("late", [Endpoint("10.244.0.9", "node-a")]))

    async with running(paged_slices(client, create_late)) as source:
        await until(lambda: ("default", "late-kvip") in source.store, 3.0)  # no check runs: the watch did it
        assert source.status().relists == 1


async def test_a_continue_token_compacted_away_starts_the_list_again(api: StandIn, client: AsyncClient) -> None:
    def write_and_compact() -> None:  # the first page's snapshot becomes older than the compaction point
        api.create(endpoint_slice("late", [Endpoint("10.244.0.9", "node-a")]))
        api.compact()

    async with running(paged_slices(client, write_and_compact)) as source:
        # page 1, page 2 refused (410: its snapshot is gone), then both pages of a new snapshot
        lists = api.request_log(resource="endpointslices", verbs=("list",))
        assert [r.status for r in lists] == [200, 410, 200, 200]
        assert len(source.store) == 4
        assert source.status().relists == 1 and source.status().errors == {}
