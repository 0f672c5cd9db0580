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
    assert views[0].node_name == "a" and views[2].node_name is None


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


def lb(annotations: object = None, **spec: object) -> dict:
    return {"metadata": {"name": "web", "namespace": "shop", "annotations": annotations},
            "spec": {"type": "LoadBalancer", **spec}}


def test_only_kube_vip_and_kvip_annotations_are_kept() -> None:
    view = service_view(lb({"kube-vip.io/loadbalancerIPs": "10.0.0.1", "kvip.io/probe": "tcp",
                            "kubectl.kubernetes.io/last-applied-configuration": "{" * 200_000}))
    assert dict(view.annotations) == {"kube-vip.io/loadbalancerIPs": "10.0.0.1", "kvip.io/probe": "tcp"}
    assert view.refused == ()


def test_an_annotation_over_64_kib_is_refused_naming_the_field_and_the_limit() -> None:
    view = service_view(lb({"kvip.io/bgp-communities": "1" * 70_000, "kube-vip.io/loadbalancerIPs": "10.0.0.1"}))
    assert dict(view.annotations) == {"kube-vip.io/loadbalancerIPs": "10.0.0.1"}
    [refusal] = view.refused
    assert refusal.service == ServiceKey("shop", "web") and refusal.reason == "InvalidField"
    assert "kvip.io/bgp-communities" in refusal.message and "limit of 65536" in refusal.message


def test_wrong_json_types_are_refused_not_raised() -> None:
    view = service_view(lb({"kube-vip.io/loadbalancerIPs": ["10.0.0.1"], "kvip.io/bgp-local-pref": None},
                           loadBalancerIP={"nested": "10.0.0.2"}, ports=[{"port": True}, {"port": 70000},
                                                                        {"port": 80, "protocol": "HTTP"},
                                                                        {"port": 443, "protocol": "UDP"}]))
    assert dict(view.annotations) == {} and view.load_balancer_ip is None
    assert [(p.port, p.protocol) for p in view.ports] == [(443, "UDP")]
    fields = " | ".join(p.message for p in view.refused)
    for field in ("loadbalancerIPs", "bgp-local-pref", "spec.loadBalancerIP", "spec.ports[0].port",
                  "spec.ports[1].port", "spec.ports[2].protocol"):
        assert field in fields


def test_lists_over_their_limit_are_refused_whole() -> None:
    obj = lb(None, ipFamilies=["IPv4", "IPv6", "IPv4"])
    obj["status"] = {"loadBalancer": {"ingress": [{"ip": f"10.0.0.{i}"} for i in range(1, 18)]}}
    view = service_view(obj)
    assert view.ingress_ips == () and view.ip_families == ()
    assert sorted(p.message.split(" ")[0] for p in view.refused) == ["spec.ipFamilies", "status.loadBalancer.ingress"]
    assert all("limit of" in p.message for p in view.refused)


def test_one_grouping_of_slices_under_their_service() -> None:
    from kvip.kube.convert import load_balancer_entry, slice_entry, snapshot

    services = dict(e for o in (lb(None), {"metadata": {"name": "c"}, "spec": {"type": "ClusterIP"}})
                    if (e := load_balancer_entry(o)))
    slices = [{"metadata": {"name": f"web-{i}", "namespace": "shop", "labels": {"kubernetes.io/service-name": "web"}},
               "endpoints": [{"addresses": [f"10.1.0.{i}"]}]} for i in (1, 2)]
    cluster = snapshot(services, (e[1] for s in slices if (e := slice_entry(s))), None)
    assert list(cluster.services) == [ServiceKey("shop", "web")]
    assert [v.addresses for v in cluster.endpoints[ServiceKey("shop", "web")]] == [("10.1.0.1",), ("10.1.0.2",)]
