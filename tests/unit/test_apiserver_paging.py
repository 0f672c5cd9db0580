"""Consistent reads at scale on the API stand-in, over real HTTP, as the real server answers them:
resourceVersion / resourceVersionMatch, limit and continue (pages of one snapshot, 410 once it is
compacted), remainingItemCount, and the freshness wait for a revision not reached yet."""

from __future__ import annotations

import asyncio
import base64
import json
from collections.abc import AsyncIterator

import httpx2 as httpx
import pytest
from lightkube import AsyncClient, KubeConfig

from kvip.kube.resources import Service
from kvip.lab.apiserver import StandIn, serving
from kvip.lab.objects import load_balancer_service

SERVICES = "/api/v1/namespaces/default/services"


@pytest.fixture
async def api() -> AsyncIterator[StandIn]:
    async with serving(namespaces=("default",), history_limit=50) as standin:
        standin.policy.fresh_wait = 0.4  # the real watch cache waits 3 s; the rule is the same
        for name in ("a", "b", "c", "d", "e"):
            standin.create(load_balancer_service(name))
        yield standin


@pytest.fixture
async def http(api: StandIn) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=api.url) as client:
        yield client


def names(body: dict) -> list[str]:
    return [o["metadata"]["name"] for o in body["items"]]


async def test_pages_are_served_from_the_first_pages_snapshot_in_key_order(api: StandIn, http: httpx.AsyncClient) -> None:
    first = (await http.get(SERVICES, params={"limit": "2"})).json()
    snapshot = first["metadata"]["resourceVersion"]
    assert names(first) == ["a", "b"] and first["metadata"]["remainingItemCount"] == 3
    # The world moves on between pages: a deleted, c relabelled, f created.
    api.delete("services", "d", "default")
    api.patch("services", "c", {"metadata": {"labels": {"moved": "on"}}}, namespace="default")
    api.create(load_balancer_service("f"))
    second = (await http.get(SERVICES, params={"limit": "2", "continue": first["metadata"]["continue"]})).json()
    third = (await http.get(SERVICES, params={"limit": "2", "continue": second["metadata"]["continue"]})).json()
    assert names(second) == ["c", "d"] and names(third) == ["e"]
    assert "labels" not in second["items"][0]["metadata"]  # c as it was at the snapshot
    assert second["metadata"]["resourceVersion"] == third["metadata"]["resourceVersion"] == snapshot
    assert second["metadata"]["remainingItemCount"] == 1
    assert "continue" not in third["metadata"] and "remainingItemCount" not in third["metadata"]
    assert names((await http.get(SERVICES)).json()) == ["a", "b", "c", "e", "f"]  # unset RV: the newest state


async def test_continue_token_is_the_real_servers_encoding_of_snapshot_and_last_key(http: httpx.AsyncClient) -> None:
    first = (await http.get("/api/v1/services", params={"limit": "2"})).json()
    token = first["metadata"]["continue"]
    decoded = json.loads(base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)))
    assert decoded == {"v": "meta.k8s.io/v1", "rv": int(first["metadata"]["resourceVersion"]), "start": "default/b\x00"}


async def test_expired_continue_token_is_410_with_a_token_for_the_rest_from_the_newest_state(
        api: StandIn, http: httpx.AsyncClient) -> None:
    first = (await http.get(SERVICES, params={"limit": "2"})).json()
    api.delete("services", "c", "default")
    api.compact()
    gone = await http.get(SERVICES, params={"limit": "2", "continue": first["metadata"]["continue"]})
    status = gone.json()
    assert gone.status_code == 410 and (status["kind"], status["reason"], status["code"]) == ("Status", "Expired", 410)
    assert status["message"].startswith("The provided continue parameter is too old to display a consistent list")
    rest = (await http.get(SERVICES, params={"limit": "5", "continue": status["metadata"]["continue"]})).json()
    assert names(rest) == ["d", "e"]  # after b, as things are now: c is gone
    assert rest["metadata"]["resourceVersion"] == str(api.resource_version)


async def test_a_snapshot_pushed_out_of_bounded_history_expires_too(api: StandIn, http: httpx.AsyncClient) -> None:
    first = (await http.get(SERVICES, params={"limit": "2"})).json()
    for i in range(60):  # history_limit is 50
        api.patch("services", "a", {"metadata": {"labels": {"i": str(i)}}}, namespace="default")
    gone = await http.get(SERVICES, params={"limit": "2", "continue": first["metadata"]["continue"]})
    assert gone.status_code == 410 and gone.json()["reason"] == "Expired"


