"""Raw API objects (camelCase JSON dicts) → the frozen views of `kvip.core.model`: the one edge
where untrusted input enters, and the only conversion (agent cache, IPAM controller and `kvip audit`
all use it, and `snapshot()` is the one grouping of slices under their Service).

Anyone who can create a Service feeds every node, so the conversion bounds what it keeps and never
raises: a field of the wrong JSON type (a list for a string, null, a nested object) or over a limit is
refused — read as absent — and the refusal is recorded on the view as a `BadInput` naming the field and
the limit, which `decide()` reports (an Event) against that Service only. Meaning (is this text an
address, a community, a boolean?) is `kvip.core`'s job, on inputs these limits keep small:

| what | limit |
|---|---|
| annotations kept | only `kube-vip.io/*` and `kvip.io/*` (nothing else is read), at most 32 per Service |
| an annotation value | 64 KiB (65,536 characters) |
| a spec/status string (loadBalancerIP, loadBalancerClass, policies, an ingress ip, a port's name/protocol) | 256 characters |
| status.loadBalancer.ingress | 16 entries (`kvip.core.vips.MAX_VIPS`) |
| spec.ports | 256 entries; port 0-65535, protocol TCP, UDP or SCTP |
| spec.ipFamilies | 2 entries |
| EndpointSlice | 1,000 endpoints of 100 addresses (the API's own limits, enforced again) |

Further limits live with the parsing: 16 VIPs per Service (`core.vips`), 32 communities per annotation
(`core.bgp_attributes`), numbers ASCII digits in range.
"""

from __future__ import annotations

import sys
from collections import defaultdict
from collections.abc import Iterable, Mapping
from functools import lru_cache
from types import MappingProxyType
from typing import Any

from kvip.core.model import (
    BadInput,
    ClusterSnapshot,
    EndpointView,
    NodeView,
    PortView,
    ServiceKey,
    ServiceView,
    shown,
)
from kvip.core.vips import MAX_VIPS
from kvip.kube.read_fields import decode_event, decode_list  # noqa: F401  # the cache's decoders, kept here

SERVICE_NAME_LABEL = "kubernetes.io/service-name"

ANNOTATION_PREFIXES = ("kube-vip.io/", "kvip.io/")
MAX_ANNOTATIONS = 32
MAX_ANNOTATION_CHARS = 64 * 1024
MAX_ANNOTATION_KEY_CHARS = 317  # the API's own: a 253-character prefix, '/', a 63-character name
MAX_TEXT_CHARS = 256
MAX_PORTS = 256
MAX_IP_FAMILIES = 2
PROTOCOLS = frozenset({"TCP", "UDP", "SCTP"})
MAX_ENDPOINTS_PER_SLICE = 1000
MAX_ADDRESSES_PER_ENDPOINT = 100

SliceKey = tuple[str, str]
SliceEntry = tuple[ServiceKey, tuple[EndpointView, ...]]

_EMPTY: Mapping[str, Any] = MappingProxyType({})
_NO_ANNOTATIONS: Mapping[str, str] = MappingProxyType({})


def _map(value: Any) -> Mapping[str, Any]:
    # dict, not the Mapping ABC: decoded JSON is always dict, and the ABC check was a third of
    # the cost of converting 30,000 EndpointSlices on a relist.
    return value if isinstance(value, dict) else _EMPTY


def _list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []


def _str(value: Any) -> str | None:
    return value if isinstance(value, str) and value != "" else None


def _shared(value: str | None) -> str | None:
    """A text thousands of objects repeat (namespace, node, protocol, type, policy, annotation key), kept
    once: interned strings are freed like any other when the last object holding them goes."""
    return sys.intern(value) if value is not None and len(value) <= MAX_TEXT_CHARS else value


def _string_map(value: Any) -> Mapping[str, str]:
    return MappingProxyType({k: v for k, v in _map(value).items() if isinstance(k, str) and isinstance(v, str)})


