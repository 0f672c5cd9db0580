"""/status is bounded whatever the cluster holds (kvip issue #17, row 6).

The review made it 16.8 MB with one bad Service: every Service, every endpoint, every VIP and the
annotation text were listed in full. Now lists are capped with a "truncated" count and strings cut.
"""

from __future__ import annotations

import json
import time
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from kvip.agent.status_doc import StatusLimits, status_document
from kvip.core.decide import DecideConfig, decide
from kvip.core.model import ClusterSnapshot
from kvip.kube import convert
from kvip.kube.reflector import SourceState, SourceStatus
from kvip.lab.objects import Endpoint, endpoint_slice, load_balancer_service
from kvip.reconcile import BackendDiff, ReconcileResult

NODE = "node-a"
DEFAULT = StatusLimits()
HUGE = "x" * (1 << 20)  # 1 MiB of annotation text


def cluster(services: list[dict[str, Any]], endpoints_per_service: int = 1) -> ClusterSnapshot:
    views = dict(entry for obj in services if (entry := convert.load_balancer_entry(obj)))
    slices = [endpoint_slice(key.name, [Endpoint(f"10.{i // 65536 % 256}.{i // 256 % 256}.{i % 256}", NODE)
                                        for i in range(endpoints_per_service)]) for key in views]
    return convert.snapshot(views, (entry[1] for s in slices if (entry := convert.slice_entry(s))), None)


def document(snapshot: ClusterSnapshot, *, error: str | None = None, limits: StatusLimits = DEFAULT,
             backends: dict[str, Any] | None = None) -> str:
    state = decide(DecideConfig(node_name=NODE, bgp_attributes=True), snapshot)
    diff = BackendDiff(backend="routes", added=frozenset(state.vips), removed=frozenset(), failed={})
    result = ReconcileResult(desired=state, diffs=(diff,), reasons={"timer": 1}, started_at=time.time(),
                             duration=0.01, error=error)
    source = SourceStatus(resource="services", state=SourceState.SYNCED, objects=len(snapshot.services),
                          resource_version="1", relists=1, watch_restarts=0, last_list_at=None,
                          last_ok_monotonic=None, last_error=error, errors={})
    doc = status_document(node=NODE, mode="table", synced=True, passes=1, sources=[source], result=result,
                          last_known_good_endpoint={}, backends=backends or {}, limits=limits)
    return json.dumps(doc)


def test_one_service_with_huge_annotations_and_thousands_of_endpoints_stays_small() -> None:
    annotations = {"kube-vip.io/loadbalancerIPs": HUGE, "kvip.io/bgp-communities": HUGE,
                   "kvip.io/bgp-local-pref": HUGE, "kube-vip.io/ignore": HUGE, "tenant/notes": HUGE}
    bad = load_balancer_service("b" * 63, external_traffic_policy="Local", annotations=annotations)
    many_vips = load_balancer_service("many", vips=[f"10.96.1.{i}" for i in range(16)],
                                      external_traffic_policy="Local")
    text = document(cluster([bad, many_vips], endpoints_per_service=5000), error=HUGE,
                    backends={"bgp": {"sessions": {f"peer-{i}": HUGE for i in range(1000)}}})
    assert len(text) < 64 * 1024, len(text)
    assert "x" * 300 not in text  # never the annotation (nor any other string) in full
    doc = json.loads(text)
    assert doc["problems"] and doc["truncated"]["items"] > 0
    assert len(doc["services"]["default/many"]["localEndpoints"]) == StatusLimits().items


def test_ten_thousand_bad_services_are_listed_up_to_the_cap_with_the_rest_counted() -> None:
    services = [load_balancer_service(f"svc-{i}", external_traffic_policy="Cluster",
                                      annotations={"kube-vip.io/loadbalancerIPs": f"not-an-ip-{'y' * 2000}"})
                for i in range(10_000)]
    limits = StatusLimits()
    text = document(cluster(services), limits=limits)
    assert len(text) <= limits.max_bytes()
    doc = json.loads(text)
    assert len(doc["services"]) == limits.services and doc["truncated"]["services"] == 10_000 - limits.services
    assert len(doc["problems"]) == limits.problems and doc["truncated"]["problems"] >= 10_000 - limits.problems


json_values = st.recursive(st.none() | st.booleans() | st.integers() | st.text(max_size=3000),
                           lambda inner: st.lists(inner, max_size=40) | st.dictionaries(st.text(max_size=500), inner,
                                                                                       max_size=40),
                           max_leaves=400)


@settings(max_examples=60, deadline=None)
@given(backend=json_values, error=st.text(max_size=5000))
def test_whatever_a_backend_or_an_error_says_the_document_keeps_its_bound(backend: Any, error: str) -> None:
    limits = StatusLimits(services=4, problems=4, items=4, advertised=4, text=32)
    text = document(cluster([]), error=error or None, limits=limits, backends={"bgp": backend})
    assert len(text) <= limits.max_bytes()
