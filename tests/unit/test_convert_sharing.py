"""Values the views of many objects repeat are kept once (kvip issue #21, 10,000 Services / 30,000
EndpointSlices): a Service's key for its slices, the empty annotations, the ports; each sharing is bounded
so that hostile churn cannot grow it, and none of it changes a view's value."""

from __future__ import annotations

import json
from typing import Any

from kvip.core.model import ServiceKey
from kvip.kube import convert
from kvip.kube.read_fields import decode_event, decode_list
from kvip.lab.objects import Endpoint, endpoint_slice, load_balancer_service


def decoded(obj: dict[str, Any]) -> dict[str, Any]:
    return dict(json.loads(json.dumps(obj)))  # fresh strings, as each object of a list body has its own


def service(name: str, **kwargs: Any) -> Any:
    entry = convert.load_balancer_entry(decoded(load_balancer_service(name, vips=["10.96.0.1"], **kwargs)))
    assert entry is not None
    return entry[1]


def test_the_slices_of_a_service_converted_together_share_one_key_equal_to_the_services() -> None:
    view = service("web")
    slices = [convert.slice_entry(decoded(endpoint_slice("web", [Endpoint(f"10.244.0.{n}", "node-a")],
                                                         name=f"web-{n}"))) for n in range(3)]
    keys = [entry[1][0] for entry in slices if entry is not None]
    assert keys == [view.key] * 3 and all(key is view.key for key in keys)
    other = convert.slice_entry(decoded(endpoint_slice("db", [Endpoint("10.244.0.9", "node-a")])))
    assert other is not None and other[1][0] == ServiceKey("default", "db")


def test_the_shared_keys_are_bounded_and_never_hold_an_overlong_text() -> None:
    assert convert._recent_service_key.cache_info().maxsize == 256  # type: ignore[attr-defined]
    for n in range(300):
        convert.slice_entry(decoded(endpoint_slice(f"churn-{n}", [Endpoint("10.244.0.1", "node-a")])))
    assert convert._recent_service_key.cache_info().currsize == 256  # type: ignore[attr-defined]
    long = {"metadata": {"namespace": "n", "labels": {convert.SERVICE_NAME_LABEL: "s" * 300}}}
    before = convert._recent_service_key.cache_info()  # type: ignore[attr-defined]
    assert convert.slice_service_key(long) == ServiceKey("n", "s" * 300)
    assert convert._recent_service_key.cache_info() == before  # type: ignore[attr-defined]


def test_services_without_our_annotations_share_one_empty_mapping() -> None:
    one, two = service("web"), service("db")
    assert one.annotations is two.annotations and dict(one.annotations) == {}
    assert service("other", annotations={"example.com/x": "1"}).annotations is one.annotations
    kept = service("vip", annotations={"kube-vip.io/loadbalancerIPs": "10.0.0.1"})
    assert dict(kept.annotations) == {"kube-vip.io/loadbalancerIPs": "10.0.0.1"}


def test_services_and_slices_with_the_same_ports_share_their_port_views() -> None:
    one, two = service("web"), service("db")
    assert one.ports is two.ports and [(p.name, p.port, p.protocol) for p in one.ports] == [("p", 80, "TCP")]
    entry = convert.slice_entry(decoded(endpoint_slice("web", [Endpoint("10.244.0.1", "node-a")])))
    assert entry is not None and entry[1][1][0].ports is one.ports
    assert service("udp", protocol="UDP").ports != one.ports


def test_long_port_lists_and_names_are_not_shared_so_hostile_ports_stay_with_their_object() -> None:
    before = convert._shared_port_views.cache_info().currsize  # type: ignore[attr-defined]
    many = [{"name": f"p{i}", "port": i, "protocol": "TCP"} for i in range(convert.MAX_SHARED_PORTS + 1)]
    named = [{"name": "n" * (convert.MAX_SHARED_PORT_NAME + 1), "port": 1, "protocol": "TCP"}]
    for ports in (many, named):
        view = convert.service_view({"metadata": {"name": "x", "namespace": "n"},
                                     "spec": {"type": "LoadBalancer", "ports": ports}})
        assert [(p.name, p.port) for p in view.ports] == [(p["name"], p["port"]) for p in ports]
        assert convert._shared_port_views.cache_info().currsize == before  # type: ignore[attr-defined]
    protocol = [{"name": "p", "port": 1, "protocol": "T" * 100_000}]  # a slice's protocol is not checked
    entry = convert.slice_entry({**endpoint_slice("web", [Endpoint("10.244.0.1", "node-a")]), "ports": protocol})
    assert entry is not None and entry[1][1][0].ports[0].protocol == "T" * 100_000
    assert convert._shared_port_views.cache_info().currsize == before  # type: ignore[attr-defined]


def test_refused_ports_are_still_refused_when_the_rest_are_shared() -> None:
    view = convert.service_view({"metadata": {"name": "x", "namespace": "n"}, "spec": {
        "type": "LoadBalancer", "ports": [{"port": 70000}, {"name": "p", "port": 80, "protocol": "TCP"}]}})
    assert view.ports == service("web").ports and "spec.ports[0].port" in view.refused[0].message


def test_a_decoded_list_lets_each_object_go_once_its_turn_has_come() -> None:
    obj = load_balancer_service("web", vips=["10.96.0.1"])
    body = json.dumps({"metadata": {"resourceVersion": "7"}, "items": [obj, obj]})
    listed = decode_list(body)
    items = listed["items"]
    first = next(items)
    assert first == {key: value for key, value in obj.items() if key in ("metadata", "spec", "status")}
    held = items.gi_frame.f_locals["items"]  # type: ignore[attr-defined]
    assert held[0] is None and held[1] is not None  # the first decoded object let go, the next still to come
    assert list(items) == [first] and listed["metadata"] == {"resourceVersion": "7"}
    event = decode_event(json.dumps({"type": "ADDED", "object": obj}))
    assert event == {"type": "ADDED", "object": first}


def test_a_decoded_object_is_what_to_builtins_gives_for_every_field_read() -> None:
    import msgspec

    from kvip.kube import read_fields

    meta = {field: {"x": [field]} for field in read_fields._Meta.__struct_fields__}
    full = {field: {"x": [field]} for field in read_fields._Object.__struct_fields__} | {"metadata": meta}
    for obj in (full, {"metadata": {}}, {"spec": None}, {}):
        struct = read_fields._EVENT.decode(json.dumps({"object": obj})).object
        assert read_fields._object(struct) == msgspec.to_builtins(struct) == obj
