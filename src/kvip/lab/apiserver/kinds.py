"""The resource kinds the stand-in serves, and the discovery documents that describe them."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Kind:
    plural: str
    kind: str
    group: str
    version: str
    namespaced: bool
    short_names: tuple[str, ...] = ()
    subresources: tuple[str, ...] = ()

    @property
    def api_version(self) -> str:
        return f"{self.group}/{self.version}" if self.group else self.version

    @property
    def group_resource(self) -> str:
        """`services` or `leases.coordination.k8s.io`, as the real server names it in messages."""
        return f"{self.plural}.{self.group}" if self.group else self.plural


VERBS = ["create", "delete", "get", "list", "patch", "update", "watch"]

KINDS: tuple[Kind, ...] = (
    Kind("services", "Service", "", "v1", True, ("svc",), ("status",)),
    Kind("nodes", "Node", "", "v1", False, ("no",), ("status",)),
    Kind("endpoints", "Endpoints", "", "v1", True, ("ep",)),
    Kind("events", "Event", "", "v1", True, ("ev",)),
    Kind("configmaps", "ConfigMap", "", "v1", True, ("cm",)),
    Kind("pods", "Pod", "", "v1", True, ("po",), ("status",)),
    Kind("namespaces", "Namespace", "", "v1", False, ("ns",), ("status",)),
    Kind("endpointslices", "EndpointSlice", "discovery.k8s.io", "v1", True),
    Kind("leases", "Lease", "coordination.k8s.io", "v1", True),
    # Stored, not interpreted: enough for `kubectl apply -f` of kvip's own manifests.
    Kind("serviceaccounts", "ServiceAccount", "", "v1", True, ("sa",)),
    Kind("clusterroles", "ClusterRole", "rbac.authorization.k8s.io", "v1", False),
    Kind("clusterrolebindings", "ClusterRoleBinding", "rbac.authorization.k8s.io", "v1", False),
    Kind("roles", "Role", "rbac.authorization.k8s.io", "v1", True),
    Kind("rolebindings", "RoleBinding", "rbac.authorization.k8s.io", "v1", True),
    Kind("daemonsets", "DaemonSet", "apps", "v1", True, ("ds",), ("status",)),
    Kind("deployments", "Deployment", "apps", "v1", True, ("deploy",), ("status",)),
)

BY_PLURAL = {k.plural: k for k in KINDS}
BY_API_KIND = {(k.api_version, k.kind): k for k in KINDS}
GROUPS: dict[str, list[Kind]] = {}
for _k in KINDS:
    GROUPS.setdefault(_k.group, []).append(_k)


def kind_for(group: str, version: str, plural: str) -> Kind | None:
    kind = BY_PLURAL.get(plural)
    if kind is None or kind.group != group or kind.version != version:
        return None
    return kind


def api_versions() -> dict[str, Any]:
    return {"kind": "APIVersions", "versions": ["v1"],
            "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0", "serverAddress": "127.0.0.1:6443"}]}


def resource_list(group: str, version: str) -> dict[str, Any] | None:
    kinds = [k for k in GROUPS.get(group, []) if k.version == version]
    if not kinds:
        return None
    resources: list[dict[str, Any]] = []
    for k in kinds:
        resources.append({"name": k.plural, "singularName": k.kind.lower(), "namespaced": k.namespaced,
                          "kind": k.kind, "verbs": VERBS, "shortNames": list(k.short_names)})
        for sub in k.subresources:
            resources.append({"name": f"{k.plural}/{sub}", "singularName": "", "namespaced": k.namespaced,
                              "kind": k.kind, "verbs": ["get", "patch", "update"]})
    return {"kind": "APIResourceList", "apiVersion": "v1",
            "groupVersion": f"{group}/{version}" if group else version, "resources": resources}


def api_group_list() -> dict[str, Any]:
    groups = []
    for group in sorted(g for g in GROUPS if g):
        versions = sorted({k.version for k in GROUPS[group]})
        entries = [{"groupVersion": f"{group}/{v}", "version": v} for v in versions]
        groups.append({"name": group, "versions": entries, "preferredVersion": entries[0]})
    return {"kind": "APIGroupList", "apiVersion": "v1", "groups": groups}


def version_info() -> dict[str, str]:
    return {"major": "1", "minor": "30", "gitVersion": "v1.30.0-kvip-standin", "gitCommit": "kvip",
            "gitTreeState": "clean", "buildDate": "2026-01-01T00:00:00Z", "goVersion": "go1.22",
            "compiler": "gc", "platform": "linux/amd64"}
