"""Server-side printing: objects as `meta.k8s.io/v1` Tables, with the columns the real server's
printers give each kind (so `kubectl get svc` prints what it prints against a cluster).

The server always fills the wide columns (priority 1); kubectl shows them only with `-o wide`.
Kinds without a printer here get the real default convertor's Name and Created At.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

from kvip.lab.apiserver.kinds import Kind

META_V1 = "meta.k8s.io/v1"
Obj = Mapping[str, Any]
Row = list[Any]


def _col(name: str, description: str, *, priority: int = 0, fmt: str = "", type_: str = "string") -> dict[str, Any]:
    return {"name": name, "type": type_, "format": fmt, "description": description, "priority": priority}


NAME = _col("Name", "Name of the object, unique within its namespace.", fmt="name")
AGE = _col("Age", "Time since the object was created (metadata.creationTimestamp).")


def human_duration(seconds: float) -> str:
    """Kubernetes' duration.HumanDuration: "45s", "5m3s", "3h12m", "2d4h", "1y20d"."""
    whole = int(seconds)
    if whole < -1:
        return "<invalid>"
    if whole < 0:
        return "0s"
    if whole < 120:
        return f"{whole}s"
    minutes = whole // 60
    if minutes < 10:
        return f"{minutes}m" if whole % 60 == 0 else f"{minutes}m{whole % 60}s"
    if minutes < 180:
        return f"{minutes}m"
    hours = whole // 3600
    if hours < 8:
        return f"{hours}h" if minutes % 60 == 0 else f"{hours}h{minutes % 60}m"
    if hours < 48:
        return f"{hours}h"
    if hours < 24 * 8:
        return f"{hours // 24}d" if hours % 24 == 0 else f"{hours // 24}d{hours % 24}h"
    if hours < 24 * 365 * 2:
        return f"{hours // 24}d"
    if hours < 24 * 365 * 8:
        days = (hours // 24) % 365
        return f"{hours // 24 // 365}y" if days == 0 else f"{hours // 24 // 365}y{days}d"
    return f"{hours // 24 // 365}y"


def _since(timestamp: str | None, now: dt.datetime) -> str:
    if not timestamp:
        return "<unknown>"
    then = dt.datetime.strptime(timestamp[:19], "%Y-%m-%dT%H:%M:%S").replace(tzinfo=dt.UTC)
    return human_duration((now - then).total_seconds())


def _meta(obj: Obj) -> Mapping[str, Any]:
    return obj.get("metadata") or {}


def _age(obj: Obj, now: dt.datetime) -> str:
    return _since(_meta(obj).get("creationTimestamp"), now)


def _labels(selector: Mapping[str, str] | None) -> str:
    return ",".join(f"{k}={v}" for k, v in sorted((selector or {}).items())) or "<none>"


def _service_external_ip(spec: Mapping[str, Any], status: Mapping[str, Any]) -> str:
    kind, external = spec.get("type") or "ClusterIP", list(spec.get("externalIPs") or [])
    if kind in ("ClusterIP", "NodePort"):
        return ",".join(external) or "<none>"
    if kind == "LoadBalancer":
        ingress = (status.get("loadBalancer") or {}).get("ingress") or []
        balanced = sorted({i.get("ip") or i.get("hostname") for i in ingress if i.get("ip") or i.get("hostname")})
        return ",".join(balanced + external) or "<pending>"
    if kind == "ExternalName":
        return str(spec.get("externalName", ""))
    return "<unknown>"


def _service_ports(ports: Sequence[Mapping[str, Any]]) -> str:
    pieces = []
    for port in ports:
        proto = port.get("protocol") or "TCP"
        node_port = port.get("nodePort")
        pieces.append(f"{port.get('port')}:{node_port}/{proto}" if node_port else f"{port.get('port')}/{proto}")
    return ",".join(pieces) or "<none>"


def _service(obj: Obj, now: dt.datetime) -> Row:
    spec, status = obj.get("spec") or {}, obj.get("status") or {}
    cluster_ips = spec.get("clusterIPs") or ([spec["clusterIP"]] if spec.get("clusterIP") else [])
    return [_meta(obj).get("name", ""), spec.get("type") or "ClusterIP", cluster_ips[0] if cluster_ips else "<none>",
            _service_external_ip(spec, status), _service_ports(spec.get("ports") or []), _age(obj, now),
            _labels(spec.get("selector"))]


def _first_three(values: Sequence[str]) -> str:
    """The printers' listWithMoreString: at most three, then "+ N more..."."""
    shown = ",".join(values[:3])
    if len(values) > 3:
        return f"{shown} + {len(values) - 3} more..."
    return shown or "<unset>"


def _endpoint_slice(obj: Obj, now: dt.datetime) -> Row:
    ports = [str(p["port"]) if p.get("port") is not None else (p.get("name") or "*") for p in obj.get("ports") or []]
    addresses = [a for ep in obj.get("endpoints") or [] for a in ep.get("addresses") or []]
    return [_meta(obj).get("name", ""), obj.get("addressType", ""), _first_three(ports), _first_three(addresses),
            _age(obj, now)]


def _node(obj: Obj, now: dt.datetime) -> Row:
    spec, status = obj.get("spec") or {}, obj.get("status") or {}
    ready = [c for c in status.get("conditions") or [] if c.get("type") == "Ready"]
    state = (["Ready" if ready[-1].get("status") == "True" else "NotReady"] if ready else ["Unknown"])
    if spec.get("unschedulable"):
        state.append("SchedulingDisabled")
    labels = _meta(obj).get("labels") or {}
    roles = {k.removeprefix("node-role.kubernetes.io/") for k in labels if k.startswith("node-role.kubernetes.io/")}
    roles |= {labels["kubernetes.io/role"]} if labels.get("kubernetes.io/role") else set()
    info = status.get("nodeInfo") or {}
    addresses = status.get("addresses") or []

    def address(kind: str) -> str:
        return next((a.get("address", "") for a in addresses if a.get("type") == kind), "<none>")

    return [_meta(obj).get("name", ""), ",".join(state), ",".join(sorted(r for r in roles if r)) or "<none>",
            _age(obj, now), info.get("kubeletVersion", ""), address("InternalIP"), address("ExternalIP"),
            info.get("osImage") or "<unknown>", info.get("kernelVersion") or "<unknown>",
            info.get("containerRuntimeVersion") or "<unknown>"]


def _event(obj: Obj, now: dt.datetime) -> Row:
    involved, source = obj.get("involvedObject") or {}, obj.get("source") or {}
    last = obj.get("lastTimestamp") or obj.get("eventTime") or _meta(obj).get("creationTimestamp")
    first = obj.get("firstTimestamp") or obj.get("eventTime") or _meta(obj).get("creationTimestamp")
    where = ", ".join(s for s in (source.get("component") or obj.get("reportingComponent"), source.get("host")) if s)
    return [_since(last, now), obj.get("type", ""), obj.get("reason", ""),
            f"{str(involved.get('kind', '')).lower()}/{involved.get('name', '')}", involved.get("fieldPath", ""),
            where, str(obj.get("message", "")).strip(), _since(first, now), obj.get("count") or 1,
            _meta(obj).get("name", "")]


Printer = Callable[[Obj, dt.datetime], Row]
PRINTERS: dict[str, tuple[list[dict[str, Any]], Printer]] = {
    "services": ([NAME, _col("Type", "How the service is exposed (spec.type)."),
                  _col("Cluster-IP", "The cluster IP (spec.clusterIP)."),
                  _col("External-IP", "Load balancer ingress and spec.externalIPs."),
                  _col("Port(s)", "Service ports, with node ports."), AGE,
                  _col("Selector", "Pods this service routes to (spec.selector).", priority=1)], _service),
    "endpointslices": ([NAME, _col("AddressType", "IPv4, IPv6 or FQDN."), _col("Ports", "Ports of the slice."),
                        _col("Endpoints", "Addresses of the endpoints."), AGE], _endpoint_slice),
    "nodes": ([NAME, _col("Status", "Ready condition and schedulability."), _col("Roles", "node-role labels."), AGE,
               _col("Version", "Kubelet version."), _col("Internal-IP", "InternalIP address.", priority=1),
               _col("External-IP", "ExternalIP address.", priority=1), _col("OS-Image", "OS image.", priority=1),
               _col("Kernel-Version", "Kernel version.", priority=1),
               _col("Container-Runtime", "Container runtime version.", priority=1)], _node),
    "leases": ([NAME, _col("Holder", "spec.holderIdentity."), AGE],
               lambda o, now: [_meta(o).get("name", ""), (o.get("spec") or {}).get("holderIdentity") or "",
                               _age(o, now)]),
    "configmaps": ([NAME, _col("Data", "Number of data and binaryData keys.", type_="integer"), AGE],
                   lambda o, now: [_meta(o).get("name", ""), len(o.get("data") or {}) + len(o.get("binaryData") or {}),
                                   _age(o, now)]),
    "namespaces": ([NAME, _col("Status", "Namespace phase."), AGE],
                   lambda o, now: [_meta(o).get("name", ""), (o.get("status") or {}).get("phase") or "Active",
                                   _age(o, now)]),
    "events": ([_col("Last Seen", "Time since the event last happened."), _col("Type", "Normal or Warning."),
                _col("Reason", "Why the event happened."), _col("Object", "The object the event is about."),
                _col("Subobject", "Field path inside that object.", priority=1),
                _col("Source", "Component and host that reported it.", priority=1),
                _col("Message", "What happened."), _col("First Seen", "Time since it first happened.", priority=1),
                _col("Count", "How often it happened.", priority=1, type_="integer"),
                _col("Name", "Name of the event.", priority=1, fmt="name")], _event),
}
DEFAULT: tuple[list[dict[str, Any]], Printer] = (
    [NAME, _col("Created At", "When the object was created.", type_="date")],
    lambda o, now: [_meta(o).get("name", ""), _meta(o).get("creationTimestamp", "")])


def partial(obj: Obj) -> dict[str, Any]:
    """The object as PartialObjectMetadata: its metadata only."""
    return {"kind": "PartialObjectMetadata", "apiVersion": META_V1, "metadata": obj.get("metadata") or {}}


def as_table(kind: Kind, objects: Iterable[Obj], metadata: Mapping[str, Any], *, include_object: str = "Metadata",
             headers: bool = True, now: dt.datetime | None = None) -> dict[str, Any]:
    """A Table of `objects`; `include_object` None | Metadata | Object decides each row's object, and
    `headers` False leaves the column definitions out (watch events after the first)."""
    columns, printer = PRINTERS.get(kind.plural, DEFAULT)
    moment = now or dt.datetime.now(dt.UTC)
    rows = []
    for obj in objects:
        row: dict[str, Any] = {"cells": printer(obj, moment)}
        if include_object == "Object":
            row["object"] = obj
        elif include_object == "Metadata":
            row["object"] = partial(obj)
        rows.append(row)
    return {"kind": "Table", "apiVersion": META_V1, "metadata": dict(metadata),
            "columnDefinitions": columns if headers else [], "rows": rows}
