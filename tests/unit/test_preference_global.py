"""kvip_preferred_nodes: the agent option that gives the global services Lease (kube-vip's global election, the
ARP default) the kvip.io/preferred-nodes preference and so the same graceful handover (kvip issue #20)."""

from __future__ import annotations

import pytest

from kvip.config.agent import ConfigError, load_config
from kvip.core.election_rules import LeaseKey
from kvip.core.leases import ElectionPlan
from kvip.core.model import ElectionMode, NodeView, ServiceKey, ServiceView
from kvip.core.preference import (
    PREFERRED_NODES_ANNOTATION,
    Rank,
    lease_ranks,
    parse_preference,
)

GLOBAL_LEASE = LeaseKey("kube-system", "plndr-svcs-lock")
ZONE_A = NodeView("node-a", labels={"zone": "a"})
ZONE_B = NodeView("node-b", labels={"zone": "b"})
ARP = {"vip_arp": "true", "vip_interface": "eth0", "vip_leaderelection": "true", "vip_nodename": "node-a"}


def test_the_global_lease_is_ranked_by_the_agents_preference() -> None:
    plan = ElectionPlan(ElectionMode.GLOBAL, global_lease=GLOBAL_LEASE)
    preference = parse_preference("100:zone=a")
    assert lease_ranks(plan, {}, (), ZONE_A, preference) == {GLOBAL_LEASE: Rank(100, 100)}
    assert lease_ranks(plan, {}, (), ZONE_B, preference) == {GLOBAL_LEASE: Rank(0, 100)}
    assert lease_ranks(plan, {}, (), ZONE_A) == {}  # no option: no preference, as before


def test_per_service_leases_keep_their_annotation_and_ignore_the_agents_preference() -> None:
    web = ServiceView(key=ServiceKey("default", "web"), annotations={PREFERRED_NODES_ANNOTATION: "100:zone=b"})
    ranks = lease_ranks(ElectionPlan(ElectionMode.SERVICE), {web.key: web}, [web.key], ZONE_A,
                        parse_preference("100:zone=a"))
    assert list(ranks.values()) == [Rank(0, 100)]


def test_the_option_is_read_with_the_annotations_syntax_and_a_bad_value_stops_the_agent() -> None:
    config = load_config({**ARP, "kvip_preferred_nodes": "100:zone=a; 50:disk=ssd"})
    assert config.election is ElectionMode.GLOBAL
    assert config.preferred_nodes == parse_preference("100:zone=a; 50:disk=ssd")
    assert not any("kvip_preferred_nodes" in n for n in config.notices)
    with pytest.raises(ConfigError, match="preferred"):
        load_config({**ARP, "kvip_preferred_nodes": "100:zone in (a"})


def test_without_global_election_the_option_is_ignored_in_one_line() -> None:
    config = load_config({**ARP, "svc_election": "true", "kvip_preferred_nodes": "100:zone=a"})
    assert config.election is ElectionMode.SERVICE
    assert [n for n in config.notices if "kvip_preferred_nodes" in n] == [(
        "kvip_preferred_nodes: ignored without global election (per-service Leases take the "
        "kvip.io/preferred-nodes annotation of their Service)")]
