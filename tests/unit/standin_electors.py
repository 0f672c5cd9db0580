"""What the LeaseElector tests against the API stand-in share (`test_election_standin`,
`test_handover_standin`): a clock the test moves, one HTTP client per node (each with its node's token,
all closed at the end), electors running as tasks, and a client that loses a race on demand."""

from __future__ import annotations

import asyncio
import copy
from collections.abc import AsyncIterator, Callable, Mapping
from contextlib import asynccontextmanager
from typing import Any

import pytest
from lightkube import AsyncClient, KubeConfig

from kvip.kube.election import LeaseElector, LeaseKey
from kvip.lab.apiserver import StandIn, serving


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def standin_fixtures(tokens: Mapping[str, str]) -> tuple[Any, Any]:
    """The pytest fixtures `api` (a stand-in serving `tokens`: token → node name) and `clients` (its
    `node_clients`), for a test module to bind: `api, clients = standin_fixtures(TOKENS)`."""

    @pytest.fixture
    async def api() -> AsyncIterator[StandIn]:
        async with serving(tokens=dict(tokens)) as standin:
            yield standin

    @pytest.fixture
    async def clients(api: StandIn) -> AsyncIterator[Callable[[str], AsyncClient]]:
        async with node_clients(api, tokens) as client_for:
            yield client_for

    return api, clients


@asynccontextmanager
async def node_clients(api: StandIn, tokens: Mapping[str, str]) -> AsyncIterator[Callable[[str], AsyncClient]]:
    """`client_for(node)`: a new client speaking as `node` (its token in `tokens`: token → node name)."""
    made: list[AsyncClient] = []

    def client_for(node: str) -> AsyncClient:
        token = next(t for t, user in tokens.items() if user == node)
        made.append(AsyncClient(config=KubeConfig.from_dict(api.kubeconfig(token=token))))
        return made[-1]

    try:
        yield client_for
    finally:
        for client in made:
            await client.close()


@asynccontextmanager
async def running(*electors: LeaseElector) -> AsyncIterator[None]:
    """The electors' `run` loops as tasks, cancelled (and awaited) on the way out."""
    tasks = [asyncio.create_task(e.run()) for e in electors]
    try:
        yield
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


class WriteLandsFirst:
    """A node's client, except that once `armed`, another write (`edit` of the Lease `key`) reaches the
    server between this client's read and its PUT: the real race, made deterministic."""

    key: LeaseKey

    def __init__(self, client: AsyncClient, api: StandIn) -> None:
        self._client, self._api = client, api
        self.armed = False

    def edit(self, lease: dict[str, Any]) -> None:
        raise NotImplementedError

    def list(self, *args: Any, **kwargs: Any) -> Any:
        return self._client.list(*args, **kwargs)

    async def get(self, *args: Any, **kwargs: Any) -> Any:
        return await self._client.get(*args, **kwargs)

    async def create(self, *args: Any, **kwargs: Any) -> Any:
        return await self._client.create(*args, **kwargs)

    async def replace(self, obj: Any, **kwargs: Any) -> Any:
        if self.armed:
            self.armed = False
            current = copy.deepcopy(self._api.get("leases", self.key.name, self.key.namespace))
            self.edit(current)
            self._api.replace(current)
        return await self._client.replace(obj, **kwargs)
