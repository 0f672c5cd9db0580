"""kvip.io/advertised-by, the pure rules: the value, who writes it (exactly one node), and the per-node
candidate sets that turn heartbeat digests back into VIPs (must equal decide() run on each node)."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from kvip.core.advertised_by import (
    MAX_NODES,
    Cluster,
    ServiceLine,
    advertisers,
    annotation_value,
    candidate_vips,
    writes,
)
from kvip.core.decide import DecideConfig, decide
from kvip.core.model import (
    ClusterSnapshot,
    EndpointView,
    Leadership,
    ServiceKey,
    ServiceView,
)

NODES = [f"node-{i:02d}" for i in range(8)]
VIPS = [f"10.96.0.{i}" for i in range(1, 7)]
WEB = ServiceKey("default", "web")

claims_strategy = st.dictionaries(
    st.sampled_from(NODES), st.one_of(st.none(), st.frozensets(st.sampled_from(VIPS))), min_size=1)
lines_strategy = st.lists(st.frozensets(st.sampled_from(VIPS), max_size=2), min_size=1, max_size=5)


def who_writes(line: ServiceLine, cluster: Cluster, holder: str | None = None) -> list[str]:
    """Every live node asks the rule whether it writes this Service (whose annotation differs from all)."""
    return [me for me in cluster.claims
            if line.key in writes(me, [line], cluster, frozenset({line.key}) if me == holder else frozenset())]


@given(claims_strategy, lines_strategy)
def test_exactly_one_live_node_writes_each_service_for_any_set_of_nodes(
        claims: dict[str, frozenset[str] | None], vip_sets: list[frozenset[str]]) -> None:
    cluster = Cluster(claims)
    for i, vips in enumerate(vip_sets):
        line = ServiceLine(ServiceKey("default", f"s{i}"), vips, current="\x00never")
        writers = who_writes(line, cluster)
        assert len(writers) == 1
        carrying = advertisers(vips, claims)
        # a carrier writes when there is one (it is live and up to date); else the first live node clears it
        assert writers[0] == (min(carrying) if carrying else min(claims))


@given(claims_strategy, lines_strategy)
def test_nobody_writes_a_value_the_service_already_carries(
        claims: dict[str, frozenset[str] | None], vip_sets: list[frozenset[str]]) -> None:
    cluster = Cluster(claims)
    for vips in vip_sets:
        line = ServiceLine(WEB, vips, current=annotation_value(advertisers(vips, claims)))
        assert who_writes(line, cluster) == []


def test_the_value_lists_the_nodes_carrying_every_vip_of_the_service_and_unknown_nodes_not_at_all() -> None:
    claims = {"node-c": frozenset({"10.96.0.1", "10.96.0.2"}), "node-a": frozenset({"10.96.0.1"}),
              "node-b": frozenset({"10.96.0.1", "10.96.0.2", "10.96.0.3"}), "node-d": None}
    assert annotation_value(advertisers({"10.96.0.1", "10.96.0.2"}, claims)) == "node-b,node-c"
    assert writes("node-b", [ServiceLine(WEB, frozenset({"10.96.0.1", "10.96.0.2"}))], Cluster(claims),
                  frozenset()) == {WEB: "node-b,node-c"}
    # nobody carries it any more: the first live node by name removes it ("" = remove)
    gone = ServiceLine(WEB, frozenset({"10.96.0.9"}), current="node-b")
    assert writes("node-a", [gone], Cluster(claims), frozenset()) == {WEB: ""}
    assert writes("node-b", [gone], Cluster(claims), frozenset()) == {}


@given(st.sets(st.text(alphabet="abcdefgh-0123456789", min_size=1, max_size=20), max_size=200))
def test_the_value_is_sorted_and_cut_after_max_nodes_with_a_count(nodes: set[str]) -> None:
    value = annotation_value(nodes)
    parts = value.split(",") if value else []
    if len(nodes) <= MAX_NODES:
        assert parts == sorted(nodes)
    else:
        assert parts[:-1] == sorted(nodes)[:MAX_NODES]
        assert parts[-1] == f"+{len(nodes) - MAX_NODES} more"
    assert len(value) <= MAX_NODES * 21 + 12


@given(st.sampled_from(NODES + [None]), st.sets(st.sampled_from(NODES), min_size=1))
def test_per_service_election_the_holder_writes_and_nobody_else(holder: str | None, live: set[str]) -> None:
    """A digest cannot say which Leases a node holds: the holder names itself; others stay out while
    any live node is eligible, and the first live node clears the annotation when none is."""
    vips = frozenset({"10.96.0.1"})
    eligible = {n: vips for n in live}
    line = ServiceLine(WEB, vips, elected=True, current="\x00never")
    writers = who_writes(line, Cluster({n: None for n in live}, eligible), holder if holder in live else None)
    assert writers == ([holder] if holder in live else [])
    none_eligible = Cluster({n: None for n in live}, {n: frozenset() for n in live})
    assert who_writes(line, none_eligible) == [min(live)]


def snapshot_strategy() -> st.SearchStrategy[ClusterSnapshot]:
    service = st.tuples(st.sampled_from(["Local", "Cluster"]), st.lists(
        st.tuples(st.sampled_from(NODES[:4]), st.booleans()), max_size=3))

    def build(specs: list[tuple[str, list[tuple[str, bool]]]]) -> ClusterSnapshot:
        services, endpoints = {}, {}
        for i, (policy, eps) in enumerate(specs):
            key = ServiceKey("default", f"s{i}")
            services[key] = ServiceView(key, external_traffic_policy=policy, ingress_ips=(VIPS[i % len(VIPS)],))
            endpoints[key] = tuple(EndpointView((f"10.244.{i}.{j}",), node, ready)
                                   for j, (node, ready) in enumerate(eps))
        return ClusterSnapshot(services, endpoints)

    return st.lists(service, max_size=8).map(build)


@settings(max_examples=200)
@given(snapshot_strategy())
def test_candidate_sets_equal_decide_run_on_each_node(snapshot: ClusterSnapshot) -> None:
    """The shortcut (one decide() for a node without endpoints, then one per node over its own
    Services) gives exactly what decide() on the whole cluster gives for that node."""
    config = DecideConfig(node_name="")
    every = Leadership(is_global_leader=True, led_services=frozenset(snapshot.services))
    found = candidate_vips(config, snapshot, NODES)
    for node in NODES:
        full = decide(DecideConfig(node_name=node), snapshot, every)
        assert found[node] == frozenset(str(v) for v in full.vips), node


def test_candidate_sets_of_a_local_service_are_its_endpoint_nodes_only() -> None:
    key = ServiceKey("default", "web")
    snapshot = ClusterSnapshot({key: ServiceView(key, external_traffic_policy="Local", ingress_ips=("10.96.0.1",))},
                               {key: (EndpointView(("10.244.0.1",), "node-01"),)})
    found = candidate_vips(DecideConfig(node_name=""), snapshot, NODES[:3])
    assert found == {"node-00": frozenset(), "node-01": frozenset({"10.96.0.1"}), "node-02": frozenset()}


@settings(max_examples=100)
@given(snapshot_strategy(), snapshot_strategy())
def test_the_candidate_memo_never_serves_an_answer_for_inputs_that_changed(
        before: ClusterSnapshot, after: ClusterSnapshot) -> None:
    memo: dict[str, tuple[object, frozenset[str]]] = {}
    config = DecideConfig(node_name="")
    candidate_vips(config, before, NODES, memo)
    assert candidate_vips(config, after, NODES, memo) == candidate_vips(config, after, NODES)
