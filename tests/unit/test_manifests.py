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

from kvip.deploy.manifests import (
    ManifestOptions,
    PasswordInManifest,
    manifests,
    to_yaml,
)
from kvip.lab.apiserver import StandIn
from kvip.lab.objects import namespace

VARIANTS = [ManifestOptions(kind=k, mode=m, election=e)
            for k, m, e in itertools.product(("daemonset", "pod", "controller"), ("table", "arp"),
                                             ("none", "global", "service"))
            if not (m == "arp" and e == "none")]
VARIANTS += [ManifestOptions(kind=k, mode="bgp", election=e, bgp_peers="192.0.2.1:65001")
             for k, e in itertools.product(("daemonset", "pod"), ("none", "global", "service"))]
VARIANTS += [ManifestOptions(kind="daemonset", mode="bgp", bgp_secret="kvip-bgp")]

# The expected RBAC, written out by hand (not computed by kvip.deploy.rbac): (kind, apiGroup, resource, verbs).
AGENT_CLUSTER = [("", "events", ["create", "patch"]), ("", "nodes", ["list", "watch"]),
                 ("", "services", ["list", "watch"]), ("", "services/status", ["patch"]),
                 ("discovery.k8s.io", "endpointslices", ["list", "watch"])]
SERVICE_LEASES = ("coordination.k8s.io", "leases", ["create", "get", "list", "update"])
EXPECTED_RBAC = {
    "none": {"ClusterRole": AGENT_CLUSTER,
             "Role": [("coordination.k8s.io", "leases", ["create", "get", "update"])]},
    "global": {"ClusterRole": AGENT_CLUSTER,
               "Role": [("coordination.k8s.io", "leases", ["create", "get", "list", "update"])]},
    "service": {"ClusterRole": AGENT_CLUSTER[:4] + [SERVICE_LEASES] + AGENT_CLUSTER[4:]},
    "controller": {"ClusterRole": [("", "events", ["create", "patch"]), ("", "services", ["list", "watch", "patch"])],
                   "Role": [("", "configmaps", ["list", "watch"]),
                            ("coordination.k8s.io", "leases", ["create", "get", "list", "update"])]},
}


def _rbac(objects: list[dict]) -> dict[str, list[tuple[str, str, list[str]]]]:
    found: dict[str, list[tuple[str, str, list[str]]]] = {}
    for obj in objects:
        if obj["kind"] in ("ClusterRole", "Role"):
            found[obj["kind"]] = [(r["apiGroups"][0], r["resources"][0], r["verbs"]) for r in obj["rules"]]
    return found


@pytest.mark.parametrize("election", ["none", "global", "service"])
def test_agent_leases_are_namespaced_unless_per_service_election_needs_every_namespace(election: str) -> None:
    objects = manifests(ManifestOptions(election=election, namespace="lb-system"))
    assert _rbac(objects) == EXPECTED_RBAC[election]
    role = [o for o in objects if o["kind"] in ("Role", "RoleBinding")]
    assert all(o["metadata"]["namespace"] == "lb-system" for o in role)
    if role:
        binding = next(o for o in role if o["kind"] == "RoleBinding")
        assert binding["roleRef"]["kind"] == "Role"
        assert binding["subjects"] == [{"kind": "ServiceAccount", "name": "kvip", "namespace": "lb-system"}]


def test_controller_reads_configmaps_and_writes_leases_only_in_its_namespace() -> None:
    assert _rbac(manifests(ManifestOptions(kind="controller"))) == EXPECTED_RBAC["controller"]


def test_a_bgp_password_never_lands_in_the_manifest_as_a_literal() -> None:
    with pytest.raises(PasswordInManifest):
        manifests(ManifestOptions(mode="bgp", bgp_peers="192.0.2.1:65001:s3cret"))
    text = to_yaml(manifests(ManifestOptions(mode="bgp", bgp_secret="kvip-bgp")))
    env = {e["name"]: e for o in yaml.safe_load_all(text) if o["kind"] == "DaemonSet"
           for e in o["spec"]["template"]["spec"]["containers"][0]["env"]}
    assert env["bgp_peers"] == {"name": "bgp_peers",
                                "valueFrom": {"secretKeyRef": {"name": "kvip-bgp", "key": "bgp_peers"}}}


def test_kvip_manifest_refuses_a_password_on_the_command_line(capsys: pytest.CaptureFixture[str]) -> None:
    import argparse

    from kvip.deploy.manifests import add_manifest_arguments, run_manifest

    parser = argparse.ArgumentParser()
    add_manifest_arguments(parser)
    assert run_manifest(parser.parse_args(["daemonset", "--bgp", "--bgp-peers", "192.0.2.1:65001:s3cret"])) == 2
    out = capsys.readouterr().out
    assert "s3cret" not in out and "--bgp-secret" in out
    assert run_manifest(parser.parse_args(["daemonset", "--bgp", "--bgp-secret", "kvip-bgp"])) == 0
    assert "secretKeyRef" in capsys.readouterr().out


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
    for role in (o for o in objects if o["kind"] in ("ClusterRole", "Role")):
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
        assert api.get("roles", "kvip", "kube-system")["rules"]
        assert {sa["metadata"]["name"] for sa in api.list("serviceaccounts", "kube-system")} == {"kvip",
                                                                                              "kvip-controller"}
    finally:
        await api.close()


def test_manifest_yaml_round_trips() -> None:
    text = to_yaml(manifests(ManifestOptions()))
    assert [o["kind"] for o in yaml.safe_load_all(text)] == ["ServiceAccount", "ClusterRole", "ClusterRoleBinding",
                                                             "Role", "RoleBinding", "DaemonSet"]


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


@pytest.mark.parametrize("options", [v for v in VARIANTS if v.kind != "controller"],
                         ids=lambda o: f"{o.kind}-{o.mode}-{o.election}")
def test_the_local_status_socket_is_on_a_writable_mount_in_every_mode(options: ManifestOptions) -> None:
    # The root filesystem is read-only: without a writable /run/kvip the agent cannot make the socket
    # `kvip status` reads (table and ARP mode too, not only BGP's speaker directory).
    objects = manifests(options)
    spec = next(o for o in objects if o["kind"] in ("DaemonSet", "Pod"))
    pod = spec["spec"]["template"]["spec"] if spec["kind"] == "DaemonSet" else spec["spec"]
    container = pod["containers"][0]
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    mounts = {m["mountPath"]: m["name"] for m in container.get("volumeMounts", [])}
    volumes = {v["name"]: v for v in pod.get("volumes", [])}
    assert "/run/kvip" in mounts and "emptyDir" in volumes[mounts["/run/kvip"]]
