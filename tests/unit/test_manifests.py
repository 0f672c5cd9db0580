"""`kvip manifest`: every variant validates against the Kubernetes schemas (strict) and a real kubectl
applies it to the API stand-in; RBAC comes from the same rules the least-privilege e2e test enforces."""

from __future__ import annotations

import asyncio
import itertools
import shutil
from dataclasses import replace
from pathlib import Path

import kubernetes_validate
import pytest
import yaml

from kvip.deploy.control_plane import ControlPlaneOptions
from kvip.deploy.manifests import (
    ConflictingOptions,
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
VIP = "192.0.2.100"
CP = ControlPlaneOptions(address=VIP)
CONTROL_PLANE_VARIANTS = {  # kube-vip's forms: the static Pod of each control-plane node, and the hybrid DaemonSet
    "static-arp": ManifestOptions(kind="pod", mode="arp", services=False, control_plane=CP),
    "static-table-anycast": ManifestOptions(kind="pod", services=False, control_plane=ControlPlaneOptions(
        address="cp.example.com", election=False, dns_mode="ipv4", kubeconfig="/etc/rancher/rke2/rke2.yaml")),
    "static-bgp-first-node": ManifestOptions(kind="pod", mode="bgp", services=False, bgp_peers="192.0.2.1:65001",
                                             control_plane=ControlPlaneOptions(address=VIP, super_admin=True)),
    "in-cluster-pod": ManifestOptions(kind="pod", mode="arp", services=False,
                                      control_plane=ControlPlaneOptions(address=VIP, in_cluster=True)),
    "hybrid-arp": ManifestOptions(mode="arp", election="global", control_plane=CP),
    "hybrid-arp-per-service": ManifestOptions(mode="arp", election="service", control_plane=CP),
    "hybrid-bgp-anycast": ManifestOptions(mode="bgp", bgp_peers="192.0.2.1:65001",
                                          control_plane=ControlPlaneOptions(address=VIP, election=False)),
    "control-plane-daemonset": ManifestOptions(mode="arp", services=False, control_plane=CP),
    "on-demand": ManifestOptions(on_demand=True),
}
VARIANTS += list(CONTROL_PLANE_VARIANTS.values())

# The expected RBAC, written out by hand (not computed by kvip.deploy.rbac): (kind, apiGroup, resource, verbs).
AGENT_CLUSTER = [("", "events", ["create", "patch"]), ("", "nodes", ["list", "watch"]),
                 ("", "services", ["list", "patch", "watch"]), ("", "services/status", ["patch"]),
                 ("discovery.k8s.io", "endpointslices", ["list", "watch"])]
SERVICE_LEASES = ("coordination.k8s.io", "leases", ["create", "get", "list", "patch", "update", "watch"])
EXPECTED_RBAC = {
    "none": {"ClusterRole": AGENT_CLUSTER,
             "Role": [("coordination.k8s.io", "leases", ["create", "list", "patch", "watch"])]},
    "global": {"ClusterRole": AGENT_CLUSTER,
               "Role": [("coordination.k8s.io", "leases", ["create", "get", "list", "patch", "update", "watch"])]},
    "service": {"ClusterRole": AGENT_CLUSTER[:4] + [SERVICE_LEASES] + AGENT_CLUSTER[4:]},
    # per_service_election_on_demand: a Lease in any annotated Service's namespace
    "on-demand": {"ClusterRole": AGENT_CLUSTER[:4] + [SERVICE_LEASES] + AGENT_CLUSTER[4:]},
    # the control-plane VIP's Lease (vip_leasename) beside the heartbeat, in the agent's namespace
    "control-plane": {"ClusterRole": AGENT_CLUSTER,
                      "Role": [("coordination.k8s.io", "leases", ["create", "get", "list", "patch", "update", "watch"])]},
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


def _variant_id(options: ManifestOptions) -> str:
    named = [name for name, variant in CONTROL_PLANE_VARIANTS.items() if variant == options]
    return named[0] if named else f"{options.kind}-{options.mode}-{options.election}"


@pytest.mark.parametrize("options", VARIANTS, ids=_variant_id)
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


@pytest.mark.parametrize("options", [v for v in VARIANTS if v.kind != "controller"], ids=_variant_id)
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


# -- the control-plane VIP (issue #18) -----------------------------------------------------------------------


def _pod(objects: list[dict]) -> dict:
    workload = next(o for o in objects if o["kind"] in ("DaemonSet", "Pod"))
    return workload["spec"]["template"]["spec"] if workload["kind"] == "DaemonSet" else workload["spec"]


def _env(objects: list[dict]) -> dict[str, str]:
    return {e["name"]: e["value"] for e in _pod(objects)["containers"][0]["env"] if "value" in e}


def test_the_static_pod_reads_the_node_s_kubeconfig_and_has_no_service_account_or_rbac() -> None:
    objects = manifests(CONTROL_PLANE_VARIANTS["static-arp"])
    assert [o["kind"] for o in objects] == ["Pod"]  # a static Pod may not name a ServiceAccount: nothing to bind
    pod = _pod(objects)
    container = pod["containers"][0]
    assert "serviceAccountName" not in pod and pod["automountServiceAccountToken"] is False
    assert pod["hostNetwork"] is True and pod["dnsPolicy"] == "Default"
    assert container["securityContext"]["capabilities"] == {"drop": ["ALL"], "add": ["NET_ADMIN", "NET_RAW"]}
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    assert pod["volumes"] == [{"name": "run", "emptyDir": {"medium": "Memory"}},
                              {"name": "kubeconfig", "hostPath": {"path": "/etc/kubernetes/admin.conf", "type": "File"}}]
    assert container["volumeMounts"] == [{"name": "run", "mountPath": "/run/kvip"},
                                         {"name": "kubeconfig", "mountPath": "/etc/kubernetes/admin.conf",
                                          "readOnly": True}]
    assert _env(objects)["k8s_config_file"] == "/etc/kubernetes/admin.conf"
    assert pod["hostAliases"] == [{"ip": "127.0.0.1", "hostnames": ["kubernetes"]}]  # this node's API server


def test_the_first_kubeadm_node_also_gets_super_admin_conf_beside_the_kubeconfig_never_the_directory() -> None:
    pod = _pod(manifests(CONTROL_PLANE_VARIANTS["static-bgp-first-node"]))
    host_paths = [v["hostPath"] for v in pod["volumes"] if "hostPath" in v]
    assert host_paths == [{"path": "/etc/kubernetes/admin.conf", "type": "File"},
                          {"path": "/etc/kubernetes/super-admin.conf", "type": "File"}]
    mounts = {m["mountPath"] for m in pod["containers"][0]["volumeMounts"]}
    assert "/etc/kubernetes/super-admin.conf" in mounts and "/etc/kubernetes" not in mounts


def test_the_static_pod_env_is_kube_vip_s_control_plane_variables() -> None:
    env = _env(manifests(CONTROL_PLANE_VARIANTS["static-arp"]))
    assert {k: env[k] for k in ("cp_enable", "address", "port", "vip_leaderelection", "vip_leasename", "vip_arp",
                                "svc_enable")} == {"cp_enable": "true", "address": VIP, "port": "6443",
                                                   "vip_leaderelection": "true", "vip_leasename": "plndr-cp-lock",
                                                   "vip_arp": "true", "svc_enable": "false"}
    anycast = _env(manifests(CONTROL_PLANE_VARIANTS["static-table-anycast"]))
    assert "vip_leaderelection" not in anycast and "vip_leasename" not in anycast
    assert (anycast["address"], anycast["dns_mode"], anycast["k8s_config_file"]) == (
        "cp.example.com", "ipv4", "/etc/rancher/rke2/rke2.yaml")


@pytest.mark.parametrize("name", [n for n, o in CONTROL_PLANE_VARIANTS.items() if o.control_plane is not None])
def test_the_emitted_env_loads_as_a_control_plane_agent_config(name: str) -> None:
    from kvip.config.agent import load_config

    options = CONTROL_PLANE_VARIANTS[name]
    assert options.control_plane is not None
    config = load_config({**_env(manifests(options)), "vip_nodename": "cp-1", "cp_namespace": "kube-system"})
    assert config.cp_enable is True and config.svc_enable is options.services
    assert (config.cp_address, config.cp_port, config.cp_lease_name) == (options.control_plane.address, 6443,
                                                                         "plndr-cp-lock")
    assert config.cp_election is options.control_plane.election
    assert config.kubeconfig == (None if "serviceAccountName" in _pod(manifests(options))
                                 else options.control_plane.kubeconfig)
    assert config.notices == ()  # every variable the manifest writes is one kvip reads as kube-vip does


def test_the_hybrid_daemonset_serves_both_on_control_plane_nodes_with_the_control_plane_lease() -> None:
    objects = manifests(CONTROL_PLANE_VARIANTS["hybrid-arp-per-service"])
    pod = _pod(objects)
    env = _env(objects)
    assert (env["cp_enable"], env["svc_enable"], env["svc_election"], env["vip_leaderelection"]) == (
        "true", "true", "true", "true")
    terms = pod["affinity"]["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]["nodeSelectorTerms"]
    assert [t["matchExpressions"][0]["key"] for t in terms] == ["node-role.kubernetes.io/control-plane",
                                                                "node-role.kubernetes.io/master"]
    assert {"effect": "NoSchedule", "operator": "Exists"} in pod["tolerations"]
    assert pod["serviceAccountName"] == "kvip" and "hostPath" not in str(pod["volumes"])


@pytest.mark.parametrize("name,expected", [("on-demand", "on-demand"), ("control-plane-daemonset", "control-plane"),
                                           ("hybrid-arp", "global"), ("hybrid-arp-per-service", "service"),
                                           ("hybrid-bgp-anycast", "none"), ("in-cluster-pod", "control-plane")])
def test_control_plane_and_on_demand_leases_get_exactly_their_rbac(name: str, expected: str) -> None:
    assert _rbac(manifests(CONTROL_PLANE_VARIANTS[name])) == EXPECTED_RBAC[expected]


@pytest.mark.parametrize("options,why", [
    (ManifestOptions(kind="pod", services=False, control_plane=ControlPlaneOptions(address="")), "needs an address"),
    (ManifestOptions(mode="arp", election="global", control_plane=ControlPlaneOptions(address=VIP, election=False)),
     "ARP mode needs leader election"),
    (ManifestOptions(election="none", control_plane=CP), "vip_leaderelection elects the control plane and"),
    (ManifestOptions(election="global", control_plane=ControlPlaneOptions(address=VIP, election=False)),
     "vip_leaderelection elects the control plane and"),
    (ManifestOptions(services=False), "nothing to run"),
    (ManifestOptions(services=False, election="service", control_plane=CP), "without Services"),
])
def test_choices_kube_vip_cannot_express_are_refused_naming_why(options: ManifestOptions, why: str) -> None:
    with pytest.raises(ConflictingOptions, match=why):
        manifests(options)


def _cli(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    import argparse

    from kvip.deploy.manifests import add_manifest_arguments, run_manifest

    parser = argparse.ArgumentParser()
    add_manifest_arguments(parser)
    code = run_manifest(parser.parse_args(argv))
    return code, capsys.readouterr().out


def test_kube_vip_s_static_pod_command_line_works_unchanged(capsys: pytest.CaptureFixture[str]) -> None:
    code, out = _cli(["pod", "--interface", "eth0", "--address", VIP, "--controlplane", "--arp", "--leaderElection",
                      "--taint"], capsys)
    assert code == 0, out
    objects = list(yaml.safe_load_all(out))
    assert objects == manifests(ManifestOptions(kind="pod", mode="arp", interface="eth0", services=False,
                                                control_plane=CP))
    assert "affinity" not in _pod(objects)  # the kubelet would check it before kubeadm labels the first node


def test_kube_vip_s_hybrid_daemonset_command_line_works_unchanged(capsys: pytest.CaptureFixture[str]) -> None:
    code, out = _cli(["daemonset", "--interface", "eth0", "--vip", VIP, "--controlplane", "--services", "--arp",
                      "--leaderElection", "--inCluster", "--taint", "--leaseDuration", "3", "--leaseRenewDuration",
                      "2", "--leaseRetry", "1", "--k8sConfigPath", "/etc/kubernetes/super-admin.conf"], capsys)
    assert code == 0, out
    objects = list(yaml.safe_load_all(out))
    assert objects == manifests(ManifestOptions(mode="arp", interface="eth0", election="global",
                                                lease_timing=(3, 2, 1), control_plane=CP))
    assert (_env(objects)["vip_leaseduration"], _env(objects)["vip_renewdeadline"],
            _env(objects)["vip_retryperiod"]) == ("3", "2", "1")


@pytest.mark.parametrize("argv,why", [
    (["pod", "--controlplane", "--arp"], "needs an address"),
    (["daemonset", "--address", VIP], "add --controlplane"),
    (["pod", "--controlplane", "--address", VIP, "--enableLoadBalancer"], "--enableLoadBalancer: kube-vip's IPVS"),
    (["pod", "--controlplane", "--ddns"], "--ddns"),
    (["pod", "--controlplane", "--address", VIP, "--autodetectcp"], "--autodetectcp"),
    (["controller", "--controlplane", "--address", VIP], "pod and daemonset"),
    (["pod", "--controlplane", "--address", VIP, "--servicesElection"], "needs --services"),
])
def test_control_plane_flags_kvip_cannot_honour_are_refused_in_one_line(
        argv: list[str], why: str, capsys: pytest.CaptureFixture[str]) -> None:
    code, out = _cli(argv, capsys)
    assert code == 2 and out.count("\n") == 1 and why in out, out


async def test_kubectl_applies_the_control_plane_manifests_to_the_stand_in(tmp_path: Path) -> None:
    kubectl = shutil.which("kubectl")
    assert kubectl, "kubectl is required (.ci/setup installs it)"
    api = StandIn()
    await api.start()
    api.create(namespace("kube-system"))
    api.create(namespace("cp-system"))
    try:
        config = api.write_kubeconfig(tmp_path / "kubeconfig")
        for name, options in (("static", replace(CONTROL_PLANE_VARIANTS["static-bgp-first-node"], namespace="cp-system")),
                              ("hybrid", CONTROL_PLANE_VARIANTS["hybrid-arp-per-service"])):
            path = tmp_path / f"{name}.yaml"
            path.write_text(to_yaml(manifests(options)))
            proc = await asyncio.create_subprocess_exec(
                kubectl, "--kubeconfig", str(config), "apply", "--validate=false", "-f", str(path),
                stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT)
            out, _ = await asyncio.wait_for(proc.communicate(), 60)
            assert proc.returncode == 0, out.decode()
        static = api.get("pods", "kvip", "cp-system")["spec"]
        assert static["volumes"][1]["hostPath"] == {"path": "/etc/kubernetes/admin.conf", "type": "File"}
        hybrid = api.get("daemonsets", "kvip", "kube-system")["spec"]["template"]["spec"]
        assert {e["name"]: e.get("value") for e in hybrid["containers"][0]["env"]}["cp_enable"] == "true"
        assert "leases" in str(api.get("clusterroles", "kvip")["rules"])
        assert api.list("serviceaccounts", "cp-system") == []  # the static Pod brings no ServiceAccount
    finally:
        await api.close()
