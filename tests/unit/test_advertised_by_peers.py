"""kvip.io/advertised-by in BGP mode names, per node, the Established peers its speaker exports the
Service's VIPs to (issue #20): from the heartbeat's `kvip.io/bgp-peers`, small and never in a renewal."""

from __future__ import annotations

import ipaddress
import json
from collections.abc import AsyncIterator

import pytest
from hypothesis import given
from hypothesis import strategies as st
from lightkube import AsyncClient, KubeConfig

from kvip.core.advertised_by import (
    MAX_NODES,
    Cluster,
    ServiceLine,
    annotation_value,
    node_label,
    writes,
)
from kvip.core.model import ServiceKey
from kvip.kube.advertised_by import beat_entry
from kvip.kube.heartbeat import (
    BGP_PEERS_ANNOTATION,
    MAX_PEERS,
    AgentFacts,
    HeartbeatPublisher,
    facts_from_annotations,
)
from kvip.lab.apiserver import WRITE_VERBS, StandIn, serving

WEB = ServiceKey("default", "web")
V4, V6 = "10.96.0.10", "fd00:96::10"
ROUTERS = (("10.0.0.1", (4,)), ("10.0.0.2", (4, 6)), ("fd00::1", (6,)))


def test_a_bgp_node_is_shown_with_the_peers_that_carry_the_services_vips() -> None:
    peers = {"node-a": ROUTERS, "node-b": (("10.0.0.1", (4,)),), "node-c": (), "node-d": None}
    nodes = ["node-a", "node-b", "node-c", "node-d"]
    assert annotation_value(nodes, peers=peers, vips=[V4]) == \
        "node-a(peers 10.0.0.1 10.0.0.2),node-b(peer 10.0.0.1),node-c(no peer),node-d"
    # an IPv6 VIP goes to the IPv6 session and to the IPv4 one that carries IPv6 too (MP-BGP)
    assert annotation_value(nodes, peers=peers, vips=[V6]) == \
        "node-a(peers 10.0.0.2 fd00::1),node-b(no peer),node-c(no peer),node-d"
    assert node_label("node-a", ROUTERS, frozenset({4, 6})) == "node-a(peers 10.0.0.1 10.0.0.2 +1)"


def test_the_writer_names_the_peers_and_writes_again_when_a_session_goes_down() -> None:
    claims = {"node-a": frozenset({V4}), "node-b": frozenset({V4})}
    line = ServiceLine(WEB, frozenset({V4}), current="node-a,node-b")
    up = Cluster(claims, peers={"node-a": (("10.0.0.1", (4,)),), "node-b": (("10.0.0.1", (4,)),)})
    assert writes("node-a", [line], up, frozenset()) == {WEB: "node-a(peer 10.0.0.1),node-b(peer 10.0.0.1)"}
    shown = ServiceLine(WEB, frozenset({V4}), current="node-a(peer 10.0.0.1),node-b(peer 10.0.0.1)")
    down = Cluster(claims, peers={"node-a": (("10.0.0.1", (4,)),), "node-b": ()})
    assert writes("node-a", [shown], down, frozenset()) == {WEB: "node-a(peer 10.0.0.1),node-b(no peer)"}


peer_lists = st.lists(st.tuples(st.ip_addresses().map(str), st.sampled_from([(4,), (6,), (4, 6)])),
                      max_size=MAX_PEERS, unique_by=lambda p: p[0]).map(tuple)


@given(st.dictionaries(st.text(alphabet="abcdefgh-0123456789", min_size=1, max_size=63), peer_lists, max_size=100))
def test_the_value_stays_bounded_however_many_nodes_and_peers(peers: dict[str, tuple[tuple[str, tuple[int, ...]], ...]]) -> None:
    value = annotation_value(peers, peers=peers, vips=[V4, V6])
    # per node: its name, "(peers ", two addresses of at most 39 characters, " +NN)"; then "+N more"
    assert len(value) <= MAX_NODES * (63 + 8 + 2 * 40 + 5 + 1) + 12


def test_the_peers_read_back_from_the_heartbeat_annotations_and_a_bad_list_says_nothing() -> None:
    facts = AgentFacts.of("", {"10.0.0.2": {6, 4}, "10.0.0.1": [4]})
    assert facts_from_annotations(facts.annotations()) == facts
    assert facts.bgp_peers == (("10.0.0.1", (4,)), ("10.0.0.2", (4, 6)))
    assert facts_from_annotations({BGP_PEERS_ANNOTATION: ""}).bgp_peers is None  # not BGP mode
    assert facts_from_annotations({BGP_PEERS_ANNOTATION: '{"10.0.0.1": ["x"]}'}).bgp_peers is None
    assert facts_from_annotations({BGP_PEERS_ANNOTATION: "[1"}).bgp_peers is None
    lease = {"metadata": {"name": "kvip-node-node-a", "labels": {"kvip.io/heartbeat": "true"},
                          "annotations": facts.annotations()}, "spec": {}}
    entry = beat_entry(lease)
    assert entry is not None and entry[1].facts == facts


@pytest.fixture
async def api() -> AsyncIterator[StandIn]:
    async with serving(namespaces=("kube-system",)) as standin:
        yield standin


async def test_a_session_change_is_published_once_and_renewals_stay_small(api: StandIn) -> None:
    sessions: dict[str, set[int]] = {}
    client = AsyncClient(config=KubeConfig.from_dict(api.kubeconfig()))
    beat = HeartbeatPublisher(client, node_name="node-a", namespace="kube-system", mode="bgp", period=30.0,
                              node_selector="", bgp_peers=lambda: sessions)
    try:
        vips = [str(ipaddress.ip_address("10.96.0.0") + i) for i in range(100)]
        beat.report(vips, vips)
        await beat.renew()
        sessions["10.0.0.1"] = {4}  # the session came up: the next write carries it
        mark = api.requests_served
        await beat.renew()
        [changed] = api.request_log(resource="leases", verbs=WRITE_VERBS, after=mark)
        mark = api.requests_served
        await beat.renew()
        [renewal] = api.request_log(resource="leases", verbs=WRITE_VERBS, after=mark)
    finally:
        await client.close()
    annotations = api.get("leases", "kvip-node-node-a", "kube-system")["metadata"]["annotations"]
    assert json.loads(annotations[BGP_PEERS_ANNOTATION]) == {"10.0.0.1": [4]}
    assert renewal.bytes_in < 80 < changed.bytes_in  # the peers once, then renewTime alone