def _bool(value: Any, default: bool) -> bool:
    return value if isinstance(value, bool) else default


class _Refusals:
    """What one Service's conversion refused, each a `BadInput` naming the field and the rule."""

    def __init__(self, key: ServiceKey) -> None:
        self.key = key
        self.found: list[BadInput] = []

    def refuse(self, field: str, why: str) -> None:
        self.found.append(BadInput(self.key, "InvalidField", f"{field} {why}; ignored"))

    def text(self, value: Any, field: str) -> str | None:
        """A string field: absent, or a string of at most MAX_TEXT_CHARS; anything else refused."""
        if value is None or value == "":
            return None
        if not isinstance(value, str):
            self.refuse(field, f"is a {_json_type(value)}, not a string")
            return None
        if len(value) > MAX_TEXT_CHARS:
            self.refuse(field, f"has {len(value)} characters, more than the limit of {MAX_TEXT_CHARS}")
            return None
        return value

    def items(self, value: Any, field: str, limit: int) -> list[Any]:
        """A list field: absent, or a list of at most `limit` entries; anything else refused whole."""
        if value is None:
            return []
        if not isinstance(value, list):
            self.refuse(field, f"is a {_json_type(value)}, not a list")
            return []
        if len(value) > limit:
            self.refuse(field, f"has {len(value)} entries, more than the limit of {limit}")
            return []
        return value


def _json_type(value: Any) -> str:
    return {dict: "object", list: "list", bool: "boolean", int: "number", float: "number",
            str: "string"}.get(type(value), "null" if value is None else type(value).__name__)


def _annotations(value: Any, refusals: _Refusals) -> Mapping[str, str]:
    if value is not None and not isinstance(value, dict):
        refusals.refuse("metadata.annotations", f"is a {_json_type(value)}, not an object")
    ours = sorted((k, v) for k, v in _map(value).items() if isinstance(k, str) and k.startswith(ANNOTATION_PREFIXES))
    if len(ours) > MAX_ANNOTATIONS:
        refusals.refuse(f"annotations after {shown(ours[MAX_ANNOTATIONS - 1][0])}",
                        f"exceed the limit of {MAX_ANNOTATIONS} kube-vip.io/ and kvip.io/ annotations")
        ours = ours[:MAX_ANNOTATIONS]
    kept: dict[str, str] = {}
    for key, text in ours:
        field = f"annotation {shown(key)}"
        if len(key) > MAX_ANNOTATION_KEY_CHARS:
            refusals.refuse(field, f"has a key longer than {MAX_ANNOTATION_KEY_CHARS} characters")
        elif not isinstance(text, str):
            refusals.refuse(field, f"is a {_json_type(text)}, not a string")
        elif len(text) > MAX_ANNOTATION_CHARS:
            refusals.refuse(field, f"has {len(text)} characters, more than the limit of {MAX_ANNOTATION_CHARS}")
        else:
            kept[sys.intern(key)] = text
    # Most Services carry none of ours: they all share one empty mapping (104 bytes a Service otherwise).
    return MappingProxyType(kept) if kept else _NO_ANNOTATIONS


def _port_number(value: Any) -> int | None:
    # bool is an int in Python, not in JSON
    return value if isinstance(value, int) and not isinstance(value, bool) and 0 <= value <= 65535 else None


def _service_ports(value: Any, refusals: _Refusals) -> tuple[PortView, ...]:
    ports: list[tuple[str | None, int | None, str]] = []
    for index, raw in enumerate(refusals.items(value, "spec.ports", MAX_PORTS)):
        field = f"spec.ports[{index}]"
        port = _map(raw)
        number = port.get("port")
        if number is not None and _port_number(number) is None:
            refusals.refuse(f"{field}.port", f"is {shown(number, 16)}, not a port number 0-65535")
            continue
        protocol = _shared(refusals.text(port.get("protocol"), f"{field}.protocol")) or "TCP"
        if protocol not in PROTOCOLS:
            refusals.refuse(f"{field}.protocol", f"is {shown(protocol, 16)}, not one of {', '.join(sorted(PROTOCOLS))}")
            continue
        ports.append((refusals.text(port.get("name"), f"{field}.name"), number, protocol))
    return _port_views(tuple(ports))


