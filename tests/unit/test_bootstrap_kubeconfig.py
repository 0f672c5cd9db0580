"""Bootstrap of the first kubeadm control-plane node (kube-vip #684), against the API stand-in.

kubeadm 1.29+ writes admin.conf (group kubeadm:cluster-admins, bound to cluster-admin only late in
`kubeadm init`) and super-admin.conf (system:masters) side by side. The VIP must be up before the
binding exists, so while admin.conf is refused kvip uses super-admin.conf, says so once, and goes
back to admin.conf as soon as it is authorized.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st
from lightkube import AsyncClient
from lightkube.core.exceptions import ApiError

from kvip.kube.client import (
    SUPER_ADMIN,
    BootstrapCredentials,
    CredentialState,
    Route,
    after_primary,
    make_client,
    route,
)
from kvip.kube.election import LeaseElector, LeaseKey, LeaseTiming
from kvip.kube.resources import ConfigMap, Lease
from kvip.lab.apiserver import StandIn, serving

ADMIN, SUPER = "kubernetes-admin", "kubernetes-super-admin"
TOKENS = {"admin-token": ADMIN, "super-token": SUPER}
NOTHING: set[tuple[str, str, str, str | None]] = set()


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
async def api() -> AsyncIterator[StandIn]:
    async with serving(tokens=TOKENS) as standin:
        standin.set_allowed(ADMIN, NOTHING)  # kubeadm init has not bound kubeadm:cluster-admins yet
        yield standin


@pytest.fixture
def kubeadm_dir(api: StandIn, tmp_path: Path) -> Path:
    api.write_kubeconfig(tmp_path / "admin.conf", token="admin-token")
    api.write_kubeconfig(tmp_path / SUPER_ADMIN, token="super-token")
    return tmp_path


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
async def clients(kubeadm_dir: Path, clock: FakeClock) -> AsyncIterator[tuple[BootstrapCredentials, AsyncClient]]:
    credentials = BootstrapCredentials(kubeadm_dir / "admin.conf", kubeadm_dir / SUPER_ADMIN, retry_primary=30.0,
                                       clock=clock)
    client = make_client(str(kubeadm_dir / "admin.conf"), credentials=credentials)
    try:
        yield credentials, client
    finally:
        await client.close()


async def names(client: AsyncClient, namespace_: str = "kube-system") -> list[str]:
    return [cm.metadata.name async for cm in client.list(ConfigMap, namespace=namespace_)]  # type: ignore[union-attr]


async def test_a_refused_admin_conf_falls_back_to_super_admin_conf_and_says_so_once(
        api: StandIn, clients: tuple[BootstrapCredentials, AsyncClient], caplog: pytest.LogCaptureFixture,
        clock: FakeClock) -> None:
    credentials, client = clients
    api.create({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "kubeadm-config",
                                                                      "namespace": "kube-system"}})
    with caplog.at_level(logging.INFO, logger="kvip.kube.client"):
        for _ in range(5):
            assert await names(client) == ["kubeadm-config"]
            clock.now += 30.0  # admin.conf is retried (and refused again) each time: no new line
    assert credentials.using_fallback
    fell_back = [r for r in caplog.records if SUPER_ADMIN in r.getMessage()]
    assert len(fell_back) == 1 and "403" in fell_back[0].getMessage()


async def test_admin_conf_is_used_again_once_authorized_and_super_admin_conf_is_no_longer_needed(
        api: StandIn, clients: tuple[BootstrapCredentials, AsyncClient], clock: FakeClock) -> None:
    credentials, client = clients
    await names(client)
    assert credentials.using_fallback
    api.set_allowed(ADMIN, None)  # kubeadm binds kubeadm:cluster-admins
    await names(client)
    assert credentials.using_fallback, "admin.conf is retried only every retry_primary seconds"
    clock.now += 30.0
    await names(client)
    assert not credentials.using_fallback
    api.set_allowed(SUPER, NOTHING)  # proof that requests no longer go out as super-admin
    assert await names(client) == []


async def test_while_admin_conf_is_still_refused_the_periodic_retry_stays_on_super_admin_conf(
        clients: tuple[BootstrapCredentials, AsyncClient], clock: FakeClock) -> None:
    credentials, client = clients
    await names(client)
    clock.now += 30.0
    assert await names(client) == []  # admin.conf tried, refused, the request answered as super-admin
    assert credentials.using_fallback


async def test_a_403_after_admin_conf_was_authorized_is_a_real_answer_not_hidden_by_the_fallback(
        api: StandIn, clients: tuple[BootstrapCredentials, AsyncClient]) -> None:
    credentials, client = clients
    api.set_allowed(ADMIN, None)
    await names(client)
    api.set_allowed(ADMIN, NOTHING)  # RBAC revoked later: kvip must see it, not escalate
    with pytest.raises(ApiError) as refused:
        await names(client)
    assert refused.value.status.code == 403 and not credentials.using_fallback


async def test_without_super_admin_conf_the_403_is_returned(api: StandIn, kubeadm_dir: Path) -> None:
    (kubeadm_dir / SUPER_ADMIN).unlink()
    credentials = BootstrapCredentials.for_kubeconfig(str(kubeadm_dir / "admin.conf"))
    client = make_client(str(kubeadm_dir / "admin.conf"), credentials=credentials)
    try:
        with pytest.raises(ApiError) as refused:
            await names(client)
        assert refused.value.status.code == 403
    finally:
        await client.close()


async def test_the_elector_takes_the_control_plane_lease_during_bootstrap_with_its_own_client(
        api: StandIn, kubeadm_dir: Path) -> None:
    """The elector's client shares the switch but not the pool: it acquires plndr-cp-lock as super-admin."""
    credentials = BootstrapCredentials.for_kubeconfig(str(kubeadm_dir / "admin.conf"))
    assert credentials is not None
    client = make_client(str(kubeadm_dir / "admin.conf"), credentials=credentials)
    elector = LeaseElector(client, identity="cp-1", on_change=lambda: None,
                           timing=LeaseTiming(lease_duration=3, renew_deadline=2, retry_period=0.5))
    elector.want([LeaseKey("kube-system", "plndr-cp-lock")])
    try:
        for _ in range(20):  # a fresh Lease is created, or taken after its spread delay
            await elector.cycle()
            if elector.held():
                break
            await asyncio.sleep(0.1)
        assert elector.held() == {LeaseKey("kube-system", "plndr-cp-lock")}
        assert api.get("leases", "plndr-cp-lock", "kube-system")["spec"]["holderIdentity"] == "cp-1"
        assert credentials.using_fallback
    finally:
        await client.close()


