"""The reflector without a periodic relist (kvip issue #21), against the API stand-in over real HTTP:
it lists once, watches with bookmarks, and a cheap metadata-only check corrects what a healthy watch
never delivered, fetching only the objects that differ."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable
from types import SimpleNamespace
from typing import Any

import pytest
from lightkube import AsyncClient, KubeConfig

from kvip.kube import consistency, convert, reflector
from kvip.kube.consistency import compare_versions
from kvip.kube.reflector import Reflector
from kvip.kube.resources import EndpointSlice, Service
from kvip.lab.apiserver import StandIn, serving
from kvip.lab.objects import Endpoint, endpoint_slice, load_balancer_service, namespace

CHECK = 0.4  # the check period of these tests (seconds)


@pytest.fixture
async def api() -> AsyncIterator[StandIn]:
    async with serving(namespaces=("default",), bookmark_interval=0.2) as standin:
        for name in ("web", "db", "cache"):
            standin.create(load_balancer_service(name, vips=["10.96.0.1"]))
            standin.create(endpoint_slice(name, [Endpoint("10.244.0.1", "node-a")]))
        yield standin


@pytest.fixture
async def client(api: StandIn) -> AsyncIterator[AsyncClient]:
    lightkube = AsyncClient(config=KubeConfig.from_dict(api.kubeconfig()))
    try:
        yield lightkube
    finally:
        await lightkube.close()


def slices(client: AsyncClient, **kwargs: Any) -> Reflector[Any, Any]:
    return Reflector(client, EndpointSlice, name="endpointslices", convert=convert.slice_entry,
                     key_of=convert.slice_key, on_change=lambda _: None,
                     labels=(convert.SERVICE_NAME_LABEL,), **{"resync_period": CHECK, **kwargs})


@contextlib.asynccontextmanager
async def running(source: Reflector[Any, Any]) -> AsyncIterator[Reflector[Any, Any]]:
    task = asyncio.create_task(source.run())
    try:
        await asyncio.wait_for(source.synced.wait(), 5)
        yield source
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def until(condition: Callable[[], bool], timeout: float) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not condition():
        assert asyncio.get_running_loop().time() < deadline, "not within the deadline"
        await asyncio.sleep(0.05)


async def test_a_deleted_event_the_server_never_sent_is_corrected_within_the_check_period(
        api: StandIn, client: AsyncClient) -> None:
    async with running(slices(client)) as source:
        api.drop_events("endpointslices", types=("DELETED",))
        api.delete("endpointslices", "web-kvip", namespace="default")
        await asyncio.sleep(0.1)
        assert ("default", "web-kvip") in source.store  # the watch never heard of it
        before = api.requests_served
        await until(lambda: ("default", "web-kvip") not in source.store, CHECK + reflector.SETTLE + 1.0)
        status = source.status()
        assert status.relists == 1 and status.checks >= 1 and status.check_repairs == 1
        # Only the one differing object was fetched (a list of its one name: the agent may list, not get);
        # every other list was the cluster-wide check.
        fetched = [r.path for r in api.request_log(resource="endpointslices", after=before)
                   if r.path != "/apis/discovery.k8s.io/v1/endpointslices"]
        assert fetched == ["/apis/discovery.k8s.io/v1/namespaces/default/endpointslices"]


async def test_a_lost_modification_is_fetched_and_nothing_else(api: StandIn, client: AsyncClient) -> None:
    async with running(slices(client)) as source:
        api.drop_events("endpointslices", types=("MODIFIED",), count=1)
        current = api.get("endpointslices", "db-kvip", "default")
        api.replace({**current, "endpoints": [{"addresses": ["10.244.9.9"], "nodeName": "node-b",
                                               "conditions": {"ready": True}}]})
        key = ("default", "db-kvip")
        await until(lambda: source.store[key][1][0].node_name == "node-b", CHECK + reflector.SETTLE + 1.0)
        assert source.status().check_repairs == 1 and source.status().relists == 1


async def test_an_idle_source_is_checked_every_period_and_never_relisted(api: StandIn, client: AsyncClient) -> None:
    async with running(slices(client)) as source:
        await asyncio.sleep(CHECK * 5)
        status = source.status()
        assert status.relists == 1 and status.checks >= 3 and status.check_repairs == 0
        assert status.watch_restarts == 0  # bookmarks keep the quiet watch alive


async def test_a_watch_without_bookmarks_is_taken_for_dead_and_resumed_not_relisted(
        api: StandIn, client: AsyncClient, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(reflector, "WATCH_QUIET_LIMIT", 0.5)
    api.policy.bookmark_interval = 60.0  # the server stays silent on a quiet watch
    async with running(slices(client, resync_period=60.0)) as source:
        await until(lambda: source.status().watch_restarts >= 2, 3.0)
        assert source.status().relists == 1
        api.create(endpoint_slice("late", [Endpoint("10.244.0.2", "node-a")]))  # the resumed watch still works
        await until(lambda: ("default", "late-kvip") in source.store, 2.0)


async def test_the_watch_is_kept_alive_by_bookmarks(
        api: StandIn, client: AsyncClient, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(reflector, "WATCH_QUIET_LIMIT", 0.5)  # bookmarks come every 0.2 s
    async with running(slices(client, resync_period=60.0)) as source:
        await asyncio.sleep(2.0)
        assert source.status().watch_restarts == 0


async def test_expired_history_relists(api: StandIn, client: AsyncClient) -> None:
    async with running(slices(client, resync_period=60.0)) as source:
        api.drop_events("endpointslices")
        api.delete("endpointslices", "web-kvip", namespace="default")
        api.compact()
        api.clear_faults()
        api.cut_watches()
        await until(lambda: source.status().relists == 2, 3.0)
        assert ("default", "web-kvip") not in source.store


async def test_a_broken_watch_relists_after_a_backoff(api: StandIn, client: AsyncClient) -> None:
    async with running(slices(client, resync_period=60.0)) as source:
        await api.restart()  # connections reset, state kept
        await until(lambda: source.status().relists == 2, 5.0)
        assert source.status().errors


async def test_only_load_balancer_services_are_watched_and_a_type_change_is_a_delete(
        api: StandIn, client: AsyncClient) -> None:
    api.create({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "internal", "namespace": "default"},
                "spec": {"type": "ClusterIP", "ports": [{"port": 80}]}})
    services = Reflector(client, Service, name="services", convert=convert.load_balancer_entry,
                         key_of=convert.object_key, on_change=lambda _: None, resync_period=CHECK,
                         narrow_fields={"spec.type": "LoadBalancer"})
    async with running(services) as source:
        assert len(source.store) == 3
        listed = await compare_versions(client, Service, services._selection, {}, not_older_than="")
        assert sorted(name for _, name in listed.changed) == ["cache", "db", "web"]  # never the ClusterIP one
        api.patch("services", "web", {"spec": {"type": "ClusterIP"}}, namespace="default")
        await until(lambda: len(source.store) == 2, 2.0)
        await asyncio.sleep(CHECK * 2)
        assert source.status().check_repairs == 0  # the watch said DELETED: nothing to repair


async def test_a_field_selector_the_server_refuses_is_dropped(api: StandIn, client: AsyncClient,
                                                                caplog: pytest.LogCaptureFixture) -> None:
    services = Reflector(client, Service, name="services", convert=convert.load_balancer_entry,
                         key_of=convert.object_key, on_change=lambda _: None, resync_period=CHECK,
                         narrow_fields={"spec.notAField": "x"})  # answered 400, as 1.30 answers spec.type
    async with running(services) as source:
        assert len(source.store) == 3
        await asyncio.sleep(CHECK * 2)
        assert source.status().checks >= 1 and source.status().check_repairs == 0
    assert "refuses fieldSelector spec.notAField" in caplog.text


async def test_the_check_pages_through_a_snapshot_not_older_than_the_cache(api: StandIn, client: AsyncClient) -> None:
    source = slices(client, page=2)
    async with running(source):
        before = api.requests_served
        assert await source.check()
        lists = api.request_log(resource="endpointslices", verbs=("list",), after=before)
        assert len(lists) == 2  # 3 slices, 2 per page
        listing = await compare_versions(client, EndpointSlice, source._selection, {},
                                         not_older_than=source.status().resource_version, page=2)
        assert int(listing.resource_version) >= int(source.status().resource_version)
        assert listing.requests == 2 and len(listing.changed) == 3


async def test_too_many_differences_relist_instead_of_fetching_each(
        api: StandIn, client: AsyncClient, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(reflector, "FETCH_LIMIT", 1)
    async with running(slices(client)) as source:
        api.drop_events("endpointslices", types=("DELETED",))
        api.delete("endpointslices", "web-kvip", namespace="default")
        api.delete("endpointslices", "db-kvip", namespace="default")
        await until(lambda: source.status().relists == 2, CHECK + reflector.SETTLE + 2.0)
        assert len(source.store) == 1 and source.status().check_repairs == 0


async def test_a_lost_change_out_of_the_selection_is_forgotten(api: StandIn, client: AsyncClient) -> None:
    services = Reflector(client, Service, name="services", convert=convert.load_balancer_entry,
                         key_of=convert.object_key, on_change=lambda _: None, resync_period=CHECK,
                         narrow_fields={"spec.type": "LoadBalancer"})
    async with running(services) as source:
        api.drop_events("services", types=("MODIFIED",), count=1)  # the watch would have said DELETED
        api.patch("services", "web", {"spec": {"type": "ClusterIP"}}, namespace="default")
        await until(lambda: len(source.store) == 2, CHECK + reflector.SETTLE + 1.0)
        assert source.status().check_repairs == 1


async def test_the_check_repairs_with_the_agents_least_privilege_rbac(tmp_path: Any) -> None:
    from kvip.deploy.rbac import agent_rules, allow_list

    standin = StandIn(bookmark_interval=0.2, tokens={"agent-token": "node-a"})
    await standin.start()
    try:
        standin.create(namespace("default"))
        standin.create(endpoint_slice("web", [Endpoint("10.244.0.1", "node-a")]))
        standin.set_allowed("node-a", allow_list(agent_rules(election="none"), "kube-system"))
        lightkube = AsyncClient(config=KubeConfig.from_dict(standin.kubeconfig(token="agent-token")))
        async with running(slices(lightkube)) as source:
            standin.drop_events("endpointslices", types=("DELETED",))
            standin.delete("endpointslices", "web-kvip", namespace="default")
            await until(lambda: not source.store, CHECK + reflector.SETTLE + 1.0)
            assert not source.status().errors  # nothing was refused
        await lightkube.close()
    finally:
        await standin.close()


async def test_one_check_over_many_pages_repairs_a_lost_delete_add_and_modification_on_different_pages(
        api: StandIn, client: AsyncClient) -> None:
    for n in range(7):  # listed in creation order, two per page: web db | cache p0 | p1 p2 | p3 p4 | p5 p6
        api.create(endpoint_slice(f"p{n}", [Endpoint("10.244.0.1", "node-a")]))
    async with running(slices(client, page=2, resync_period=60.0)) as source:
        api.drop_events("endpointslices")  # the watch hears of none of the three
        api.delete("endpointslices", "web-kvip", namespace="default")  # held, listed on no page
        current = api.get("endpointslices", "p2-kvip", "default")  # the check's pages: db cache | p0 p1 | p2 p3 ...
        api.replace({**current, "endpoints": [{"addresses": ["10.244.9.9"], "nodeName": "node-b",
                                               "conditions": {"ready": True}}]})
        api.create(endpoint_slice("late", [Endpoint("10.244.0.3", "node-c")]))  # ... | p4 p5 | p6 late
        before = api.requests_served
        assert await source.check()
        assert ("default", "web-kvip") not in source.store
        assert source.store[("default", "p2-kvip")][1][0].node_name == "node-b"
        assert source.store[("default", "late-kvip")][1][0].node_name == "node-c"
        assert source.status().check_repairs == 3 and source.status().relists == 1
        # Counting cannot name what went unlisted: one exact listing more (5 pages each), then one fetch each.
        lists = api.request_log(resource="endpointslices", verbs=("list",), after=before)
        assert len(lists) == 2 * 5 + 3


async def test_a_lost_add_and_modification_take_one_listing(api: StandIn, client: AsyncClient) -> None:
    async with running(slices(client, page=2, resync_period=60.0)) as source:
        api.drop_events("endpointslices")
        current = api.get("endpointslices", "db-kvip", "default")
        api.replace({**current, "endpoints": [{"addresses": ["10.244.9.9"], "nodeName": "node-b",
                                               "conditions": {"ready": True}}]})
        api.create(endpoint_slice("late", [Endpoint("10.244.0.3", "node-c")]))
        before = api.requests_served
        assert await source.check()
        assert source.status().check_repairs == 2 and len(source.store) == 4
        assert len(api.request_log(resource="endpointslices", verbs=("list",), after=before)) == 2 + 2


async def test_a_continue_token_compacted_away_during_a_check_starts_the_check_again(
        api: StandIn, client: AsyncClient, monkeypatch: pytest.MonkeyPatch) -> None:
    async with running(slices(client, page=2, resync_period=60.0)) as source:
        decode, calls = consistency._PAGE.decode, []

        def compact_after_the_first_page(body: bytes) -> Any:
            calls.append(1)
            if len(calls) == 1:  # the first page's snapshot becomes older than the compaction point
                api.create(endpoint_slice("late", [Endpoint("10.244.0.3", "node-c")]))
                api.compact()
            return decode(body)

        monkeypatch.setattr(consistency, "_PAGE", SimpleNamespace(decode=compact_after_the_first_page))
        before = api.requests_served
        assert await source.check()
        lists = api.request_log(resource="endpointslices", verbs=("list",), after=before)
        assert [r.status for r in lists[:3]] == [200, 410, 200]  # page 1, page 2 refused, a new snapshot
        assert source.status().check_repairs == 0 and ("default", "late-kvip") in source.store


async def test_a_lost_delete_is_found_when_the_watch_deletes_a_counted_object_during_the_check(
        api: StandIn, client: AsyncClient, monkeypatch: pytest.MonkeyPatch) -> None:
    for n in range(2):
        api.create(endpoint_slice(f"p{n}", [Endpoint("10.244.0.1", "node-a")]))
    async with running(slices(client, page=2, resync_period=60.0)) as source:
        api.drop_events("endpointslices", types=("DELETED",), count=1)
        api.delete("endpointslices", "cache-kvip", namespace="default")  # lost: the check's pages are db p0 | p1 web
        decode, calls = consistency._PAGE.decode, []

        def db_deleted_after_the_first_page(body: bytes) -> Any:
            calls.append(1)
            if len(calls) == 2:  # db was counted on page 1; the watch now says DELETED: as many held as counted
                api.delete("endpointslices", "db-kvip", namespace="default")
                source._take("DELETED", {"metadata": {"namespace": "default", "name": "db-kvip"}})
            return decode(body)

        monkeypatch.setattr(consistency, "_PAGE", SimpleNamespace(decode=db_deleted_after_the_first_page))
        assert await source.check()
        assert sorted(name for _, name in source.store) == ["p0-kvip", "p1-kvip", "web-kvip"]
        assert source.status().check_repairs == 1


async def test_the_journal_tells_each_changed_key_with_its_value_before(api: StandIn, client: AsyncClient) -> None:
    async with running(slices(client, journal=True, resync_period=60.0)) as source:
        assert source.changes() is None  # the first list: read the whole store
        assert source.changes() == {}
        web, db = ("default", "web-kvip"), ("default", "db-kvip")
        web_before, db_before = source.store[web], source.store[db]
        api.delete("endpointslices", "web-kvip", namespace="default")
        current = api.get("endpointslices", "db-kvip", "default")
        api.replace({**current, "endpoints": [{"addresses": ["10.244.9.9"], "nodeName": "node-b",
                                               "conditions": {"ready": True}}]})
        api.replace({**api.get("endpointslices", "db-kvip", "default"), "endpoints": []})  # the first before is kept
        api.create(endpoint_slice("late", [Endpoint("10.244.0.3", "node-c")]))
        await until(lambda: ("default", "late-kvip") in source.store, 2.0)
        assert source.changes() == {web: web_before, db: db_before, ("default", "late-kvip"): None}
        assert source.changes() == {}
        api.drop_events("endpointslices")
        api.delete("endpointslices", "late-kvip", namespace="default")
        late = source.store[("default", "late-kvip")]
        source.request_relist()
        await until(lambda: source.status().relists == 2, 2.0)
        assert source.changes() == {("default", "late-kvip"): late}  # what the relist changed, and only that
    assert slices(client).changes() is None and slices(client).changes() is None  # no journal asked for
