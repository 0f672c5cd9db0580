"""The control-plane VIP's part of `kvip manifest` (issue #18): kube-vip's control-plane variables and the
static Pod that kubeadm-style control planes run from /etc/kubernetes/manifests.

A static Pod cannot use a ServiceAccount (the kubelet starts it before, and apart from, the API server), so
it reads the node's kubeconfig from a hostPath, as kube-vip's does; RBAC matters only for the DaemonSet forms.
"""

from __future__ import annotations

import argparse
import posixpath
from dataclasses import dataclass
from typing import Any

DEFAULT_KUBECONFIG = "/etc/kubernetes/admin.conf"  # kubeadm's admin kubeconfig, kube-vip's --k8sConfigPath default
SUPER_ADMIN_CONF = "super-admin.conf"  # kubeadm >= 1.29: the first node's bootstrap credential, beside admin.conf
DEFAULT_CP_LEASE = "plndr-cp-lock"  # kube-vip's vip_leasename default
DEFAULT_LEASE_TIMING = (15, 10, 2)  # kube-vip's and kvip's vip_leaseduration, vip_renewdeadline, vip_retryperiod


@dataclass(frozen=True)
class ControlPlaneOptions:
    address: str  # `address`: the VIP in front of the kube-apiservers, an IP or a DNS name
    port: int = 6443  # `port`: the kube-apiserver port behind the VIP
    election: bool = True  # vip_leaderelection: one holder; False: every healthy node advertises (table/BGP)
    lease_name: str = DEFAULT_CP_LEASE  # vip_leasename, in cp_namespace
    vip_subnet: str = ""  # vip_subnet ("" = the agent's default: /32 or /128)
    dns_mode: str = ""  # dns_mode for a DNS-name address: first, ipv4, ipv6 or dual ("" = the agent's default)
    kubeconfig: str = DEFAULT_KUBECONFIG  # static Pod: the host's kubeconfig, mounted at the same path
    super_admin: bool = False  # static Pod on kubeadm's first node: also mount super-admin.conf beside it
    in_cluster: bool = False  # kube-vip's --inCluster: a Pod on a ServiceAccount instead of a static Pod


def control_plane_env(cp: ControlPlaneOptions, *, static: bool) -> list[dict[str, Any]]:
    """kube-vip's names for the control-plane settings (cp_enable, address, port, vip_leasename, ...)."""
    env: list[dict[str, Any]] = [{"name": "cp_enable", "value": "true"}, {"name": "address", "value": cp.address},
                                 {"name": "port", "value": str(cp.port)}]
    if cp.vip_subnet:
        env.append({"name": "vip_subnet", "value": cp.vip_subnet})
    if cp.dns_mode:
        env.append({"name": "dns_mode", "value": cp.dns_mode})
    if cp.election:
        env.append({"name": "vip_leasename", "value": cp.lease_name})
    if static:
        env.append({"name": "k8s_config_file", "value": cp.kubeconfig})
    return env


def kubeconfig_volumes(cp: ControlPlaneOptions) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """(volumes, mounts): the host's kubeconfig read-only at the same path, and with `super_admin` kubeadm's
    super-admin.conf in the same directory — where the agent looks for it when admin.conf is refused (403)
    because the first node's RBAC does not exist yet (kube-vip #684).

    Each is one file of type File, never the directory: /etc/kubernetes also holds the cluster CA's key.
    super-admin.conf is only mounted when asked, because a File hostPath that is absent keeps the Pod from
    starting, and only kubeadm's first node has one."""
    files = [("kubeconfig", cp.kubeconfig)]
    if cp.super_admin:
        files.append(("super-admin", posixpath.join(posixpath.dirname(cp.kubeconfig), SUPER_ADMIN_CONF)))
    volumes = [{"name": name, "hostPath": {"path": path, "type": "File"}} for name, path in files]
    mounts = [{"name": name, "mountPath": path, "readOnly": True} for name, path in files]
    return volumes, mounts


