"""`kvip manifest daemonset|pod|controller`: ready-to-apply objects, built from `kvip.deploy.rbac`.

`--controlplane` adds the control-plane VIP: `pod` becomes the static Pod of each control-plane node
(`kvip.deploy.control_plane`), `daemonset` the hybrid form (control plane and Services in one agent on the
control-plane nodes).

Pure functions returning plain dicts (then YAML), so tests validate them against the Kubernetes
schemas and apply them to the API stand-in with kubectl.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from typing import Any

import yaml

from kvip.config.bgp import parse_peer
from kvip.deploy.control_plane import (
    REFUSED_FLAGS,
    ControlPlaneOptions,
    add_control_plane_arguments,
    control_plane_env,
    control_plane_options,
    lease_timing,
    make_static,
)
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
    services: bool = True  # svc_enable (False: a control-plane-only agent)
    on_demand: bool = False  # per_service_election_on_demand: Leases in any Service's namespace
    lease_timing: tuple[int, int, int] | None = None  # vip_leaseduration, vip_renewdeadline, vip_retryperiod
    control_plane: ControlPlaneOptions | None = None  # cp_enable: the control-plane VIP


class PasswordInManifest(ValueError):
    """A BGP password would be written into the manifest as a literal env value."""


class ConflictingOptions(ValueError):
    """The choices cannot be written as one kube-vip configuration; the message says which and why."""


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


def is_static_pod(options: ManifestOptions) -> bool:
    """kube-vip's `manifest pod --controlplane` without --inCluster: the kubelet runs it from a file."""
    return options.kind == "pod" and options.control_plane is not None and not options.control_plane.in_cluster


def check_options(options: ManifestOptions) -> None:
    """Refuse what cannot be one coherent configuration, naming the choice (`ConflictingOptions`)."""
    cp = options.control_plane
    if not options.services and (options.election != "none" or options.on_demand):
        raise ConflictingOptions("a Service election without Services (svc_enable=false)")
    if cp is None:
        if not options.services:
            raise ConflictingOptions("nothing to run: neither Services (svc_enable) nor the control plane (cp_enable)")
        return
    if not cp.address:
        raise ConflictingOptions("the control-plane VIP needs an address (--address or --vip)")
    if options.mode == "arp" and not cp.election:
        raise ConflictingOptions("ARP mode needs leader election for the control-plane VIP: one node holds it")
    if options.services and options.election != "service" and cp.election != (options.election == "global"):
        # kube-vip has one switch, vip_leaderelection, for the control plane's Lease and the Services' global one.
        raise ConflictingOptions("vip_leaderelection elects the control plane and the Services' global Lease together: "
                                 "choose both, neither, or per-service election for the Services")


def _global_election(options: ManifestOptions) -> bool:
    cp = options.control_plane
    return options.election == "global" or (cp is not None and cp.election)


def agent_env(options: ManifestOptions) -> list[dict[str, Any]]:
    env: list[dict[str, Any]] = [
        {"name": "vip_nodename", "valueFrom": {"fieldRef": {"fieldPath": "spec.nodeName"}}},
        {"name": "cp_namespace", "valueFrom": {"fieldRef": {"fieldPath": "metadata.namespace"}}},
        {"name": "svc_enable", "value": "true" if options.services else "false"},
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
    if _global_election(options):
        env.append({"name": "vip_leaderelection", "value": "true"})
    if options.election == "service":
        env.append({"name": "svc_election", "value": "true"})
    if options.on_demand:
        env.append({"name": "per_service_election_on_demand", "value": "true"})
    if options.lease_timing is not None:
        env += [{"name": name, "value": str(seconds)} for name, seconds in
                zip(("vip_leaseduration", "vip_renewdeadline", "vip_retryperiod"), options.lease_timing)]
    if options.control_plane is not None:
        env += control_plane_env(options.control_plane, static=is_static_pod(options))
    return env


def rules_for(options: ManifestOptions) -> tuple[Rule, ...]:
    cp = options.control_plane
    return agent_rules(election=options.election if options.services else "none",
                       control_plane=cp is not None and cp.election, on_demand=options.on_demand)


CONTROL_PLANE_AFFINITY = {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [
    {"matchExpressions": [{"key": "node-role.kubernetes.io/control-plane", "operator": "Exists"}]},
    {"matchExpressions": [{"key": "node-role.kubernetes.io/master", "operator": "Exists"}]}]}}}


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
    check_options(options)
    container = _container(options, ["agent"], agent_env(options), net_admin=True)
    # Added capabilities only reach root processes in Kubernetes; everything else stays dropped.
    container["securityContext"].update({"runAsUser": 0, "runAsNonRoot": False})
    pod_spec = _pod_spec(options, container, host_network=True)
    # A writable /run/kvip in every mode (the root filesystem is read-only): the local status socket of
    # `kvip status`, and in BGP mode the speaker's config and control socket.
    container["volumeMounts"] = [{"name": "run", "mountPath": "/run/kvip"}]
    pod_spec["volumes"] = [{"name": "run", "emptyDir": {"medium": "Memory"}}]
    if options.control_plane is not None:
        # The node's resolver, not the cluster DNS: resolving a DNS-name VIP must not depend on CoreDNS,
        # which itself needs the API server this VIP fronts (and does not exist yet on a first node).
        pod_spec["dnsPolicy"] = "Default"
    if options.control_plane is not None and is_static_pod(options):
        make_static(pod_spec, options.control_plane)
        return [{"apiVersion": "v1", "kind": "Pod", "metadata": _meta("kvip", ns), "spec": pod_spec}]
    rbac = rbac_objects("kvip", ns, rules_for(options))
    if options.kind == "pod":
        return rbac + [{"apiVersion": "v1", "kind": "Pod", "metadata": _meta("kvip", ns), "spec": pod_spec}]
    if options.control_plane is not None:  # the hybrid DaemonSet: on control-plane nodes only
        pod_spec["affinity"] = CONTROL_PLANE_AFFINITY
    daemonset = {"apiVersion": "apps/v1", "kind": "DaemonSet", "metadata": _meta("kvip", ns),
                 "spec": {"selector": {"matchLabels": {"app.kubernetes.io/name": "kvip"}},
                          "updateStrategy": {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 1}},
                          "template": {"metadata": {"labels": {"app.kubernetes.io/name": "kvip"}}, "spec": pod_spec}}}
    return rbac + [daemonset]


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
    parser.add_argument("--per-service-election-on-demand", "--perServiceElectionOnDemand", action="store_true",
                        help="a Lease per Service annotated kube-vip.io/forcePerServiceElection (any namespace)")
    kube_vip = parser.add_argument_group("kube-vip's flags")
    kube_vip.add_argument("--services", action="store_true",
                          help="Services (svc_enable); implied without --controlplane: kvip is the Service load balancer")
    kube_vip.add_argument("--inCluster", action="store_true",
                          help="with pod --controlplane: a Pod on a ServiceAccount instead of a static Pod")
    kube_vip.add_argument("--taint", action="store_true",
                          help="run on control-plane nodes only (node-role.kubernetes.io/control-plane)")
    add_control_plane_arguments(kube_vip)


