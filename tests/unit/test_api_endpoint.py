"""Which kubeconfig and API server an agent talks to: kube-vip's order, and the control-plane rule that
keeps the first kubeadm node from waiting on the VIP it is meant to bring up."""

from __future__ import annotations

from pathlib import Path

import pytest

from kvip.kube.client import ADMIN_CONF, ApiEndpoint, choose_endpoint, make_client
from kvip.lab.apiserver import StandIn

HOME = "/home/op"
HOME_CONF = "/home/op/.kube/config"


def choose(explicit: str | None, *files: str, control_plane: bool = False, port: int = 6443,
           kubernetes_addr: str | None = None) -> ApiEndpoint:
    present = set(files)
    return choose_endpoint(explicit, control_plane=control_plane, port=port, kubernetes_addr=kubernetes_addr,
                           home=HOME, exists=present.__contains__)


def test_a_kubeadm_static_pod_reaches_its_own_api_server_through_the_kubernetes_host_alias() -> None:
    # admin.conf's server is the control-plane endpoint: the VIP, down until this agent brings it up.
    assert choose(None, ADMIN_CONF, control_plane=True) == ApiEndpoint(ADMIN_CONF, "https://kubernetes:6443")
    assert choose(ADMIN_CONF, ADMIN_CONF, control_plane=True, port=8443).server == "https://kubernetes:8443"


def test_kubernetes_addr_replaces_the_server_of_admin_conf_and_of_an_explicit_kubeconfig() -> None:
    assert choose(None, ADMIN_CONF, control_plane=True, kubernetes_addr="127.0.0.1:6443") == \
        ApiEndpoint(ADMIN_CONF, "https://127.0.0.1:6443")
    assert choose("/etc/kvip/kubeconfig", "/etc/kvip/kubeconfig", ADMIN_CONF,
                  kubernetes_addr="http://10.0.0.1:8080") == ApiEndpoint("/etc/kvip/kubeconfig", "http://10.0.0.1:8080")


def test_an_explicit_kubeconfig_wins_and_keeps_its_server_without_kubernetes_addr() -> None:
    assert choose("/etc/kvip/kubeconfig", "/etc/kvip/kubeconfig", ADMIN_CONF, control_plane=True) == \
        ApiEndpoint("/etc/kvip/kubeconfig")


def test_services_only_agents_use_admin_conf_as_it_is_then_home_then_in_cluster() -> None:
    assert choose(None, ADMIN_CONF, HOME_CONF) == ApiEndpoint(ADMIN_CONF)
    assert choose(None, HOME_CONF) == ApiEndpoint(HOME_CONF)
    assert choose(None) == ApiEndpoint(None)


def test_a_missing_explicit_kubeconfig_is_kept_so_that_loading_it_says_what_is_missing() -> None:
    assert choose("/nowhere/kubeconfig") == ApiEndpoint("/nowhere/kubeconfig")


@pytest.mark.parametrize("server_in_file", ["http://127.0.0.1:1"])  # the "VIP" nobody answers yet (a closed port)
async def test_the_server_override_is_where_requests_really_go(tmp_path: Path, server_in_file: str) -> None:
    api = StandIn()
    url = await api.start()
    try:
        path = tmp_path / "admin.conf"
        api.write_kubeconfig(path, server=server_in_file)
        client = make_client(str(path), request_timeout=2.0, server=url)
        try:
            namespaces = [ns async for ns in client.list(_namespace_kind())]
        finally:
            await client.close()
        assert namespaces is not None
        assert api.requests_served >= 1
    finally:
        await api.close()


def _namespace_kind() -> type:
    from lightkube.resources.core_v1 import Namespace

    return Namespace


@pytest.mark.parametrize("good", ["127.0.0.1:6443", "kubernetes:6443", "https://10.0.0.1:6443", "http://[::1]:8080"])
def test_kubernetes_addr_takes_kube_vips_spellings(good: str) -> None:
    from kvip.config.values import api_server_address

    assert api_server_address(good) == good


@pytest.mark.parametrize("bad", ["", "ftp://x:1", "https://x:6443/api", "a b:1", "https://:6443", "x:99999",
                                 "https://x:6443?y=1", "ĥost:6443"])
def test_kubernetes_addr_refuses_what_is_not_an_api_server_address(bad: str) -> None:
    from kvip.config.values import api_server_address

    with pytest.raises(ValueError):
        api_server_address(bad)