async def test_a_watch_runs_over_the_fallback(api: StandIn, clients: tuple[BootstrapCredentials, AsyncClient]) -> None:
    _, client = clients
    watch = client.watch(Lease, namespace="kube-system")
    api.create({"apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
                "metadata": {"name": "seen", "namespace": "kube-system"}, "spec": {}})
    async for kind, lease in watch:
        assert (kind, lease.metadata.name) == ("ADDED", "seen")  # type: ignore[union-attr]
        break


def test_no_switch_in_cluster_or_when_the_kubeconfig_already_is_super_admin_conf() -> None:
    assert BootstrapCredentials.for_kubeconfig(None) is None
    assert BootstrapCredentials.for_kubeconfig("/etc/kubernetes/super-admin.conf") is None
    switch = BootstrapCredentials.for_kubeconfig("/etc/kubernetes/admin.conf")
    assert switch is not None and switch.fallback == Path("/etc/kubernetes/super-admin.conf")


# -- the rule, with plain values ----------------------------------------------------------------


@given(st.lists(st.tuples(st.sampled_from([200, 201, 404, 409, 401, 403, 429, 500, 503]),
                          st.floats(0, 100), st.booleans()), max_size=40))
def test_once_the_kubeconfig_was_authorized_nothing_ever_goes_to_the_fallback(
        answers: list[tuple[int, float, bool]]) -> None:
    state, now, authorized = CredentialState(), 0.0, False
    for status, step, exists in answers:
        now += step
        chosen, state = route(state, now, 30.0)
        if chosen is Route.FALLBACK:
            assert not authorized
            continue
        retry, state = after_primary(state, status, now, fallback_exists=exists, retry_primary=30.0)
        assert not (retry and authorized)
        assert retry == (status == 403 and exists and not authorized)
        authorized = authorized or status in (200, 201, 404, 409)


def test_on_the_fallback_the_kubeconfig_is_retried_once_per_period() -> None:
    state = CredentialState(on_fallback=True, retry_primary_at=130.0)
    assert route(state, 129.9, 30.0)[0] is Route.FALLBACK
    chosen, state = route(state, 130.0, 30.0)
    assert chosen is Route.PRIMARY and route(state, 130.1, 30.0)[0] is Route.FALLBACK
