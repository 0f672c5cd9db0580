"""`kvip manifest`: every variant validates against the Kubernetes schemas (strict) and a real kubectl
applies it to the API stand-in; RBAC comes from the same rules the least-privilege e2e test enforces."""

from __future__ import annotations

import asyncio
import itertools
import shutil
from pathlib import Path

import kubernetes_validate
import pytest
import yaml

from kvip.deploy.manifests import ManifestOptions, manifests, to_yaml
from kvip.deploy.rbac import agent_rules
from kvip.lab.apiserver import StandIn
from kvip.lab.objects import namespace

VARIANTS = [ManifestOptions(kind=k, mode=m, election=e)
            for k, m, e in itertools.product(("daemonset", "pod", "controller"), ("table", "arp"),
                                             ("none", "global", "service"))
            if not (m == "arp" and e == "none")]
VARIANTS += [ManifestOptions(kind=k, mode="bgp", election=e, bgp_peers="192.0.2.1:65001")
             for k, e in itertools.product(("daemonset", "pod"), ("none", "global", "service"))]


@pytest.mark.parametrize("options", VARIANTS, ids=lambda o: f"{o.kind}-{o.mode}-{o.election}")
def test_every_generated_object_is_valid_kubernetes(options: ManifestOptions) -> None:
    for obj in manifests(options):
        kubernetes_validate.validate(obj, "1.30.0", strict=True)


def test_daemonset_is_host_network_with_only_net_admin_and_net_raw_and_kube_vip_env() -> None:
    objects = manifests(ManifestOptions(election="service"))
    ds = next(o for o in objects if o["kind"] == "DaemonSet")
    pod = ds["spec"]["template"]["spec"]
    container = pod["containers"][0]
    assert pod["hostNetwork"] is True
    assert container["securityContext"]["capabilities"] == {"drop": ["ALL"], "add": ["NET_ADMIN", "NET_RAW"]}
    env = {e["name"]: e.get("value", e.get("valueFrom")) for e in container["env"]}
    assert env["vip_nodename"] == {"fieldRef": {"fieldPath": "spec.nodeName"}}
    assert env["vip_routingtable"] == "true" and env["svc_election"] == "true"
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
    role = next(o for o in objects if o["kind"] == "ClusterRole")
    assert role["rules"] == [r.to_k8s() for r in agent_rules(election=True)]
    assert not any("*" in r["verbs"] or "*" in r["resources"] for r in role["rules"])


async def test_kubectl_applies_the_manifests_to_the_stand_in(tmp_path: Path) -> None:
    kubectl = shutil.which("kubectl")
    assert kubectl, "kubectl is required (.ci/setup installs it)"
    api = StandIn()
    await api.start()
    api.create(namespace("kube-system"))
    try:
        config = api.write_kubeconfig(tmp_path / "kubeconfig")
        for kind in ("daemonset", "controller"):
            path = tmp_path / f"{kind}.yaml"
            path.write_text(to_yaml(manifests(ManifestOptions(kind=kind, election="global"))))
            proc = await asyncio.create_subprocess_exec(
                kubectl, "--kubeconfig", str(config), "apply", "--validate=false", "-f", str(path),
                stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT)
            out, _ = await asyncio.wait_for(proc.communicate(), 60)
            assert proc.returncode == 0, out.decode()
        assert api.get("daemonsets", "kvip", "kube-system")["spec"]["template"]["spec"]["hostNetwork"] is True
        assert api.get("clusterroles", "kvip-controller")["rules"]
        assert {sa["metadata"]["name"] for sa in api.list("serviceaccounts", "kube-system")} == {"kvip",
                                                                                              "kvip-controller"}
    finally:
        await api.close()


def test_manifest_yaml_round_trips() -> None:
    text = to_yaml(manifests(ManifestOptions()))
    assert [o["kind"] for o in yaml.safe_load_all(text)] == ["ServiceAccount", "ClusterRole", "ClusterRoleBinding",
                                                             "DaemonSet"]


def test_bgp_daemonset_env_is_a_valid_agent_config_with_a_writable_run_dir() -> None:
    from kvip.config.agent import Mode, load_config

    objects = manifests(ManifestOptions(mode="bgp", bgp_as=64512, bgp_peers="192.0.2.1:65001,[2001:db8::1]:65001"))
    pod = next(o for o in objects if o["kind"] == "DaemonSet")["spec"]["template"]["spec"]
    container = pod["containers"][0]
    env = {e["name"]: e["value"] for e in container["env"] if "value" in e}
    config = load_config({**env, "vip_nodename": "node-1"})
    assert config.mode is Mode.BGP and config.bgp is not None
    assert config.bgp.asn == 64512 and len(config.bgp.peers) == 2
    assert config.bgp.run_dir.startswith(container["volumeMounts"][0]["mountPath"])
    assert pod["volumes"] == [{"name": "run", "emptyDir": {"medium": "Memory"}}]