def make_static(pod_spec: dict[str, Any], cp: ControlPlaneOptions) -> None:
    """Turn an agent Pod spec into a static Pod's: no ServiceAccount (a static Pod may not name one), the
    node's kubeconfig from the host instead."""
    pod_spec.pop("serviceAccountName")
    pod_spec["automountServiceAccountToken"] = False
    # As kube-vip's static Pod: `kubernetes` is this node's own API server, a name kubeadm's serving
    # certificate carries, for a kubeconfig that must not go through the VIP this Pod brings up.
    pod_spec["hostAliases"] = [{"ip": "127.0.0.1", "hostnames": ["kubernetes"]}]
    volumes, mounts = kubeconfig_volumes(cp)
    pod_spec["volumes"] += volumes
    pod_spec["containers"][0]["volumeMounts"] += mounts


# kube-vip's manifest flags for features kvip does not have: refused in one line, never dropped silently.
REFUSED_FLAGS = {
    "--enableLoadBalancer": "kube-vip's IPVS balancing across the API servers is not supported: the node holding "
                            "the VIP serves it (BGP without --leaderElection spreads it by ECMP)",
    "--ddns": "a DHCP-allocated VIP is not supported: give --address",
    "--autodetectcp": "not supported: kvip reaches the API server through the kubeconfig (--k8sConfigPath)",
}


def add_control_plane_arguments(group: argparse._ArgumentGroup) -> None:
    """kube-vip's spellings of the control-plane flags (cmd/kube-vip.go), and kvip's --super-admin."""
    group.add_argument("--controlplane", action="store_true",
                       help="the control-plane VIP (cp_enable): pod = static Pod, daemonset = hybrid on control planes")
    group.add_argument("--address", "--vip", default="", help="the control-plane VIP: an IP or a DNS name")
    group.add_argument("--port", type=int, default=6443, help="kube-apiserver port behind the VIP")
    group.add_argument("--leaseName", default=DEFAULT_CP_LEASE, help="the control-plane Lease (vip_leasename)")
    group.add_argument("--vipSubnet", default="", help="vip_subnet (unset: /32 or /128)")
    group.add_argument("--dnsMode", default="", choices=["", "first", "ipv4", "ipv6", "dual"],
                       help="dns_mode of a DNS-name --address")
    group.add_argument("--k8sConfigPath", default=DEFAULT_KUBECONFIG,
                       help="static Pod: the host's kubeconfig, mounted read-only at the same path")
    group.add_argument("--super-admin", action="store_true",
                       help="static Pod on kubeadm's first node: also mount super-admin.conf beside the kubeconfig")
    group.add_argument("--leaseDuration", type=int, default=None, help="vip_leaseduration (s)")
    group.add_argument("--leaseRenewDuration", type=int, default=None, help="vip_renewdeadline (s)")
    group.add_argument("--leaseRetry", type=int, default=None, help="vip_retryperiod (s)")
    for flag, why in REFUSED_FLAGS.items():
        group.add_argument(flag, dest="refused", action="append_const", const=flag, help=f"refused: {why}")


def control_plane_options(args: argparse.Namespace, *, elected: bool) -> ControlPlaneOptions | None:
    if not args.controlplane:
        return None
    return ControlPlaneOptions(address=args.address, port=args.port, election=elected, lease_name=args.leaseName,
                               vip_subnet=args.vipSubnet, dns_mode=args.dnsMode, kubeconfig=args.k8sConfigPath,
                               super_admin=args.super_admin, in_cluster=args.inCluster)


def lease_timing(args: argparse.Namespace) -> tuple[int, int, int] | None:
    """kube-vip's --leaseDuration/--leaseRenewDuration/--leaseRetry; None when none is given (the defaults)."""
    given = (args.leaseDuration, args.leaseRenewDuration, args.leaseRetry)
    if all(seconds is None for seconds in given):
        return None
    duration, renew, retry = (default if seconds is None else seconds
                              for seconds, default in zip(given, DEFAULT_LEASE_TIMING))
    return duration, renew, retry
