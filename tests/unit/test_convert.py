"""API JSON → views: nil conditions get their API meaning, odd shapes never raise."""

from __future__ import annotations

from kvip.core.model import ServiceKey
from kvip.kube.convert import endpoint_views, node_view, service_view, slice_service_key


def test_service_fields_are_read_uninterpreted() -> None:
    view = service_view({
        "metadata": {"name": "web", "namespace": "shop", "uid": "u1", "resourceVersion": "7",
                     "annotations": {"kube-vip.io/loadbalancerIPs": "10.0.0.1,bogus"}},
        "spec": {"type": "LoadBalancer", "externalTrafficPolicy": "Local", "loadBalancerIP": "10.0.0.2",
                 "loadBalancerClass": "x/y", "ipFamilies": ["IPv4"], "ports": [{"port": 80}]},
        "status": {"loadBalancer": {"ingress": [{"ip": "10.0.0.3"}, {"hostname": "lb.example"}]}},
    })
    assert view.key == ServiceKey("shop", "web") and view.uid == "u1" and view.resource_version == "7"
    assert view.annotations["kube-vip.io/loadbalancerIPs"] == "10.0.0.1,bogus"
    assert (view.load_balancer_ip, view.ingress_ips, view.load_balancer_class) == ("10.0.0.2", ("10.0.0.3",), "x/y")
    assert view.ports[0].protocol == "TCP"


def test_endpoint_conditions_default_as_the_api_documents() -> None:
    views = endpoint_views({
        "metadata": {"name": "web-abc", "namespace": "shop", "labels": {"kubernetes.io/service-name": "web"}},
        "endpoints": [
            {"addresses": ["10.1.0.1"], "nodeName": "a"},
            {"addresses": ["10.1.0.2"], "nodeName": "b", "conditions": {"ready": False}},
            {"addresses": ["10.1.0.3"], "conditions": {"ready": False, "serving": True, "terminating": True}},
        ],
    })
    assert [(v.ready, v.serving, v.terminating) for v in views] == [
        (True, True, False), (False, False, False), (False, True, True)]
    assert views[0].slice_name == "web-abc" and views[2].node_name is None


def test_slice_service_key_comes_from_the_service_name_label() -> None:
    assert slice_service_key({"metadata": {"namespace": "n", "labels": {"kubernetes.io/service-name": "s"}}}) == \
        ServiceKey("n", "s")
    assert slice_service_key({"metadata": {"namespace": "n"}}) is None


def test_node_conditions_and_labels() -> None:
    view = node_view({"metadata": {"name": "a", "labels": {"x": "1"}}, "spec": {"unschedulable": True},
                      "status": {"conditions": [{"type": "NetworkUnavailable", "status": "True"}]}})
    assert (view.name, view.unschedulable, view.network_unavailable, dict(view.labels)) == ("a", True, True, {"x": "1"})


def test_garbage_shapes_never_raise() -> None:
    for junk in ({}, {"metadata": None, "spec": []}, {"spec": {"ports": "80", "ipFamilies": 4},
                                                     "status": {"loadBalancer": {"ingress": "x"}}}):
        service_view(junk)
        endpoint_views({**junk, "endpoints": [None, {"addresses": "x", "conditions": []}]})
        node_view(junk)