def _refused(args: argparse.Namespace) -> str | None:
    for flag in args.refused or ():
        return f"kvip manifest: {flag}: {REFUSED_FLAGS[flag]}"
    if args.address and not args.controlplane:
        return ("kvip manifest: --address is the control-plane VIP: add --controlplane "
                "(Service VIPs come from each Service)")
    if args.controlplane and args.kind == "controller":
        return "kvip manifest: --controlplane applies to pod and daemonset, not controller"
    if args.table and (args.arp or args.bgp):
        return "kvip manifest: --table excludes --arp and --bgp: choose one mode"
    return None


def _options(args: argparse.Namespace) -> ManifestOptions:
    services = args.services or not args.controlplane
    # kube-vip's ARP mode without an election flag elects one node on one global Lease: for every Service,
    # and for the control-plane VIP (vip_leaderelection is one switch for both).
    elected = args.leader_election or args.arp
    election = "service" if args.svc_election else "global" if elected else "none"
    cp = control_plane_options(args, elected=elected)
    return ManifestOptions(kind=args.kind, namespace=args.namespace, image=args.image,
                           mode="arp" if args.arp else "bgp" if args.bgp else "table", interface=args.interface,
                           election=election if services else "none", routing_table_id=args.routing_table_id,
                           bgp_as=args.bgp_as, bgp_peers=args.bgp_peers, bgp_secret=args.bgp_secret,
                           services=services, on_demand=args.per_service_election_on_demand,
                           lease_timing=lease_timing(args), control_plane=cp)


def run_manifest(args: argparse.Namespace) -> int:
    refused = _refused(args)
    if refused:
        print(refused, flush=True)
        return 2
    if args.bgp and (args.arp or not (args.bgp_peers or args.bgp_secret)):
        print("kvip manifest: --bgp needs --bgp-peers or --bgp-secret and excludes --arp", flush=True)
        return 2
    if args.bgp_peers and args.bgp_secret:
        print("kvip manifest: --bgp-peers and --bgp-secret exclude each other", flush=True)
        return 2
    if args.svc_election and args.controlplane and not args.services:
        print("kvip manifest: --servicesElection needs --services beside --controlplane", flush=True)
        return 2
    try:
        objects = manifests(_options(args))
    except PasswordInManifest:
        print("kvip manifest: --bgp-peers holds a password; create a Secret instead and pass --bgp-secret:\n"
              f"  kubectl -n {args.namespace} create secret generic kvip-bgp --from-literal={SECRET_PEERS_KEY}='...'",
              flush=True)
        return 2
    except ConflictingOptions as why:
        print(f"kvip manifest: {why}", flush=True)
        return 2
    if args.taint and args.kind != "controller":  # kube-vip's --taint: control-plane nodes only
        for obj in objects:
            if obj["kind"] == "DaemonSet" or (obj["kind"] == "Pod" and "serviceAccountName" in obj["spec"]):
                # (not a static Pod: the kubelet would check the affinity before kubeadm labels the node)
                spec = obj["spec"]["template"]["spec"] if obj["kind"] == "DaemonSet" else obj["spec"]
                spec["affinity"] = CONTROL_PLANE_AFFINITY
    print(to_yaml(objects), end="")
    return 0
