"""Builders for the Kubernetes objects the lab, tests and benchmarks create (plain dicts, API shape).

Pure functions; they produce what a real cluster would hold (an EndpointSlice as the endpointslice
controller writes it), so the agent sees nothing unusual.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any


def load_balancer_service(
    name: str,
    *,
    namespace: str = "default",
    vips: Sequence[str] = (),
    external_traffic_policy: str = "Local",
    port: int = 80,
    protocol: str = "TCP",
    annotations: Mapping[str, str] | None = None,
    load_balancer_class: str | None = None,
    via: str = "ingress",
) -> dict[str, Any]:
    """A Service of type LoadBalancer whose VIPs come from status ingress (as an IPAM would set them),
    `spec.loadBalancerIP` (`via="spec"`) or the kube-vip annotation (`via="annotation"`)."""
    meta: dict[str, Any] = {"name": name, "namespace": namespace, "annotations": dict(annotations or {})}
    spec: dict[str, Any] = {
        "type": "LoadBalancer",
        "externalTrafficPolicy": external_traffic_policy,
        "ports": [{"name": "p", "port": port, "protocol": protocol, "targetPort": port}],
        "selector": {"app": name},
    }
    status: dict[str, Any] = {"loadBalancer": {}}
    if load_balancer_class:
        spec["loadBalancerClass"] = load_balancer_class
    if via == "annotation":
        meta["annotations"]["kube-vip.io/loadbalancerIPs"] = ",".join(vips)
    elif via == "spec" and vips:
        spec["loadBalancerIP"] = vips[0]
    else:
        status["loadBalancer"] = {"ingress": [{"ip": vip} for vip in vips]}
    return {"apiVersion": "v1", "kind": "Service", "metadata": meta, "spec": spec, "status": status}


@dataclass(frozen=True)
class Endpoint:
    address: str
    node: str
    ready: bool = True
    serving: bool | None = None
    terminating: bool | None = None


def endpoint_slice(
    service: str,
    endpoints: Iterable[Endpoint],
    *,
    namespace: str = "default",
    name: str | None = None,
    port: int = 80,
    address_type: str = "IPv4",
) -> dict[str, Any]:
    items = []
    for ep in endpoints:
        conditions: dict[str, bool] = {"ready": ep.ready}
        if ep.serving is not None:
            conditions["serving"] = ep.serving
        if ep.terminating is not None:
            conditions["terminating"] = ep.terminating
        items.append({"addresses": [ep.address], "nodeName": ep.node, "conditions": conditions})
    return {
        "apiVersion": "discovery.k8s.io/v1",
        "kind": "EndpointSlice",
        "metadata": {
            "name": name or f"{service}-kvip",
            "namespace": namespace,
            "labels": {
                "kubernetes.io/service-name": service,
                "endpointslice.kubernetes.io/managed-by": "endpointslice-controller.k8s.io",
            },
        },
        "addressType": address_type,
        "endpoints": items,
        "ports": [{"name": "p", "port": port, "protocol": "TCP"}],
    }


def node(name: str, *, address: str | None = None, labels: Mapping[str, str] | None = None) -> dict[str, Any]:
    status: dict[str, Any] = {
        "conditions": [{"type": "Ready", "status": "True"}, {"type": "NetworkUnavailable", "status": "False"}],
    }
    if address:
        status["addresses"] = [{"type": "InternalIP", "address": address}]
    return {
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {"name": name, "labels": {"kubernetes.io/hostname": name, **(labels or {})}},
        "spec": {},
        "status": status,
    }


def namespace(name: str) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}}
