"""`kvip manifest daemonset|pod|controller`: ready-to-apply objects, built from `kvip.deploy.rbac`.

Pure functions returning plain dicts (then YAML), so tests validate them against the Kubernetes
schemas and apply them to the API stand-in with kubectl.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from typing import Any

import yaml

from kvip.config.bgp import parse_peer
from kvip.deploy.rbac import (
    Rule,
    agent_rules,
    cluster_rules,
    controller_rules,
    namespace_rules,
)

DEFAULT_IMAGE = "ghcr.io/kvip/kvip:0.1.0"
METRICS_PORT = 2112
BGP_RUN_DIR = "/run/kvip/bgp"  # the speaker's config and control socket (the root filesystem is read-only)


@dataclass(frozen=True)
class ManifestOptions:
    kind: str = "daemonset"  # daemonset | pod | controller
    namespace: str = "kube-system"
    image: str = DEFAULT_IMAGE
    mode: str = "table"  # table | arp | bgp
    interface: str = ""
    election: str = "none"  # none | global | service
    routing_table_id: int = 198
    bgp_as: int = 65000
    bgp_peers: str = ""  # kube-vip's bgp_peers: "addr:as[:password[:multihop]],..." — without passwords
    bgp_secret: str = ""  # a Secret whose key `bgp_peers` holds the peers with their passwords


class PasswordInManifest(ValueError):
    """A BGP password would be written into the manifest as a literal env value."""


SECRET_PEERS_KEY = "bgp_peers"


def peers_have_passwords(peers: str) -> bool:
    """True when any kube-vip peer entry carries a password (anything unparsable counts as one: be safe)."""
    for entry in (e for e in peers.split(",") if e.strip()):
        try:
            if parse_peer(entry).password:
                return True
        except ValueError:
            return True
    return False


def _meta(name: str, namespace: str | None = None) -> dict[str, Any]:
    meta: dict[str, Any] = {"name": name, "labels": {"app.kubernetes.io/name": name, "app.kubernetes.io/part-of": "kvip"}}
    if namespace:
        meta["namespace"] = namespace
    return meta


def rbac_objects(name: str, namespace: str, rules: tuple[Rule, ...]) -> list[dict[str, Any]]:
    """The ServiceAccount, a ClusterRole for the cluster-wide rules and a Role (in `namespace`) for the rest."""
    rbac = "rbac.authorization.k8s.io"
    subjects = [{"kind": "ServiceAccount", "name": name, "namespace": namespace}]
    objects: list[dict[str, Any]] = [{"apiVersion": "v1", "kind": "ServiceAccount", "metadata": _meta(name, namespace)}]
    for kind, scoped, where in (("ClusterRole", cluster_rules(rules), None), ("Role", namespace_rules(rules), namespace)):
        if not scoped:
            continue
        objects += [
            {"apiVersion": f"{rbac}/v1", "kind": kind, "metadata": _meta(name, where),
             "rules": [r.to_k8s() for r in scoped]},
            {"apiVersion": f"{rbac}/v1", "kind": f"{kind}Binding", "metadata": _meta(name, where),
             "roleRef": {"apiGroup": rbac, "kind": kind, "name": name}, "subjects": subjects},
        ]
    return objects


def _bgp_peers_env(options: ManifestOptions) -> dict[str, Any]:
    """bgp_peers as a literal only when it holds no password; otherwise from the Secret, never inline."""
    if options.bgp_secret:
        return {"name": "bgp_peers", "valueFrom": {"secretKeyRef": {"name": options.bgp_secret,
                                                                   "key": SECRET_PEERS_KEY}}}
    if peers_have_passwords(options.bgp_peers):
        raise PasswordInManifest("bgp_peers holds a BGP password: put the peers in a Secret (key "
                                 f"{SECRET_PEERS_KEY!r}) and name it instead of writing the password into the manifest")
    return {"name": "bgp_peers", "value": options.bgp_peers}


def agent_env(options: ManifestOptions) -> list[dict[str, Any]]:
    env: list[dict[str, Any]] = [
        {"name": "vip_nodename", "valueFrom": {"fieldRef": {"fieldPath": "spec.nodeName"}}},
        {"name": "cp_namespace", "valueFrom": {"fieldRef": {"fieldPath": "metadata.namespace"}}},
        {"name": "svc_enable", "value": "true"},
        {"name": "prometheus_server", "value": f":{METRICS_PORT}"},
    ]
    if options.mode == "arp":
        env.append({"name": "vip_arp", "value": "true"})
    elif options.mode == "bgp":
        env += [{"name": "bgp_enable", "value": "true"}, {"name": "bgp_as", "value": str(options.bgp_as)},
                _bgp_peers_env(options),
                {"name": "kvip_bgp_rundir", "value": BGP_RUN_DIR}]
    else:
        env += [{"name": "vip_routingtable", "value": "true"},
                {"name": "routing_table_id", "value": str(options.routing_table_id)}]
    if options.interface:
        env.append({"name": "vip_interface", "value": options.interface})
    if options.election == "global":
        env.append({"name": "vip_leaderelection", "value": "true"})
    elif options.election == "service":
        env.append({"name": "svc_election", "value": "true"})
    return env


def _container(options: ManifestOptions, args: list[str], env: list[dict[str, Any]], *, net_admin: bool
               ) -> dict[str, Any]:
    probe = {"httpGet": {"path": "/healthz", "port": "metrics"}, "periodSeconds": 10, "failureThreshold": 3}
    caps = ["NET_ADMIN", "NET_RAW"] if net_admin else []
    return {
        "name": "kvip", "image": options.image, "imagePullPolicy": "IfNotPresent", "args": args, "env": env,
        "ports": [{"name": "metrics", "containerPort": METRICS_PORT, "protocol": "TCP"}],
        "livenessProbe": probe,
        "readinessProbe": {**probe, "httpGet": {"path": "/readyz", "port": "metrics"}},
        "resources": {"requests": {"cpu": "50m", "memory": "64Mi"}, "limits": {"memory": "512Mi"}},
        "securityContext": {"capabilities": {"drop": ["ALL"], "add": caps}, "readOnlyRootFilesystem": True,
                            "allowPrivilegeEscalation": False},
    }


def _pod_spec(options: ManifestOptions, container: dict[str, Any], *, host_network: bool) -> dict[str, Any]:
    spec: dict[str, Any] = {"serviceAccountName": "kvip" if options.kind != "controller" else "kvip-controller",
                            "containers": [container]}
    if host_network:
        spec.update({"hostNetwork": True, "dnsPolicy": "ClusterFirstWithHostNet",
                     "priorityClassName": "system-node-critical",
                     "tolerations": [{"effect": "NoSchedule", "operator": "Exists"},
                                     {"effect": "NoExecute", "operator": "Exists"}]})
    return spec


def manifests(options: ManifestOptions) -> list[dict[str, Any]]:
    ns = options.namespace
    if options.kind == "controller":
        container = _container(options, ["controller"], [
            {"name": "cp_namespace", "valueFrom": {"fieldRef": {"fieldPath": "metadata.namespace"}}},
            {"name": "POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}}], net_admin=False)
        container.pop("livenessProbe")
        container.pop("readinessProbe")
        container["securityContext"]["runAsNonRoot"] = True
        container["securityContext"]["runAsUser"] = 65532
        deployment = {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": _meta("kvip-controller", ns),
                      "spec": {"replicas": 2, "selector": {"matchLabels": {"app.kubernetes.io/name": "kvip-controller"}},
                               "template": {"metadata": {"labels": {"app.kubernetes.io/name": "kvip-controller"}},
                                            "spec": _pod_spec(options, container, host_network=False)}}}
        return rbac_objects("kvip-controller", ns, controller_rules()) + [deployment]
    container = _container(options, ["agent"], agent_env(options), net_admin=True)
    # Added capabilities only reach root processes in Kubernetes; everything else stays dropped.
    container["securityContext"].update({"runAsUser": 0, "runAsNonRoot": False})
    rules = agent_rules(election=options.election)
    pod_spec = _pod_spec(options, container, host_network=True)
    # A writable /run/kvip in every mode (the root filesystem is read-only): the local status socket of
    # `kvip status`, and in BGP mode the speaker's config and control socket.
    container["volumeMounts"] = [{"name": "run", "mountPath": "/run/kvip"}]
    pod_spec["volumes"] = [{"name": "run", "emptyDir": {"medium": "Memory"}}]
    if options.kind == "pod":
        pod = {"apiVersion": "v1", "kind": "Pod", "metadata": _meta("kvip", ns), "spec": pod_spec}
        return rbac_objects("kvip", ns, rules) + [pod]
    daemonset = {"apiVersion": "apps/v1", "kind": "DaemonSet", "metadata": _meta("kvip", ns),
                 "spec": {"selector": {"matchLabels": {"app.kubernetes.io/name": "kvip"}},
                          "updateStrategy": {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 1}},
                          "template": {"metadata": {"labels": {"app.kubernetes.io/name": "kvip"}}, "spec": pod_spec}}}
    return rbac_objects("kvip", ns, rules) + [daemonset]


def to_yaml(objects: list[dict[str, Any]]) -> str:
    return yaml.safe_dump_all(objects, sort_keys=False)


def add_manifest_arguments(parser: argparse.ArgumentParser) -> None:
    """kvip's flags, and kube-vip's spellings of the same (`kube-vip manifest daemonset --interface eth0
    --services --arp --leaderElection --inCluster --taint` works unchanged)."""
    parser.add_argument("kind", choices=["daemonset", "pod", "controller"])
    parser.add_argument("--namespace", "-n", default="kube-system")
    parser.add_argument("--image", default=DEFAULT_IMAGE)
    parser.add_argument("--arp", action="store_true",
                        help="layer-2 mode (without an election flag: one global Lease, as kube-vip)")
    parser.add_argument("--interface", default="")
    parser.add_argument("--leader-election", "--leaderElection", action="store_true",
                        help="one global Lease (kube-vip's vip_leaderelection)")
    parser.add_argument("--svc-election", "--servicesElection", action="store_true",
                        help="one Lease per service (kube-vip's svc_election)")
    parser.add_argument("--routing-table-id", "--tableID", type=int, default=198)
    parser.add_argument("--table", action="store_true", help="routing-table mode (kvip's default)")
    parser.add_argument("--bgp", action="store_true", help="BGP mode (kube-vip's bgp_enable)")
    parser.add_argument("--bgp-as", "--localAS", type=int, default=65000, help="this cluster's AS (bgp_as)")
    parser.add_argument("--bgp-peers", "--bgppeers", default="",
                        help="kube-vip's bgp_peers without passwords: addr:as[::multihop],...")
    parser.add_argument("--bgp-secret", default="",
                        help=f"Secret whose key {SECRET_PEERS_KEY!r} holds bgp_peers with passwords (never inline)")
    kube_vip = parser.add_argument_group("kube-vip's flags that kvip's manifests imply or refuse")
    kube_vip.add_argument("--services", action="store_true", help="accepted: kvip is the Service load balancer")
    kube_vip.add_argument("--inCluster", action="store_true",
                          help="accepted: kvip's manifests always use their own ServiceAccount in-cluster")
    kube_vip.add_argument("--taint", action="store_true",
                          help="run on control-plane nodes only (node-role.kubernetes.io/control-plane)")
    kube_vip.add_argument("--controlplane", action="store_true", help="refused: control-plane VIP not yet supported")
    kube_vip.add_argument("--address", "--vip", default="", help="refused: the control-plane VIP's address")


CONTROL_PLANE_AFFINITY = {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [
    {"matchExpressions": [{"key": "node-role.kubernetes.io/control-plane", "operator": "Exists"}]},
    {"matchExpressions": [{"key": "node-role.kubernetes.io/master", "operator": "Exists"}]}]}}}


def _refused(args: argparse.Namespace) -> str | None:
    if args.controlplane or args.address:
        flag = "--controlplane" if args.controlplane else "--address"
        return f"kvip manifest: {flag}: the control-plane VIP is not yet supported by kvip (issue #18)"
    if args.table and (args.arp or args.bgp):
        return "kvip manifest: --table excludes --arp and --bgp: choose one mode"
    return None


def run_manifest(args: argparse.Namespace) -> int:
    refused = _refused(args)
    if refused:
        print(refused, flush=True)
        return 2
    # kube-vip's ARP mode without an election flag elects one node for every Service on one global Lease.
    election = "service" if args.svc_election else "global" if args.leader_election or args.arp else "none"
    if args.bgp and (args.arp or not (args.bgp_peers or args.bgp_secret)):
        print("kvip manifest: --bgp needs --bgp-peers or --bgp-secret and excludes --arp", flush=True)
        return 2
    if args.bgp_peers and args.bgp_secret:
        print("kvip manifest: --bgp-peers and --bgp-secret exclude each other", flush=True)
        return 2
    mode = "arp" if args.arp else "bgp" if args.bgp else "table"
    options = ManifestOptions(kind=args.kind, namespace=args.namespace, image=args.image, mode=mode,
                              interface=args.interface, election=election, routing_table_id=args.routing_table_id,
                              bgp_as=args.bgp_as, bgp_peers=args.bgp_peers, bgp_secret=args.bgp_secret)
    try:
        objects = manifests(options)
    except PasswordInManifest:
        print("kvip manifest: --bgp-peers holds a password; create a Secret instead and pass --bgp-secret:\n"
              f"  kubectl -n {args.namespace} create secret generic kvip-bgp --from-literal={SECRET_PEERS_KEY}='...'",
              flush=True)
        return 2
    if args.taint and args.kind != "controller":  # kube-vip's --taint: control-plane nodes only
        for obj in objects:
            if obj["kind"] in ("DaemonSet", "Pod"):
                spec = obj["spec"]["template"]["spec"] if obj["kind"] == "DaemonSet" else obj["spec"]
                spec["affinity"] = CONTROL_PLANE_AFFINITY
    print(to_yaml(objects), end="")
    return 0
