"""Hostile Services (kvip issue #17): whoever can create a Service feeds every node. Each scenario is a
reproduced attack; none may crash decide(), stall it, grow memory with history, forge a log line, or
cost any other Service its VIP."""

from __future__ import annotations

import gc
import time
import tracemalloc
from types import MappingProxyType
from typing import Any

import pytest

from kvip.core import decide_service as decide_module  # decide_service() calls service_vips
from kvip.core.decide import DecideConfig, decide
from kvip.core.model import BadInput, ClusterSnapshot, ServiceKey, ServiceView, shown
from kvip.kube import convert
from kvip.lab.objects import Endpoint, endpoint_slice, load_balancer_service

IPS = "kube-vip.io/loadbalancerIPs"
LOCAL_PREF = "kvip.io/bgp-local-pref"
COMMUNITIES = "kvip.io/bgp-communities"
TABLE = DecideConfig(node_name="node-a")
BGP = DecideConfig(node_name="node-a", bgp_attributes=True)
GOOD = load_balancer_service("good", vips=["10.96.0.1"], external_traffic_policy="Cluster")


def hostile(annotations: dict[str, Any], name: str = "hostile", **spec: Any) -> dict[str, Any]:
    obj = load_balancer_service(name, external_traffic_policy="Cluster", annotations=annotations)
    obj["spec"].update(spec)
    return obj


def cluster(*objects: dict[str, Any]) -> ClusterSnapshot:
    views = dict(entry for obj in objects if (entry := convert.load_balancer_entry(obj)))
    slices = [endpoint_slice(key.name, [Endpoint("10.244.1.1", "node-b")]) for key in views]
    return convert.snapshot(views, (entry[1] for s in slices if (entry := convert.slice_entry(s))), None)


def problems_of(state: Any, name: str) -> list[BadInput]:
    return [p for p in state.problems if p.service.name == name]


@pytest.mark.parametrize("value", ["²", "1" * 5000, "٣٠٠", "+200", " 2 00"],
                         ids=["superscript-two", "5000-digits", "arabic-indic-digits", "plus-sign", "inner-space"])
def test_a_local_pref_that_is_not_ascii_digits_is_reported_not_raised(value: str) -> None:
    """Bug 1: '²'.isdigit() is true and int('²') raises; so does a 4,300+ digit value. The ValueError
    left decide() and the agent shut down, withdrawing every VIP of every tenant."""
    state = decide(BGP, cluster(GOOD, hostile({IPS: "10.96.0.2", LOCAL_PREF: value})))
    assert state.advertisements.keys() == {ip("10.96.0.1"), ip("10.96.0.2")}
    assert state.advertisements[ip("10.96.0.2")].attributes.local_pref is None
    assert [p.reason for p in problems_of(state, "hostile")] == ["InvalidAnnotation"]
    assert LOCAL_PREF in problems_of(state, "hostile")[0].message


@pytest.mark.parametrize("value", ["²:1", "65000:" + "9" * 5000, "65000:1:²"])
def test_a_community_with_unicode_or_huge_numbers_is_reported(value: str) -> None:
    state = decide(BGP, cluster(GOOD, hostile({IPS: "10.96.0.2", COMMUNITIES: value + ",65000:7"})))
    assert state.advertisements[ip("10.96.0.2")].attributes.communities == {"65000:7"}
    assert [p.reason for p in problems_of(state, "hostile")] == ["InvalidAnnotation"]


@pytest.mark.parametrize("value", ["2001:db8::99%x", "2001:db8::99%eth0", "2001:db8::99%1\nforged"])
def test_an_ipv6_vip_with_a_zone_id_is_refused(value: str) -> None:
    """Bug 2: ip_address() accepts '%zone'; BIRD then refused every configure and ARP apply aborted."""
    state = decide(TABLE, cluster(GOOD, hostile({IPS: f"{value},2001:db8::98"})))
    assert state.vips == {ip("10.96.0.1"), ip("2001:db8::98")}
    assert all(v.scope_id is None for v in state.vips if v.version == 6)
    [problem] = problems_of(state, "hostile")
    assert problem.reason == "InvalidVIP" and "zone id" in problem.message


def test_service_edits_do_not_accumulate_in_memory() -> None:
    """Bug 3: every version of every Service stayed in a 65,536-entry lru_cache keyed by the whole view:
    RSS 56 -> 435 MiB after 12 label edits of a Service carrying a 240 KB annotation. Memos may hold
    what exists now, never the history of edits."""
    def version(n: int) -> dict[str, Any]:
        obj = hostile({IPS: "10.96.0.2", COMMUNITIES: "65000:1", "kvip.io/note": f"{n}" + "x" * 60_000})
        obj["metadata"]["resourceVersion"] = str(n)
        return obj

    def edit(n: int) -> None:
        decide(BGP, cluster(GOOD, version(n)))

    edit(0)
    gc.collect()
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        for n in range(1, 101):
            edit(n)
        gc.collect()
        grown = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    assert grown < 1_000_000, f"{grown} bytes kept after 100 edits of one Service (one version is 60 KB)"


