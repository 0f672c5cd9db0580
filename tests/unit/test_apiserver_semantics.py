"""The API stand-in behaves like the real server where kvip can tell: checked over real HTTP with
lightkube (the client kvip uses) and raw httpx for wire-level details."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator

import httpx2 as httpx
import pytest
from lightkube import ApiError, AsyncClient, KubeConfig

from kvip.kube.resources import EndpointSlice, Lease, Node, Service
from kvip.lab.apiserver import WRITE_VERBS, StandIn
from kvip.lab.objects import (
    Endpoint,
    endpoint_slice,
    load_balancer_service,
    namespace,
    node,
)


@pytest.fixture
async def api() -> AsyncIterator[StandIn]:
    standin = StandIn(tokens={"admin-token": "admin", "a-token": "node-a", "b-token": "node-b"},
                      history_limit=50, bookmark_interval=0.2)
    await standin.start()
    standin.create(namespace("default"))
    try:
        yield standin
    finally:
        await standin.stop()


def client(api: StandIn, token: str = "admin-token") -> AsyncClient:
    return AsyncClient(config=KubeConfig.from_dict(api.kubeconfig(token=token)))


async def next_events(stream: AsyncIterator, n: int, timeout: float = 5.0) -> list[tuple[str, dict]]:
    events = []
    async with asyncio.timeout(timeout):
        async for kind, obj in stream:
            events.append((kind, obj))
            if len(events) == n:
                return events
    return events


async def test_every_write_bumps_one_global_strictly_increasing_resource_version(api: StandIn) -> None:
    c = client(api)
    s1 = await c.create(Service(load_balancer_service("a")), namespace="default")
    n1 = await c.create(Node(node("n1")))
    s2 = await c.patch(Service, "a", {"metadata": {"labels": {"x": "y"}}}, namespace="default")
    rvs = [int(o["metadata"]["resourceVersion"]) for o in (s1, n1, s2)]
    assert rvs == sorted(rvs) and len(set(rvs)) == 3
    listing = c.list(Service, namespace="*")
    items = [o async for o in listing]
    assert [o["metadata"]["name"] for o in items] == ["a"]
    assert int(listing.resourceVersion) == api.resource_version >= rvs[-1]
    assert items[0]["metadata"]["uid"] and items[0]["metadata"]["creationTimestamp"]


async def test_list_shapes_carry_kind_api_version_and_collection_resource_version(api: StandIn) -> None:
    api.create(endpoint_slice("web", [Endpoint("10.0.0.1", "n1")]))
    async with httpx.AsyncClient(base_url=api.url, headers={"Authorization": "Bearer admin-token"}) as http:
        body = (await http.get("/apis/discovery.k8s.io/v1/namespaces/default/endpointslices")).json()
    assert body["kind"] == "EndpointSliceList" and body["apiVersion"] == "discovery.k8s.io/v1"
    assert body["metadata"]["resourceVersion"] == str(api.resource_version)
    assert body["items"][0]["kind"] == "EndpointSlice"


async def test_watch_replays_changes_after_resource_version_then_streams_live(api: StandIn) -> None:
    c = client(api)
    start = str(api.resource_version)
    api.create(load_balancer_service("a"))
    api.patch("services", "a", {"spec": {"externalTrafficPolicy": "Cluster"}}, namespace="default")
    stream = c.watch(Service, namespace="*", resource_version=start)
    replayed = await next_events(stream.__aiter__(), 2)
    assert [k for k, _ in replayed] == ["ADDED", "MODIFIED"]
    api.delete("services", "a", namespace="default")
    live = await next_events(stream.__aiter__(), 1)
    assert live[0][0] == "DELETED"


async def test_watch_without_resource_version_starts_with_synthetic_added_for_current_objects(api: StandIn) -> None:
    api.create(load_balancer_service("a"))
    api.create(load_balancer_service("b"))
    events = await next_events(client(api).watch(Service, namespace="*").__aiter__(), 2)
    assert sorted((k, o["metadata"]["name"]) for k, o in events) == [("ADDED", "a"), ("ADDED", "b")]


async def test_watch_from_compacted_history_gets_410_expired_error_event(api: StandIn) -> None:
    old = str(api.resource_version)
    api.create(load_balancer_service("a"))
    api.compact()
    async with httpx.AsyncClient(base_url=api.url, headers={"Authorization": "Bearer admin-token"}) as http:
        response = await http.get("/api/v1/services", params={"watch": "true", "resourceVersion": old})
    event = json.loads(response.text.splitlines()[0])
    assert event["type"] == "ERROR"
    assert event["object"]["code"] == 410 and event["object"]["reason"] == "Expired"
    with pytest.raises(ApiError) as raised:
        await next_events(client(api).watch(Service, namespace="*", resource_version=old).__aiter__(), 1)
    assert raised.value.status.code == 410


async def test_history_is_bounded_so_an_old_resource_version_expires(api: StandIn) -> None:
    old = str(api.resource_version)
    for i in range(60):  # history_limit is 50
        api.create(load_balancer_service(f"s{i}"))
    with pytest.raises(ApiError) as raised:
        await next_events(client(api).watch(Service, namespace="*", resource_version=old).__aiter__(), 1)
    assert raised.value.status.code == 410


async def test_bookmarks_arrive_when_allowed(api: StandIn) -> None:
    async with httpx.AsyncClient(base_url=api.url, headers={"Authorization": "Bearer admin-token"}) as http:
        params = {"watch": "true", "resourceVersion": str(api.resource_version), "allowWatchBookmarks": "true",
                  "timeoutSeconds": "1"}
        response = await http.get("/api/v1/services", params=params, timeout=5)
    kinds = [json.loads(line)["type"] for line in response.text.splitlines()]
    assert "BOOKMARK" in kinds


async def test_timeout_seconds_ends_the_stream(api: StandIn) -> None:
    async with httpx.AsyncClient(base_url=api.url, headers={"Authorization": "Bearer admin-token"}) as http:
        async with asyncio.timeout(4):
            response = await http.get("/api/v1/services", params={"watch": "1", "timeoutSeconds": "1",
                                                                 "resourceVersion": str(api.resource_version)})
    assert response.status_code == 200 and response.text == ""


async def test_label_and_field_selectors_filter_lists_and_watches(api: StandIn) -> None:
    for name, tier in (("a", "web"), ("b", "db"), ("c", None)):
        svc = load_balancer_service(name)
        if tier:
            svc["metadata"]["labels"] = {"tier": tier}
        api.create(svc)
    c = client(api)

    async def names(**kw: object) -> list[str]:
        return sorted([o["metadata"]["name"] async for o in c.list(Service, namespace="*", **kw)])

    assert await names(labels={"tier": "web"}) == ["a"]
    async with httpx.AsyncClient(base_url=api.url, headers={"Authorization": "Bearer admin-token"}) as http:
        async def raw(selector: str) -> list[str]:
            body = (await http.get("/api/v1/services", params={"labelSelector": selector})).json()
            return sorted(o["metadata"]["name"] for o in body["items"])

        assert await raw("tier in (web,db)") == ["a", "b"]
        assert await raw("tier notin (web)") == ["b", "c"]
        assert await raw("tier") == ["a", "b"]
        assert await raw("!tier") == ["c"]
        assert await raw("tier!=web") == ["b", "c"]
    assert await names(fields={"metadata.name": "b"}) == ["b"]
    stream = c.watch(Service, namespace="*", labels={"tier": "db"}, resource_version=str(api.resource_version))
    api.patch("services", "a", {"metadata": {"labels": {"tier": "db"}}}, namespace="default")
    events = await next_events(stream.__aiter__(), 1)
    assert events[0][0] == "ADDED" and events[0][1]["metadata"]["name"] == "a"  # moved into the selector


async def test_create_twice_is_409_already_exists_and_stale_update_is_409_conflict(api: StandIn) -> None:
    c = client(api)
    lease = {"metadata": {"name": "l", "namespace": "default"}, "spec": {"holderIdentity": "a"}}
    created = await c.create(Lease(lease), namespace="default")
    with pytest.raises(ApiError) as exists:
        await c.create(Lease(lease), namespace="default")
    assert exists.value.status.code == 409 and exists.value.status.reason == "AlreadyExists"
    first = {**created, "spec": {"holderIdentity": "b"}}
    await c.replace(Lease(first), namespace="default")
    with pytest.raises(ApiError) as conflict:
        await c.replace(Lease({**created, "spec": {"holderIdentity": "c"}}), namespace="default")
    assert conflict.value.status.code == 409 and conflict.value.status.reason == "Conflict"
    assert "the object has been modified" in conflict.value.status.message


async def test_status_subresource_only_changes_status(api: StandIn) -> None:
    api.create(load_balancer_service("a"))
    c = client(api)
    patched = await c.patch(Service.Status, "a", {"status": {"loadBalancer": {"ingress": [{"ip": "10.9.0.1"}]}},
                                                  "spec": {"type": "ClusterIP"}}, namespace="default")
    assert patched["status"]["loadBalancer"]["ingress"] == [{"ip": "10.9.0.1"}]
    assert api.get("services", "a", "default")["spec"]["type"] == "LoadBalancer"


async def test_a_no_op_patch_returns_the_object_with_its_resource_version_unchanged(api: StandIn) -> None:
    api.create(load_balancer_service("a"))
    c = client(api)
    ingress = {"status": {"loadBalancer": {"ingress": [{"ip": "10.9.0.1"}]}}}
    written = await c.patch(Service.Status, "a", ingress, namespace="default")
    watchers_saw = api.resource_version
    again = await c.patch(Service.Status, "a", ingress, namespace="default")
    relabel = await c.patch(Service, "a", {"metadata": {"labels": written["metadata"].get("labels")}},
                            namespace="default")
    rv = written["metadata"]["resourceVersion"]
    assert again["metadata"]["resourceVersion"] == relabel["metadata"]["resourceVersion"] == rv
    assert api.get("services", "a", "default")["metadata"]["resourceVersion"] == rv  # the stored object too
    assert api.resource_version == watchers_saw  # no revision, no event


async def test_a_no_op_status_update_keeps_the_stored_resource_version(api: StandIn) -> None:
    created = api.create(load_balancer_service("a"))
    same = await client(api).replace(Service.Status(created), "a", namespace="default")
    assert same["metadata"]["resourceVersion"] == created["metadata"]["resourceVersion"]
    assert api.get("services", "a", "default")["metadata"]["resourceVersion"] == created["metadata"]["resourceVersion"]


async def test_request_log_counts_every_request_with_resource_verb_and_sizes(api: StandIn) -> None:
    api.create(load_balancer_service("a"))
    before = api.requests_served
    c = client(api)
    ingress = {"status": {"loadBalancer": {"ingress": [{"ip": "10.9.0.1"}]}}}
    for _ in range(3):  # the same status three times: one revision, but three requests on the wire
        await c.patch(Service.Status, "a", ingress, namespace="default")
    await c.get(Service, "a", namespace="default")
    writes = api.request_log(resource="services/status", verbs=WRITE_VERBS, after=before)
    assert [(r.method, r.path, r.verb, r.status) for r in writes] == [
        ("PATCH", "/api/v1/namespaces/default/services/a/status", "patch", 200)] * 3
    assert all(r.bytes_in == len(json.dumps(ingress, separators=(",", ":"))) and r.bytes_out > 0 for r in writes)
    assert [r.verb for r in api.request_log(resource="services", after=before)] == ["get"]
    async with httpx.AsyncClient(base_url=api.url) as http:
        over_http = (await http.get("/_standin/requests", params={"resource": "services/status",
                                                                   "verb": ["patch", "update"],
                                                                   "after": before})).json()
        assert (await http.get("/_standin/requests", params={"after": "x"})).status_code == 400
    assert [r["seq"] for r in over_http["requests"]] == [r.seq for r in writes]
    assert over_http["total"] >= before + 4


async def test_generate_name_and_finalizers_delay_deletion(api: StandIn) -> None:
    made = api.create({"apiVersion": "v1", "kind": "ConfigMap",
                       "metadata": {"generateName": "cfg-", "namespace": "default", "finalizers": ["kvip/x"]}})
    name = made["metadata"]["name"]
    assert name.startswith("cfg-") and len(name) > 4
    api.delete("configmaps", name, "default")
    assert api.get("configmaps", name, "default")["metadata"]["deletionTimestamp"]
    api.patch("configmaps", name, {"metadata": {"finalizers": None}}, namespace="default")
    with pytest.raises(Exception):
        api.get("configmaps", name, "default")


async def test_errors_are_real_status_objects(api: StandIn) -> None:
    async with httpx.AsyncClient(base_url=api.url, headers={"Authorization": "Bearer admin-token"}) as http:
        missing = await http.get("/api/v1/namespaces/default/services/nope")
        invalid = await http.post("/api/v1/namespaces/default/services", json={"metadata": {}})
        anonymous = await httpx.AsyncClient(base_url=api.url).get("/api/v1/services")
    assert missing.status_code == 404
    assert missing.json() | {"details": None} == {**missing.json(), "kind": "Status", "reason": "NotFound",
                                                  "message": 'services "nope" not found', "details": None}
    assert invalid.status_code == 422 and invalid.json()["reason"] == "Invalid"
    assert anonymous.status_code == 401


async def test_denied_verb_is_403_with_the_real_message_and_cuts_that_users_watches_only(api: StandIn) -> None:
    api.create(endpoint_slice("web", [Endpoint("10.0.0.1", "n1")]))
    a, b = client(api, "a-token"), client(api, "b-token")
    rv = str(api.resource_version)
    a_watch = asyncio.create_task(next_events(a.watch(EndpointSlice, namespace="*", resource_version=rv).__aiter__(), 1))
    b_stream = b.watch(EndpointSlice, namespace="*", resource_version=rv).__aiter__()
    await asyncio.sleep(0.2)
    api.deny("endpointslices", ("list", "watch"), user="node-a")
    with pytest.raises(Exception) as raised:
        await asyncio.wait_for(a_watch, 5)
    assert "403" in str(raised.value)
    with pytest.raises(Exception):
        [o async for o in a.list(EndpointSlice, namespace="default")]
    async with httpx.AsyncClient(base_url=api.url, headers={"Authorization": "Bearer a-token"}) as http:
        body = (await http.get("/apis/discovery.k8s.io/v1/endpointslices")).json()
    assert body["message"] == ('endpointslices.discovery.k8s.io is forbidden: User "node-a" cannot list resource '
                               '"endpointslices" in API group "discovery.k8s.io" at the cluster scope')
    api.patch("endpointslices", "web-kvip", {"metadata": {"labels": {"x": "1"}}}, namespace="default")
    assert (await next_events(b_stream, 1))[0][0] == "MODIFIED"  # node-b unaffected
    api.allow("endpointslices", ("list", "watch"), user="node-a")
    assert len([o async for o in a.list(EndpointSlice, namespace="default")]) == 1


async def test_dropped_events_never_reach_watchers_but_the_store_changes(api: StandIn) -> None:
    api.create(load_balancer_service("a"))
    stream = client(api).watch(Service, namespace="*", resource_version=str(api.resource_version)).__aiter__()
    api.drop_events("services", count=1, types=("DELETED",))
    api.delete("services", "a", namespace="default")
    api.create(load_balancer_service("b"))
    events = await next_events(stream, 1)
    assert [(k, o["metadata"]["name"]) for k, o in events] == [("ADDED", "b")]
    assert [s["metadata"]["name"] for s in api.list("services")] == ["b"]


async def test_stop_and_restart_keep_state_and_resource_version(api: StandIn) -> None:
    api.create(load_balancer_service("a"))
    rv = api.resource_version
    await api.restart()
    names = [o["metadata"]["name"] async for o in client(api).list(Service, namespace="*")]
    assert names == ["a"] and api.resource_version == rv


async def test_latency_fault_delays_every_response(api: StandIn) -> None:
    api.set_latency(0.3)
    loop = asyncio.get_running_loop()
    t0 = loop.time()
    [o async for o in client(api).list(Service, namespace="*")]
    assert loop.time() - t0 >= 0.3
    api.clear_faults()


async def test_control_api_injects_faults_from_another_process(api: StandIn) -> None:
    async with httpx.AsyncClient(base_url=api.url) as http:
        response = await http.post("/_standin/faults", json={"action": "deny", "resource": "services",
                                                              "verbs": ["list"], "user": "node-b"})
        assert response.status_code == 200
        denied = await http.get("/api/v1/services", headers={"Authorization": "Bearer b-token"})
        allowed = await http.get("/api/v1/services", headers={"Authorization": "Bearer a-token"})
        bad = await http.post("/_standin/faults", json={"action": "explode"})
    assert (denied.status_code, allowed.status_code, bad.status_code) == (403, 200, 400)


async def test_discovery_documents_list_the_served_resources(api: StandIn) -> None:
    async with httpx.AsyncClient(base_url=api.url) as http:
        core = (await http.get("/api/v1")).json()
        groups = (await http.get("/apis")).json()
        coordination = (await http.get("/apis/coordination.k8s.io/v1")).json()
        version = (await http.get("/version")).json()
    assert {"services", "services/status", "nodes", "endpoints", "events", "configmaps", "pods"} <= {
        r["name"] for r in core["resources"]}
    assert {"discovery.k8s.io", "coordination.k8s.io", "apps", "rbac.authorization.k8s.io"} == {
        g["name"] for g in groups["groups"]}
    assert [r["name"] for r in coordination["resources"]] == ["leases"]
    assert version["major"] == "1"
