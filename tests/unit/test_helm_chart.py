"""deploy/helm/kvip renders (with tests/unit/helm_render.py's documented subset) to exactly what
`kvip manifest` prints for the same choices, and every rendered object is valid Kubernetes."""

from __future__ import annotations

import sys
from pathlib import Path

import kubernetes_validate
import pytest

sys.path.insert(0, str(Path(__file__).parent))

from helm_render import render

from kvip.deploy.control_plane import ControlPlaneOptions
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


VIP = "192.0.2.100"
HYBRID_CASES = {  # values -> the same choices for `kvip manifest daemonset`
    "hybrid-arp": ({"mode": "arp", "election": "global", "interface": "eth0", "controlPlane": {"enabled": True,
                    "address": VIP}}, {"mode": "arp", "election": "global", "interface": "eth0",
                                           "control_plane": ControlPlaneOptions(address=VIP)}),
    "hybrid-per-service": ({"mode": "arp", "election": "service", "controlPlane": {"enabled": True, "address": VIP,
                            "leaseName": "cp", "port": 8443}},
                           {"mode": "arp", "election": "service",
                                "control_plane": ControlPlaneOptions(address=VIP, lease_name="cp", port=8443)}),
    "hybrid-bgp-anycast-dns": ({"mode": "bgp", "bgp": {"peers": PEERS}, "controlPlane": {
        "enabled": True, "address": "cp.example.com", "election": False, "dnsMode": "dual", "vipSubnet": "32"}},
        {"mode": "bgp", "bgp_peers": PEERS, "control_plane": ControlPlaneOptions(
            address="cp.example.com", election=False, dns_mode="dual", vip_subnet="32")}),
    "control-plane-only": ({"mode": "arp", "services": False, "controlPlane": {"enabled": True, "address": VIP}},
                           {"mode": "arp", "services": False, "control_plane": ControlPlaneOptions(address=VIP)}),
    "on-demand": ({"perServiceElectionOnDemand": True}, {"on_demand": True}),
    "on-demand-global": ({"mode": "arp", "election": "global", "perServiceElectionOnDemand": True},
                         {"mode": "arp", "election": "global", "on_demand": True}),
}


@pytest.mark.parametrize("name", sorted(HYBRID_CASES))
def test_chart_renders_the_hybrid_and_on_demand_forms_as_kvip_manifest_does(name: str) -> None:
    values, options = HYBRID_CASES[name]
    rendered = render(CHART, values, namespace="lb-system")
    assert rendered == manifests(ManifestOptions(kind="daemonset", namespace="lb-system", **options))
    for obj in rendered:
        kubernetes_validate.validate(obj, "1.30.0", strict=True)
