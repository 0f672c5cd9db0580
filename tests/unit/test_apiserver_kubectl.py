"""A real kubectl (get, apply, label, get -w, delete) works against the stand-in."""

from __future__ import annotations

import asyncio
import shutil
import textwrap
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from kvip.lab.apiserver import StandIn
from kvip.lab.objects import load_balancer_service, namespace

KUBECTL = shutil.which("kubectl")

SERVICE = textwrap.dedent("""
    apiVersion: v1
    kind: Service
    metadata: {name: web, namespace: default}
    spec:
      type: LoadBalancer
      ports: [{port: 80, protocol: TCP}]
""")


@pytest.fixture
async def kubeconfig(tmp_path: Path) -> AsyncIterator[tuple[StandIn, Path]]:
    assert KUBECTL, "kubectl is required (.ci/setup installs Debian's kubernetes-client)"
    api = StandIn()
    await api.start()
    api.create(namespace("default"))
    try:
        yield api, api.write_kubeconfig(tmp_path / "kubeconfig")
    finally:
        await api.stop()


async def kubectl(config: Path, *args: str) -> str:
    proc = await asyncio.create_subprocess_exec(
        KUBECTL, "--kubeconfig", str(config), *args,  # type: ignore[arg-type]
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
    )
    out, _ = await asyncio.wait_for(proc.communicate(), 30)
    assert proc.returncode == 0, out.decode()
    return out.decode()


async def test_kubectl_applies_gets_watches_labels_and_deletes(kubeconfig: tuple[StandIn, Path], tmp_path: Path) -> None:
    api, config = kubeconfig
    manifest = tmp_path / "svc.yaml"
    manifest.write_text(SERVICE)
    # The stand-in serves no OpenAPI document, so client-side validation is off.
    assert "service/web created" in await kubectl(config, "apply", "--validate=false", "-f", str(manifest))
    assert api.get("services", "web", "default")["spec"]["type"] == "LoadBalancer"
    assert "service/web unchanged" in await kubectl(config, "apply", "--validate=false", "-f", str(manifest))
    assert "web" in await kubectl(config, "get", "services")

    watch = await asyncio.create_subprocess_exec(
        KUBECTL, "--kubeconfig", str(config), "get", "services", "-w", "-o", "name",  # type: ignore[arg-type]
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT)
    assert watch.stdout is not None
    first = await asyncio.wait_for(watch.stdout.readline(), 10)
    await kubectl(config, "label", "service", "web", "tier=front")
    second = await asyncio.wait_for(watch.stdout.readline(), 10)
    watch.terminate()
    await watch.wait()
    assert first.strip() == second.strip() == b"service/web"
    assert api.get("services", "web", "default")["metadata"]["labels"] == {"tier": "front"}

    assert 'service "web" deleted' in await kubectl(config, "delete", "-f", str(manifest))
    assert api.list("services") == []


def table_lines(out: str) -> list[list[str]]:
    return [line.split() for line in out.strip().splitlines()]


async def test_kubectl_get_svc_prints_the_real_columns_from_server_side_tables(
        kubeconfig: tuple[StandIn, Path]) -> None:
    api, config = kubeconfig
    served = load_balancer_service("web", vips=["10.9.0.1"])
    served["spec"]["clusterIP"] = "10.96.0.10"
    api.create(served)
    api.create(load_balancer_service("waiting", port=53, protocol="UDP"))
    header, *rows = table_lines(await kubectl(config, "get", "svc"))
    assert header == ["NAME", "TYPE", "CLUSTER-IP", "EXTERNAL-IP", "PORT(S)", "AGE"]
    assert [row[:5] for row in rows] == [["waiting", "LoadBalancer", "<none>", "<pending>", "53/UDP"],
                                         ["web", "LoadBalancer", "10.96.0.10", "10.9.0.1", "80/TCP"]]
    wide = table_lines(await kubectl(config, "get", "svc", "-o", "wide"))
    assert wide[0][-1] == "SELECTOR" and [row[-1] for row in wide[1:]] == ["app=waiting", "app=web"]


async def test_kubectl_pages_with_chunk_size_and_watches_table_rows(kubeconfig: tuple[StandIn, Path]) -> None:
    api, config = kubeconfig
    for name in ("a", "b", "c"):
        api.create(load_balancer_service(name))
    before = api.requests_served
    listed = table_lines(await kubectl(config, "get", "svc", "--chunk-size=1"))
    assert [row[0] for row in listed[1:]] == ["a", "b", "c"]
    assert len(api.request_log(resource="services", verbs=("list",), after=before)) == 3  # one page per service

    watch = await asyncio.create_subprocess_exec(
        KUBECTL, "--kubeconfig", str(config), "get", "svc", "a", "-w",  # type: ignore[arg-type]
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT)
    assert watch.stdout is not None
    header = await asyncio.wait_for(watch.stdout.readline(), 10)
    first = await asyncio.wait_for(watch.stdout.readline(), 10)
    async with asyncio.timeout(10):
        while not api.store.watchers:  # kubectl drops the watch's first event: change the service after it
            await asyncio.sleep(0.05)
    api.patch("services", "a", {"status": {"loadBalancer": {"ingress": [{"ip": "10.9.0.7"}]}}}, "default", "status")
    changed = await asyncio.wait_for(watch.stdout.readline(), 10)
    watch.terminate()
    await watch.wait()
    assert header.split()[:4] == [b"NAME", b"TYPE", b"CLUSTER-IP", b"EXTERNAL-IP"]
    assert first.split()[3] == b"<pending>" and changed.split()[3] == b"10.9.0.7"
