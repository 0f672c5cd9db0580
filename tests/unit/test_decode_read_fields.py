"""Services and EndpointSlices are decoded into only the fields kvip reads (msgspec; kvip issue #21): for
any JSON at all, what the conversion makes of the typed decoding is what it makes of the whole object, so
the hostile-input guarantees (a wrong type refused one field at a time, never a raise) are unchanged."""

from __future__ import annotations

import json
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from kvip.kube import convert
from kvip.lab.objects import Endpoint, endpoint_slice, load_balancer_service
from tests.unit.test_hostile_properties import hostile_service, json_value

FIELDS = ["metadata", "spec", "status", "endpoints", "ports", "kind"]
hostile_slice = st.builds(
    lambda extra, endpoints: {**endpoint_slice("web", [Endpoint("10.244.1.1", "node-a")]), **extra,
                              **({} if endpoints is None else {"endpoints": endpoints})},
    st.dictionaries(st.sampled_from(FIELDS[1:]), json_value, max_size=2),
    st.one_of(st.none(), json_value, st.lists(st.fixed_dictionaries(
        {"addresses": json_value, "nodeName": json_value, "conditions": json_value}), max_size=3)))
anything = st.one_of(hostile_service(), hostile_slice, st.dictionaries(st.sampled_from(FIELDS), json_value))


def conversions(obj: Any) -> tuple[object, ...]:
    return (convert.load_balancer_entry(obj), convert.slice_entry(obj), convert.object_key(obj),
            convert.slice_key(obj))


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(anything, st.sampled_from(["ADDED", "MODIFIED", "DELETED", "BOOKMARK"]))
def test_a_watch_event_decoded_into_the_read_fields_converts_as_the_whole_object(obj: dict[str, Any],
                                                                                kind: str) -> None:
    line = json.dumps({"type": kind, "object": obj})
    event = convert.decode_event(line)
    assert event["type"] == kind and conversions(event["object"]) == conversions(json.loads(line)["object"])


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(st.lists(anything, max_size=4))
def test_a_list_decoded_into_the_read_fields_converts_as_the_whole_list(items: list[dict[str, Any]]) -> None:
    body = json.dumps({"kind": "ServiceList", "metadata": {"resourceVersion": "42"}, "items": items}).encode()
    listed = convert.decode_list(body)
    assert listed["metadata"] == {"resourceVersion": "42"}
    assert [conversions(o) for o in listed["items"]] == [conversions(o) for o in json.loads(body)["items"]]


def test_what_kvip_never_reads_is_not_kept_and_an_error_event_is_kept_whole() -> None:
    service = load_balancer_service("web", vips=["10.96.0.1"])
    service["metadata"]["managedFields"] = [{"manager": "kubectl", "fieldsV1": {"f:spec": {}}}]
    event = convert.decode_event(json.dumps({"type": "MODIFIED", "object": service}))
    assert "managedFields" not in event["object"]["metadata"]
    status = {"kind": "Status", "code": 410, "reason": "Expired", "message": "too old resource version"}
    assert convert.decode_event(json.dumps({"type": "ERROR", "object": status}))["object"] == status