def _slice_ports(value: Any) -> tuple[PortView, ...]:
    return _port_views(tuple(
        (_str(port.get("name")), _port_number(port.get("port")), _str(port.get("protocol")) or "TCP")
        for port in (_map(raw) for raw in _list(value)[:MAX_PORTS])
    ))


# Port lists worth sharing are short with short texts (a port's name is a DNS label, at most 63); a longer
# one is built for its object alone, so that hostile ports cannot make the shared tuples large.
MAX_SHARED_PORTS = 4
MAX_SHARED_PORT_NAME = 63


def _port_views(ports: tuple[tuple[str | None, int | None, str], ...]) -> tuple[PortView, ...]:
    """One tuple of PortViews for every Service and slice with the same ports (most of a cluster's share
    a few): 104 bytes an object for one port, kept once."""
    if len(ports) > MAX_SHARED_PORTS:
        return _new_port_views(ports)
    for name, _, protocol in ports:  # a loop, not all(): this runs for every slice of every event
        if (name is not None and len(name) > MAX_SHARED_PORT_NAME) or len(protocol) > MAX_SHARED_PORT_NAME:
            return _new_port_views(ports)
    return _shared_port_views(ports)


def _new_port_views(ports: tuple[tuple[str | None, int | None, str], ...]) -> tuple[PortView, ...]:
    return tuple(PortView(_shared(name), number, _shared(protocol) or "TCP") for name, number, protocol in ports)


_shared_port_views = lru_cache(maxsize=1024)(_new_port_views)


def _service_key(namespace: str, name: str) -> ServiceKey:
    """One ServiceKey for the slices of a Service (and the Service) converted close together: a list
    gives a Service's slices one after another, as their names start with its name (48 bytes a slice).
    Bounded in entries and in text, so that hostile churn cannot grow it."""
    if len(namespace) <= MAX_TEXT_CHARS and len(name) <= MAX_TEXT_CHARS:
        return _recent_service_key(namespace, name)
    return ServiceKey(namespace, name)


_recent_service_key = lru_cache(maxsize=256)(ServiceKey)


def object_key(obj: Mapping[str, Any]) -> ServiceKey:
    meta = _map(obj.get("metadata"))  # the name too: each of the Service's slices names it again
    return _service_key(_shared(_str(meta.get("namespace"))) or "", _shared(_str(meta.get("name"))) or "")


def slice_key(obj: Mapping[str, Any]) -> SliceKey:
    meta = _map(obj.get("metadata"))
    return (_shared(_str(meta.get("namespace"))) or "", _str(meta.get("name")) or "")


def node_name(obj: Mapping[str, Any]) -> str:
    return _str(_map(obj.get("metadata")).get("name")) or ""


def service_view(obj: Mapping[str, Any]) -> ServiceView:
    """The view of any Service object; never raises, whatever the JSON."""
    key = object_key(obj)
    refusals = _Refusals(key)
    meta, spec = _map(obj.get("metadata")), _map(obj.get("spec"))
    ingress = refusals.items(_map(_map(obj.get("status")).get("loadBalancer")).get("ingress"),
                             "status.loadBalancer.ingress", MAX_VIPS)
    families = refusals.items(spec.get("ipFamilies"), "spec.ipFamilies", MAX_IP_FAMILIES)
    return ServiceView(
        key=key,
        uid=refusals.text(meta.get("uid"), "metadata.uid") or "",
        type=_shared(refusals.text(spec.get("type"), "spec.type")) or "ClusterIP",
        load_balancer_class=_shared(refusals.text(spec.get("loadBalancerClass"), "spec.loadBalancerClass")),
        external_traffic_policy=_shared(refusals.text(spec.get("externalTrafficPolicy"),
                                                      "spec.externalTrafficPolicy")) or "Cluster",
        load_balancer_ip=refusals.text(spec.get("loadBalancerIP"), "spec.loadBalancerIP"),
        ingress_ips=tuple(ip for i, entry in enumerate(ingress)
                          if (ip := refusals.text(_map(entry).get("ip"), f"status.loadBalancer.ingress[{i}].ip"))),
        ip_families=tuple(_shared(f) or "" for i, raw in enumerate(families)
                          if (f := refusals.text(raw, f"spec.ipFamilies[{i}]"))),
        ip_family_policy=_shared(refusals.text(spec.get("ipFamilyPolicy"), "spec.ipFamilyPolicy")) or "",
        ports=_service_ports(spec.get("ports"), refusals),
        annotations=_annotations(meta.get("annotations"), refusals),
        resource_version=refusals.text(meta.get("resourceVersion"), "metadata.resourceVersion") or "",
        refused=tuple(refusals.found),
    )


