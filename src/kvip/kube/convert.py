"""Raw API objects (camelCase JSON dicts) → the frozen views of `kvip.core.model`.

Never interprets (no annotation is parsed here, no IP validated: that is `decide`'s job, so bad input
is reported against its own service) and never raises on odd input: a field of the wrong shape is
read as absent.
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType
from typing import Any

from kvip.core.model import EndpointView, NodeView, PortView, ServiceKey, ServiceView

SERVICE_NAME_LABEL = "kubernetes.io/service-name"


_EMPTY: Mapping[str, Any] = MappingProxyType({})


def _map(value: Any) -> Mapping[str, Any]:
    # dict, not the Mapping ABC: decoded JSON is always dict, and the ABC check was a third of
    # the cost of converting 30,000 EndpointSlices on a relist.
    return value if isinstance(value, dict) else _EMPTY


def _list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []


def _str(value: Any) -> str | None:
    return value if isinstance(value, str) and value != "" else None


def _string_map(value: Any) -> Mapping[str, str]:
    return MappingProxyType({k: v for k, v in _map(value).items() if isinstance(v, str)})


def _bool(value: Any, default: bool) -> bool:
    return value if isinstance(value, bool) else default


def _ports(value: Any) -> tuple[PortView, ...]:
    ports = []
    for raw in _list(value):
        port = _map(raw)
        number = port.get("port")
        ports.append(
            PortView(
                name=_str(port.get("name")),
                port=number if isinstance(number, int) else None,
                protocol=_str(port.get("protocol")) or "TCP",
            )
        )
    return tuple(ports)


def object_key(obj: Mapping[str, Any]) -> ServiceKey:
    meta = _map(obj.get("metadata"))
    return ServiceKey(_str(meta.get("namespace")) or "", _str(meta.get("name")) or "")


def service_view(obj: Mapping[str, Any]) -> ServiceView:
    meta, spec = _map(obj.get("metadata")), _map(obj.get("spec"))
    ingress = _list(_map(_map(obj.get("status")).get("loadBalancer")).get("ingress"))
    return ServiceView(
        key=object_key(obj),
        uid=_str(meta.get("uid")) or "",
        type=_str(spec.get("type")) or "ClusterIP",
        load_balancer_class=_str(spec.get("loadBalancerClass")),
        external_traffic_policy=_str(spec.get("externalTrafficPolicy")) or "Cluster",
        load_balancer_ip=_str(spec.get("loadBalancerIP")),
        ingress_ips=tuple(ip for entry in ingress if (ip := _str(_map(entry).get("ip")))),
        ip_families=tuple(f for f in _list(spec.get("ipFamilies")) if isinstance(f, str)),
        ip_family_policy=_str(spec.get("ipFamilyPolicy")) or "",
        ports=_ports(spec.get("ports")),
        annotations=_string_map(meta.get("annotations")),
        resource_version=_str(meta.get("resourceVersion")) or "",
    )


def slice_service_key(obj: Mapping[str, Any]) -> ServiceKey | None:
    meta = _map(obj.get("metadata"))
    service = _str(_map(meta.get("labels")).get(SERVICE_NAME_LABEL))
    if service is None:
        return None
    return ServiceKey(_str(meta.get("namespace")) or "", service)


def endpoint_views(obj: Mapping[str, Any]) -> tuple[EndpointView, ...]:
    """Every endpoint of a slice; nil conditions get their documented meaning (ready/serving true,
    terminating false; serving defaults to ready when absent, as older servers omit it)."""
    slice_name = _str(_map(obj.get("metadata")).get("name")) or ""
    ports = _ports(obj.get("ports"))
    views = []
    for raw in _list(obj.get("endpoints")):
        endpoint = _map(raw)
        conditions = _map(endpoint.get("conditions"))
        ready = _bool(conditions.get("ready"), True)
        views.append(
            EndpointView(
                addresses=tuple(a for a in _list(endpoint.get("addresses")) if isinstance(a, str)),
                node_name=_str(endpoint.get("nodeName")),
                ready=ready,
                serving=_bool(conditions.get("serving"), ready),
                terminating=_bool(conditions.get("terminating"), False),
                ports=ports,
                slice_name=slice_name,
            )
        )
    return tuple(views)


def node_view(obj: Mapping[str, Any]) -> NodeView:
    meta, spec = _map(obj.get("metadata")), _map(obj.get("spec"))
    network_unavailable = any(
        _map(c).get("type") == "NetworkUnavailable" and _map(c).get("status") == "True"
        for c in _list(_map(obj.get("status")).get("conditions"))
    )
    return NodeView(
        name=_str(meta.get("name")) or "",
        unschedulable=_bool(spec.get("unschedulable"), False),
        labels=_string_map(meta.get("labels")),
        network_unavailable=network_unavailable,
    )