def test_an_annotation_kvip_never_reads_is_not_kept_at_all() -> None:
    view = convert.service_view(hostile({IPS: "10.96.0.2", "kubectl.kubernetes.io/last-applied-configuration":
                                         "y" * 240_000}))
    assert dict(view.annotations) == {IPS: "10.96.0.2"} and view.refused == ()


def test_twenty_thousand_vips_in_one_annotation_are_refused_quickly() -> None:
    """Bug 4: de-duplication was quadratic and VIPs per Service unbounded: 20,000 VIPs in one annotation
    stalled the loop (and /healthz) 12.8 s. The edge refuses the 250 KB value; a view that bypasses the
    edge still has more than 16 VIPs refused whole, in linear time."""
    many = ",".join(f"10.{100 + i // 62500}.{i // 250 % 250}.{i % 250 + 1}" for i in range(20_000))
    state = decide(TABLE, cluster(GOOD, hostile({IPS: many})))
    assert state.vips == {ip("10.96.0.1")}
    [problem] = problems_of(state, "hostile")
    assert problem.reason == "InvalidField" and "limit of 65536" in problem.message

    view = ServiceView(ServiceKey("default", "hostile"), annotations=MappingProxyType({IPS: many}))
    started = time.perf_counter()
    state = decide(TABLE, ClusterSnapshot({**cluster(GOOD).services, view.key: view}, cluster(GOOD).endpoints))
    elapsed = time.perf_counter() - started
    assert state.vips == {ip("10.96.0.1")}
    [problem] = problems_of(state, "hostile")
    assert problem.reason == "TooManyVIPs" and "20000" in problem.message and "limit of 16" in problem.message
    assert elapsed < 1.0


def test_sixteen_vips_are_still_accepted_and_duplicates_collapse() -> None:
    sixteen = [f"10.97.0.{i}" for i in range(1, 17)]
    state = decide(TABLE, cluster(hostile({IPS: ",".join(sixteen + sixteen[:3])})))
    assert state.decisions[ServiceKey("default", "hostile")].vips == tuple(ip(v) for v in sixteen)


FORGERIES = {
    IPS: "10.0.0.1\n2024-01-01 ERROR kvip: forged line,\x1b[2J" + "z" * 60_000,
    "kube-vip.io/ignore": "maybe\r\nkvip WARNING forged",
    LOCAL_PREF: "1\n" + "9" * 60_000,
    COMMUNITIES: "\u202eevil:1",
    "kube-vip.io/serviceInterface": "eth0\nforged",
}


@pytest.mark.parametrize("annotation", sorted(FORGERIES))
def test_text_from_a_service_reaches_logs_and_events_quoted_and_short(annotation: str) -> None:
    """Bug 11: in the text log format a newline in VIP text forged log lines. Service text in a
    message is repr-quoted (no raw control character) and cut short."""
    state = decide(BGP, cluster(GOOD, hostile({IPS: "10.96.0.2", annotation: FORGERIES[annotation]})))
    messages = [p.message for p in problems_of(state, "hostile")]
    assert messages, annotation
    for message in messages:
        assert message.isprintable(), message
        assert len(message) < 400, message


def test_refusals_at_the_edge_are_quoted_too() -> None:
    view = convert.service_view(hostile({}, loadBalancerIP="10.0.0.1\nforged" * 100,
                                        ports=[{"port": 80, "protocol": "TCP\nforged"}]))
    assert len(view.refused) == 2
    assert all(p.message.isprintable() and len(p.message) < 400 for p in view.refused)


def test_shown_escapes_and_cuts() -> None:
    assert shown("a\nb") == "'a\\nb'"
    assert shown("x" * 1000).endswith("... (1000 characters)") and len(shown("x" * 1000)) < 100
    assert shown(["list"]) == "\"['list']\""


def test_an_unexpected_failure_costs_only_its_own_service(monkeypatch: pytest.MonkeyPatch) -> None:
    """Defence in depth: whatever bug one Service meets, decide() reports it against that Service
    ("InternalError") and decides every other one as usual."""
    real = decide_module.service_vips

    def broken_for_hostile(service: Any) -> Any:
        if service.key.name == "hostile":
            raise RuntimeError("surprise\nforged")
        return real(service)

    snapshot = cluster(GOOD, hostile({IPS: "10.96.0.2"}))
    monkeypatch.setattr(decide_module, "service_vips", broken_for_hostile)
    state = decide(TABLE, snapshot)
    assert state.vips == {ip("10.96.0.1")}
    [problem] = problems_of(state, "hostile")
    assert problem.reason == "InternalError" and "default/hostile" in problem.message
    assert problem.message.isprintable()
    assert state.decisions[ServiceKey("default", "hostile")].reason == "internal-error"
    assert state.decisions[ServiceKey("default", "good")].advertised


def ip(text: str) -> Any:
    import ipaddress

    return ipaddress.ip_address(text)