def load_balancer_entry(obj: Mapping[str, Any]) -> tuple[ServiceKey, ServiceView] | None:
    """A LoadBalancer Service as a (key, view) store entry; None for every other type (only these
    can ever be advertised or allocated, so the caches hold nothing else)."""
    if _map(obj.get("spec")).get("type") != "LoadBalancer":
        return None
    view = service_view(obj)
    return view.key, view


def slice_service_key(obj: Mapping[str, Any]) -> ServiceKey | None:
    meta = _map(obj.get("metadata"))
    service = _str(_map(meta.get("labels")).get(SERVICE_NAME_LABEL))
    if service is None:
        return None
    return _service_key(_shared(_str(meta.get("namespace"))) or "", _shared(service) or "")


def endpoint_views(obj: Mapping[str, Any]) -> tuple[EndpointView, ...]:
    """Every endpoint of a slice; nil conditions get their documented meaning (ready/serving true,
    terminating false; serving defaults to ready when absent, as older servers omit it)."""
    ports = _slice_ports(obj.get("ports"))
    views = []
    for raw in _list(obj.get("endpoints"))[:MAX_ENDPOINTS_PER_SLICE]:
        endpoint = _map(raw)
        conditions = _map(endpoint.get("conditions"))
        ready = _bool(conditions.get("ready"), True)
        addresses = _list(endpoint.get("addresses"))[:MAX_ADDRESSES_PER_ENDPOINT]
        views.append(
            EndpointView(
                addresses=tuple(a for a in addresses if isinstance(a, str) and len(a) <= MAX_TEXT_CHARS),
                node_name=_shared(_str(endpoint.get("nodeName"))),
                ready=ready,
                serving=_bool(conditions.get("serving"), ready),
                terminating=_bool(conditions.get("terminating"), False),
                ports=ports,
            )
        )
    return tuple(views)


def slice_entry(obj: Mapping[str, Any]) -> tuple[SliceKey, SliceEntry] | None:
    """An EndpointSlice as a store entry; None for a slice not managed for a Service (no label)."""
    service = slice_service_key(obj)
    if service is None:
        return None
    return slice_key(obj), (service, endpoint_views(obj))


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


def node_entry(obj: Mapping[str, Any]) -> tuple[str, NodeView] | None:
    view = node_view(obj)
    return view.name, view


def string_data(obj: Mapping[str, Any]) -> Mapping[str, str]:
    """A ConfigMap's `data`, string values only."""
    return _string_map(obj.get("data"))


def snapshot(services: Mapping[ServiceKey, ServiceView], slices: Iterable[SliceEntry],
             node: NodeView | None) -> ClusterSnapshot:
    """The one grouping of EndpointSlices under their Service, as `decide()` reads them."""
    grouped: dict[ServiceKey, list[EndpointView]] = defaultdict(list)
    for service, endpoints in slices:
        grouped[service].extend(endpoints)
    return ClusterSnapshot(dict(services), {key: tuple(views) for key, views in grouped.items()}, node)
