"""deploy/helm/kvip renders (with tests/unit/helm_render.py's documented subset) to exactly what
`kvip manifest` prints for the same choices, and every rendered object is valid Kubernetes."""

from __future__ import annotations

import sys
from pathlib import Path

import kubernetes_validate
import pytest

sys.path.insert(0, str(Path(__file__).parent))

from helm_render import render

from kvip.deploy.manifests import ManifestOptions, manifests

CHART = Path(__file__).resolve().parents[2] / "deploy" / "helm" / "kvip"
CASES = [("table", "none", "", ""), ("table", "service", "", ""), ("arp", "global", "eth0", ""),
         ("table", "global", "lo", ""), ("bgp", "none", "", ""), ("bgp", "service", "", "kvip-bgp")]
PEERS = "192.0.2.1:65001,[2001:db8::1]:65001"


@pytest.mark.parametrize("mode,election,interface,secret", CASES)
def test_chart_renders_the_same_objects_as_kvip_manifest(mode: str, election: str, interface: str,
                                                         secret: str) -> None:
    peers = "" if secret else PEERS
    values = {"mode": mode, "election": election, "interface": interface, "image": "registry.example/kvip:1",
              "controller": {"enabled": True}, "bgp": {"as": 64512, "peers": peers, "peersSecret": secret}}
    rendered = render(CHART, values, namespace="lb-system")
    options = dict(namespace="lb-system", image="registry.example/kvip:1", mode=mode, election=election,
                   interface=interface, bgp_as=64512, bgp_peers=peers, bgp_secret=secret)
    expected = manifests(ManifestOptions(kind="daemonset", **options)) + manifests(
        ManifestOptions(kind="controller", **options))
    assert rendered == expected
    for obj in rendered:
        kubernetes_validate.validate(obj, "1.30.0", strict=True)


def test_controller_is_optional() -> None:
    kinds = [o["kind"] for o in render(CHART, {}, namespace="kube-system")]
    assert "Deployment" not in kinds and "DaemonSet" in kinds


def test_bgp_peers_with_passwords_come_from_the_secret_never_a_literal() -> None:
    values = {"mode": "bgp", "bgp": {"as": 64512, "peersSecret": "kvip-bgp"}}
    daemonset = next(o for o in render(CHART, values, namespace="kube-system") if o["kind"] == "DaemonSet")
    env = {e["name"]: e for e in daemonset["spec"]["template"]["spec"]["containers"][0]["env"]}
    assert env["bgp_peers"] == {"name": "bgp_peers",
                                "valueFrom": {"secretKeyRef": {"name": "kvip-bgp", "key": "bgp_peers"}}}