async def test_resource_version_zero_is_served_from_cache_and_ignores_limit(http: httpx.AsyncClient) -> None:
    body = (await http.get(SERVICES, params={"limit": "2", "resourceVersion": "0"})).json()
    assert names(body) == ["a", "b", "c", "d", "e"] and "continue" not in body["metadata"]


async def test_exact_and_legacy_paged_resource_version_read_that_revision(api: StandIn, http: httpx.AsyncClient) -> None:
    then = str(api.resource_version)
    api.delete("services", "a", "default")
    exact = (await http.get(SERVICES, params={"resourceVersion": then, "resourceVersionMatch": "Exact"})).json()
    legacy = (await http.get(SERVICES, params={"resourceVersion": then, "limit": "10"})).json()
    not_older = (await http.get(SERVICES, params={"resourceVersion": then})).json()
    assert names(exact) == names(legacy) == ["a", "b", "c", "d", "e"]
    assert exact["metadata"]["resourceVersion"] == legacy["metadata"]["resourceVersion"] == then
    assert names(not_older) == ["b", "c", "d", "e"]  # not older than: the newest is fine
    api.compact()
    expired = await http.get(SERVICES, params={"resourceVersion": then, "resourceVersionMatch": "Exact"})
    assert expired.status_code == 410
    assert expired.json()["message"] == "The resourceVersion for the provided list is too old."


async def test_a_resource_version_not_reached_waits_then_is_504_too_large(api: StandIn, http: httpx.AsyncClient) -> None:
    future = str(api.resource_version + 1)
    params = {"resourceVersion": future, "resourceVersionMatch": "NotOlderThan"}
    timeout = await http.get(SERVICES, params=params)
    status = timeout.json()
    assert timeout.status_code == 504 and status["reason"] == "Timeout" and timeout.headers["Retry-After"] == "1"
    assert status["message"] == f"Timeout: Too large resource version: {future}, current: {api.resource_version}"
    assert status["details"]["causes"] == [{"reason": "ResourceVersionTooLarge", "message": "Too large resource version"}]
    waiting = asyncio.create_task(http.get(SERVICES, params=params))
    await asyncio.sleep(0.1)
    api.create(load_balancer_service("late"))
    served = await waiting
    assert served.status_code == 200 and served.json()["metadata"]["resourceVersion"] == future


@pytest.mark.parametrize(("params", "code", "message"), [
    ({"resourceVersionMatch": "NotOlderThan"}, 422,
     ('ListOptions.meta.k8s.io "" is invalid: resourceVersionMatch: Forbidden: resourceVersionMatch is forbidden '
      "unless resourceVersion is provided")),
    ({"resourceVersionMatch": "Exact", "resourceVersion": "0"}, 422,
     ('ListOptions.meta.k8s.io "" is invalid: resourceVersionMatch: Forbidden: resourceVersionMatch "exact" is '
      'forbidden for resourceVersion "0"')),
    ({"continue": "bm90LWEtdG9rZW4", "resourceVersion": "3"}, 400,
     "specifying resource version is not allowed when using continue"),
    ({"continue": "bm90LWEtdG9rZW4"}, 400, None),
])
async def test_invalid_list_options_are_refused_like_the_real_server(
        http: httpx.AsyncClient, params: dict[str, str], code: int, message: str | None) -> None:
    response = await http.get(SERVICES, params=params)
    assert response.status_code == code and response.json()["kind"] == "Status"
    if message:
        assert response.json()["message"] == message


async def test_remaining_item_count_is_left_out_when_a_selector_makes_it_unknown(
        api: StandIn, http: httpx.AsyncClient) -> None:
    for name in ("a", "b", "c"):
        api.patch("services", name, {"metadata": {"labels": {"tier": "web"}}}, namespace="default")
    body = (await http.get(SERVICES, params={"limit": "1", "labelSelector": "tier=web"})).json()
    assert names(body) == ["a"] and body["metadata"]["continue"] and "remainingItemCount" not in body["metadata"]


async def test_lightkube_pages_through_a_list_with_chunk_size(api: StandIn) -> None:
    client = AsyncClient(config=KubeConfig.from_dict(api.kubeconfig()))
    before = api.requests_served
    listed = [o.metadata.name async for o in client.list(Service, namespace="default", chunk_size=2)]
    assert listed == ["a", "b", "c", "d", "e"]
    assert len(api.request_log(resource="services", verbs=("list",), after=before)) == 3
