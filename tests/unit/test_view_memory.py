"""What the cache keeps per Service and per endpoint stays small (kvip issue #21, 10,000 Services /
30,000 EndpointSlices): views without a per-instance dict, texts many objects repeat kept once, and one
tuple of port views for all slices with the same ports; none of it changes a view's value."""

from __future__ import annotations

import gc
import json
import platform

from kvip.core import model
from kvip.core.vips import service_vips
from kvip.kube import convert
from kvip.lab.objects import Endpoint, endpoint_slice, load_balancer_service
from kvip.runtime.memory import release_free_memory


def decoded(obj: dict) -> dict:
    return json.loads(json.dumps(obj))  # fresh strings, as each object of a list body has its own


def test_views_kept_per_object_have_no_instance_dict() -> None:
    for cls in (model.ServiceKey, model.ServiceView, model.EndpointView, model.PortView, model.ServiceDecision,
                model.Advertisement, model.BadInput, model.NodeView, model.RouteAttributes):
        assert cls.__dictoffset__ == 0, cls.__name__


def test_a_views_memo_entry_lives_exactly_as_long_as_the_view() -> None:
    entry = convert.load_balancer_entry(decoded(load_balancer_service("web", vips=["10.96.0.1"])))
    assert entry is not None
    view = entry[1]
    service_vips(view)
    assert view in service_vips.memo  # type: ignore[attr-defined]  # the view can be weakly referenced
    size = len(service_vips.memo)  # type: ignore[attr-defined]
    del view, entry
    gc.collect()
    assert len(service_vips.memo) == size - 1  # type: ignore[attr-defined]


def test_slices_share_repeated_texts_and_their_port_views() -> None:
    one, two = (convert.slice_entry(decoded(endpoint_slice(name, [Endpoint(f"10.244.0.{n}", "node-a")])))
                for n, name in enumerate(("web", "db"), 1))
    assert one is not None and two is not None
    (key_one, (service_one, (endpoint_one,))), (key_two, (service_two, (endpoint_two,))) = one, two
    assert key_one[0] is key_two[0] is service_one.namespace is service_two.namespace  # "default", once
    assert endpoint_one.node_name is endpoint_two.node_name
    assert endpoint_one.ports is endpoint_two.ports and endpoint_one.ports == convert._slice_ports(
        decoded(endpoint_slice("web", []))["ports"])


def test_a_services_key_names_the_same_text_its_slices_name() -> None:
    service = convert.load_balancer_entry(decoded(load_balancer_service("web", vips=["10.96.0.1"])))
    piece = convert.slice_entry(decoded(endpoint_slice("web", [Endpoint("10.244.0.1", "node-a")])))
    assert service is not None and piece is not None
    assert service[0] == piece[1][0] and service[0].name is piece[1][0].name


def test_free_heap_memory_is_handed_back_only_where_glibc_can_be_asked() -> None:
    assert release_free_memory() is (platform.libc_ver()[0] == "glibc")
