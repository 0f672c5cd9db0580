"""A real kubectl (get, apply, label, get -w, delete) works against the stand-in."""

from __future__ import annotations

import asyncio
import shutil
import textwrap
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from kvip.lab.apiserver import StandIn
from kvip.lab.objects import namespace

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
