"""Content negotiation on the API stand-in, over real HTTP: Tables with each kind's real columns,
PartialObjectMetadata(List) for get, list and watch (bookmarks included), and gzip for large
responses with the request log counting the compressed bytes that went on the wire."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator

import httpx2 as httpx
import pytest

from kvip.lab.apiserver import StandIn, serving
from kvip.lab.apiserver.tables import human_duration
from kvip.lab.objects import (
    Endpoint,
    endpoint_slice,
    load_balancer_service,
    node,
)

TABLE = "application/json;as=Table;v=v1;g=meta.k8s.io, application/json"
PARTIAL = "application/json;as=PartialObjectMetadata;g=meta.k8s.io;v=v1"
PARTIAL_LIST = "application/json;as=PartialObjectMetadataList;g=meta.k8s.io;v=v1"
SERVICES = "/api/v1/namespaces/default/services"


@pytest.fixture
async def api() -> AsyncIterator[StandIn]:
    async with serving(namespaces=("default",), bookmark_interval=0.1) as standin:
        yield standin


@pytest.fixture
async def http(api: StandIn) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=api.url) as client:
        yield client


def columns(table: dict) -> list[str]:
    return [c["name"] for c in table["columnDefinitions"]]


async def test_service_table_has_kubectls_columns_and_cells(api: StandIn, http: httpx.AsyncClient) -> None:
    svc = load_balancer_service("web", vips=["10.9.0.2", "10.9.0.1"])
    svc["spec"]["clusterIP"] = "10.96.0.10"
    svc["spec"]["ports"][0]["nodePort"] = 31080
    api.create(svc)
    api.create(load_balancer_service("waiting", port=53, protocol="UDP"))
    table = (await http.get(SERVICES, headers={"Accept": TABLE})).json()
    assert (table["kind"], table["apiVersion"]) == ("Table", "meta.k8s.io/v1")
    assert columns(table) == ["Name", "Type", "Cluster-IP", "External-IP", "Port(s)", "Age", "Selector"]
    assert [c["priority"] for c in table["columnDefinitions"]] == [0, 0, 0, 0, 0, 0, 1]  # Selector: -o wide
    assert [row["cells"][:5] + row["cells"][6:] for row in table["rows"]] == [
        ["waiting", "LoadBalancer", "<none>", "<pending>", "53/UDP", "app=waiting"],
        ["web", "LoadBalancer", "10.96.0.10", "10.9.0.1,10.9.0.2", "80:31080/TCP", "app=web"]]
    assert table["rows"][0]["object"] == {"kind": "PartialObjectMetadata", "apiVersion": "meta.k8s.io/v1",
                                          "metadata": api.get("services", "waiting", "default")["metadata"]}
    assert table["metadata"]["resourceVersion"] == str(api.resource_version)
    whole = (await http.get(SERVICES, headers={"Accept": TABLE}, params={"includeObject": "Object"})).json()
    assert whole["rows"][1]["object"]["spec"]["clusterIP"] == "10.96.0.10"
    bare = (await http.get(SERVICES, headers={"Accept": TABLE}, params={"includeObject": "None"})).json()
    assert "object" not in bare["rows"][0]
    assert (await http.get(SERVICES, headers={"Accept": TABLE}, params={"includeObject": "x"})).status_code == 400


@pytest.mark.parametrize(("path", "expected"), [
    ("/apis/discovery.k8s.io/v1/endpointslices", ["Name", "AddressType", "Ports", "Endpoints", "Age"]),
    ("/api/v1/nodes", ["Name", "Status", "Roles", "Age", "Version", "Internal-IP", "External-IP", "OS-Image",
                       "Kernel-Version", "Container-Runtime"]),
    ("/apis/coordination.k8s.io/v1/leases", ["Name", "Holder", "Age"]),
    ("/api/v1/configmaps", ["Name", "Data", "Age"]),
    ("/api/v1/events", ["Last Seen", "Type", "Reason", "Object", "Subobject", "Source", "Message", "First Seen",
                        "Count", "Name"]),
    ("/api/v1/pods", ["Name", "Created At"]),  # the real default convertor for kinds without a printer
])
async def test_each_kind_gets_its_printer_columns(http: httpx.AsyncClient, path: str, expected: list[str]) -> None:
    table = (await http.get(path, headers={"Accept": TABLE})).json()
    assert table["kind"] == "Table" and columns(table) == expected and table["rows"] == []


async def test_rows_for_slices_nodes_and_leases(api: StandIn, http: httpx.AsyncClient) -> None:
    api.create(endpoint_slice("web", [Endpoint(f"10.0.0.{i}", "n1") for i in range(1, 6)]))
    worker = node("n1")
    worker["metadata"]["labels"] = {"node-role.kubernetes.io/control-plane": ""}
    api.create(worker)
    api.create({"apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
                "metadata": {"name": "plndr-svcs-lock", "namespace": "default"}, "spec": {"holderIdentity": "n1"}})

    async def cells(path: str) -> list:
        return (await http.get(path, headers={"Accept": TABLE})).json()["rows"][0]["cells"]

    assert (await cells("/apis/discovery.k8s.io/v1/endpointslices"))[1:4] == [
        "IPv4", "80", "10.0.0.1,10.0.0.2,10.0.0.3 + 2 more..."]
    assert (await cells("/api/v1/nodes"))[:3] == ["n1", "Ready", "control-plane"]
    assert (await cells("/apis/coordination.k8s.io/v1/leases"))[:2] == ["plndr-svcs-lock", "n1"]
    one = (await http.get(f"{SERVICES}/nope", headers={"Accept": TABLE}))
    assert one.status_code == 404 and one.json()["kind"] == "Status"


@pytest.mark.parametrize(("seconds", "shown"), [
    (-5, "<invalid>"), (-1, "0s"), (45, "45s"), (119, "119s"), (150, "2m30s"), (300, "5m"), (700, "11m"),
    (3 * 3600 + 12 * 60, "3h12m"), (20 * 3600, "20h"), (52 * 3600, "2d4h"), (30 * 86400, "30d"),
    (3 * 365 * 86400 + 20 * 86400, "3y20d"), (9 * 365 * 86400, "9y"),
])
def test_age_reads_like_kubectls(seconds: int, shown: str) -> None:
    assert human_duration(seconds) == shown


async def test_partial_object_metadata_list_keeps_list_metadata_and_only_item_metadata(
        api: StandIn, http: httpx.AsyncClient) -> None:
    for name in ("a", "b", "c"):
        api.create(load_balancer_service(name))
    body = (await http.get(SERVICES, headers={"Accept": PARTIAL_LIST}, params={"limit": "2"})).json()
    assert (body["kind"], body["apiVersion"]) == ("PartialObjectMetadataList", "meta.k8s.io/v1")
    assert body["metadata"]["continue"] and body["metadata"]["remainingItemCount"] == 1
    assert body["items"] == [{"kind": "PartialObjectMetadata", "apiVersion": "meta.k8s.io/v1",
                              "metadata": api.get("services", n, "default")["metadata"]} for n in ("a", "b")]
    one = (await http.get(f"{SERVICES}/a", headers={"Accept": PARTIAL})).json()
    assert one == body["items"][0]
    # The real server's transforms refuse a list as one object and one object as a list: 406.
    assert (await http.get(SERVICES, headers={"Accept": PARTIAL})).status_code == 406
    assert (await http.get(f"{SERVICES}/a", headers={"Accept": PARTIAL_LIST})).status_code == 406


async def watch_lines(http: httpx.AsyncClient, accept: str, rv: str) -> list[dict]:
    params = {"watch": "true", "resourceVersion": rv, "allowWatchBookmarks": "true", "timeoutSeconds": "1"}
    response = await http.get(SERVICES, params=params, headers={"Accept": accept, "Accept-Encoding": "gzip"},
                              timeout=5)
    assert "content-encoding" not in response.headers  # watch streams are never compressed
    return [json.loads(line) for line in response.text.splitlines()]


async def test_watch_events_and_bookmarks_carry_only_metadata_with_partial_accept(
        api: StandIn, http: httpx.AsyncClient) -> None:
    rv = str(api.resource_version)
    api.create(load_balancer_service("a"))
    events = await watch_lines(http, PARTIAL, rv)
    assert events[0] == {"type": "ADDED", "object": {"kind": "PartialObjectMetadata", "apiVersion": "meta.k8s.io/v1",
                                                     "metadata": api.get("services", "a", "default")["metadata"]}}
    marks = [e["object"] for e in events if e["type"] == "BOOKMARK"]
    assert marks and all(m == {"kind": "PartialObjectMetadata", "apiVersion": "meta.k8s.io/v1",
                               "metadata": {"resourceVersion": str(api.resource_version)}} for m in marks)


async def test_plain_bookmarks_carry_only_kind_and_resource_version(api: StandIn, http: httpx.AsyncClient) -> None:
    marks = [e["object"] for e in await watch_lines(http, "application/json", str(api.resource_version))
             if e["type"] == "BOOKMARK"]
    assert marks and all(m == {"kind": "Service", "apiVersion": "v1",
                               "metadata": {"resourceVersion": str(api.resource_version)}} for m in marks)


async def test_table_watch_sends_column_definitions_with_the_first_event_only(
        api: StandIn, http: httpx.AsyncClient) -> None:
    rv = str(api.resource_version)
    api.create(load_balancer_service("a"))
    api.create(load_balancer_service("b"))
    events = [e for e in await watch_lines(http, TABLE, rv) if e["type"] == "ADDED"]
    assert [columns(e["object"])[:2] for e in events] == [["Name", "Type"], []]
    assert [e["object"]["rows"][0]["cells"][0] for e in events] == ["a", "b"]


async def test_large_lists_are_gzipped_and_the_log_counts_the_compressed_wire_bytes(
        api: StandIn, http: httpx.AsyncClient) -> None:
    for i in range(400):  # ~150 KiB of Services: past the real server's 128 KiB threshold
        api.create(load_balancer_service(f"svc-{i:03d}", annotations={"note": "x" * 120}))
    before = api.requests_served
    plain = await http.get(SERVICES, headers={"Accept-Encoding": "identity"})
    zipped = await http.get(SERVICES, headers={"Accept-Encoding": "gzip"})
    small = await http.get(SERVICES, headers={"Accept-Encoding": "gzip"}, params={"limit": "2"})
    assert len(plain.content) > 128 * 1024 and "content-encoding" not in plain.headers
    assert zipped.headers["content-encoding"] == "gzip" and zipped.json() == plain.json()
    assert "content-encoding" not in small.headers  # below the threshold: not worth compressing
    logged = [r.bytes_out for r in api.request_log(resource="services", after=before)]
    assert logged[0] > len(plain.content) > 10 * logged[1]  # headers included; gzip shrinks it over tenfold
    assert zipped.num_bytes_downloaded < logged[1] < zipped.num_bytes_downloaded + 1024
