"""The optional VIP allow-list (issue #17): a tenant cannot claim a gateway, a node address or another
tenant's VIP. Plain scenarios first, then hypothesis over generated clusters."""

from __future__ import annotations

import ipaddress
from types import MappingProxyType

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kvip.config.agent import ConfigError, load_config
from kvip.core.decide import DecideConfig, decide
from kvip.core.model import (
    ClusterSnapshot,
    EndpointView,
    PortView,
    ServiceKey,
    ServiceView,
)
from kvip.core.vip_allow import (
    InvalidAllowList,
    VipAllowList,
    parse_cidrs,
    parse_namespace_cidrs,
)

HERE = "node-a"
IPS = "kube-vip.io/loadbalancerIPs"


def service(namespace: str, name: str, *vips: str, port: int = 80) -> ServiceView:
    return ServiceView(ServiceKey(namespace, name), ports=(PortView("p", port, "TCP"),),
                       annotations=MappingProxyType({IPS: ",".join(vips)}))


def cluster(*services: ServiceView) -> ClusterSnapshot:
    return ClusterSnapshot({s.key: s for s in services},
                           {s.key: (EndpointView(("10.244.0.1",), "node-b"),) for s in services})


def allow(global_cidrs: str | None = None, namespaces: str | None = None) -> DecideConfig:
    return DecideConfig(node_name=HERE, vip_allow=VipAllowList(
        parse_cidrs(global_cidrs) if global_cidrs is not None else None,
        parse_namespace_cidrs(namespaces) if namespaces is not None else ()))


def advertised(config: DecideConfig, snapshot: ClusterSnapshot) -> set[str]:
    return {str(v) for v in decide(config, snapshot).advertisements}


def test_a_tenant_cannot_claim_the_gateway_and_is_told_which_rule_refused_it() -> None:
    snapshot = cluster(service("team-a", "web", "10.96.0.5"), service("team-a", "sneaky", "10.0.0.1"))
    state = decide(allow("10.96.0.0/16,2001:db8::/64"), snapshot)
    assert {str(v) for v in state.advertisements} == {"10.96.0.5"}
    [refused] = [p for p in state.problems if p.reason == "VIPNotAllowed"]
    assert refused.service == ServiceKey("team-a", "sneaky")
    assert "10.0.0.1" in refused.message and "kvip_vip_allow: 10.96.0.0/16,2001:db8::/64" in refused.message
    assert state.decisions[ServiceKey("team-a", "sneaky")].reason == "no-vip"


def test_a_namespace_entry_replaces_the_global_list_for_that_namespace() -> None:
    config = allow("10.96.0.0/16", "team-a=10.96.1.0/24;team-b=10.96.2.0/24,192.0.2.0/24")
    snapshot = cluster(service("team-a", "own", "10.96.1.7"),
                       service("team-a", "global-only", "10.96.9.9"),  # in the global list, not in team-a's
                       service("team-b", "outside-global", "192.0.2.10"),
                       service("team-c", "no-entry", "10.96.9.10"))  # no entry: the global list
    assert advertised(config, snapshot) == {"10.96.1.7", "192.0.2.10", "10.96.9.10"}
    [refused] = [p for p in decide(config, snapshot).problems if p.reason == "VIPNotAllowed"]
    assert refused.service.name == "global-only"
    assert "kvip_vip_allow_namespaces entry for namespace team-a: 10.96.1.0/24" in refused.message


def test_another_tenants_vip_stays_with_its_tenant_when_a_second_service_names_it() -> None:
    config = allow(namespaces="team-a=10.96.1.0/24;team-b=10.96.2.0/24")
    snapshot = cluster(service("team-a", "web", "10.96.1.1", port=80),
                       service("team-b", "thief", "10.96.1.1", port=443))
    state = decide(config, snapshot)
    assert set(state.advertisements[ipaddress.ip_address("10.96.1.1")].services) == {ServiceKey("team-a", "web")}
    assert [p.service.name for p in state.problems if p.reason == "VIPNotAllowed"] == ["thief"]


def test_a_namespace_entry_reserves_its_range_against_namespaces_on_the_global_list() -> None:
    config = allow("10.96.0.0/16", "team-a=10.96.1.0/24")
    state = decide(config, cluster(service("team-b", "squatter", "10.96.1.9"), service("team-b", "own", "10.96.5.1")))
    assert {str(v) for v in state.advertisements} == {"10.96.5.1"}
    assert "is reserved to namespace team-a (kvip_vip_allow_namespaces: 10.96.1.0/24)" in state.problems[0].message


def test_with_only_namespace_entries_an_unlisted_namespace_may_claim_nothing() -> None:
    config = allow(namespaces="team-a=10.96.1.0/24")
    state = decide(config, cluster(service("default", "web", "10.96.1.1")))
    assert not state.advertisements
    assert "has no kvip_vip_allow_namespaces entry and kvip_vip_allow is unset" in state.problems[0].message


def test_an_ipv4_list_refuses_ipv6_vips_and_keeps_the_service_s_other_vip() -> None:
    state = decide(allow("10.96.0.0/16"), cluster(service("default", "dual", "10.96.0.1", "2001:db8::1")))
    assert {str(v) for v in state.advertisements} == {"10.96.0.1"}
    assert "2001:db8::1" in state.problems[0].message


def test_off_by_default_and_on_when_either_option_is_set() -> None:
    assert load_config({"vip_nodename": HERE}).decide_config().vip_allow is None
    on = load_config({"vip_nodename": HERE, "kvip_vip_allow_namespaces": "team-a=10.96.1.0/24"}).decide_config()
    assert on.vip_allow is not None and on.vip_allow.refusal("team-a", ipaddress.ip_address("10.96.1.1")) is None
    flag = load_config({"vip_nodename": HERE}, {"vip_allow": "10.96.0.0/16"}).decide_config()
    assert flag.vip_allow == VipAllowList((ipaddress.ip_network("10.96.0.0/16"),))


@pytest.mark.parametrize(("env", "value", "says"), [
    ("kvip_vip_allow", "10.96.0.1/16", "host bits set"),
    ("kvip_vip_allow", "10.96.0.1", "not a CIDR"),
    ("kvip_vip_allow", "10.96.0.0/16,,10.97.0.0/16", "empty entry"),
    ("kvip_vip_allow", " , ", "lists no CIDR"),
    ("kvip_vip_allow", "fe80::/64%eth0", "not a CIDR"),
    ("kvip_vip_allow", "１０.0.0.0/8", "not a CIDR"),
    ("kvip_vip_allow", ",".join(f"10.{i // 256}.{i % 256}.0/24" for i in range(300)), "more than 256"),
    ("kvip_vip_allow_namespaces", "team-a:10.96.1.0/24", "not namespace=CIDR"),
    ("kvip_vip_allow_namespaces", "Team_A=10.96.1.0/24", "not a namespace name"),
    ("kvip_vip_allow_namespaces", "a=10.96.1.0/24;a=10.96.2.0/24", "listed twice"),
    ("kvip_vip_allow_namespaces", "team-a=", "namespace team-a: lists no CIDR"),
    ("kvip_vip_allow_namespaces", ";", "lists no namespace"),
])
def test_each_unreadable_allow_list_is_one_config_line_naming_the_variable(env: str, value: str, says: str) -> None:
    with pytest.raises(ConfigError) as raised:
        load_config({"vip_nodename": HERE, env: value})
    [line] = str(raised.value).splitlines()
    assert line.startswith(f"{env}: ") and says in line
    with pytest.raises(InvalidAllowList):
        (parse_cidrs if env == "kvip_vip_allow" else parse_namespace_cidrs)(value)


# -- properties ------------------------------------------------------------------------------------

NAMESPACES = ("team-a", "team-b", "default")
vip_text = st.sampled_from(["10.96.1.1", "10.96.1.2", "10.96.2.1", "10.0.0.1", "192.0.2.1", "2001:db8::1",
                            "2001:db8:1::1", "10.96.1.300", "fe80::1"])
cidr_text = st.sampled_from(["10.96.1.0/24", "10.96.0.0/16", "10.96.2.0/25", "192.0.2.0/30", "2001:db8::/64",
                             "10.0.0.1/32", "0.0.0.0/0"])


@st.composite
def services(draw: st.DrawFn) -> ClusterSnapshot:
    found = []
    for i in range(draw(st.integers(0, 6))):
        found.append(service(draw(st.sampled_from(NAMESPACES)), f"s{i}", *draw(st.lists(vip_text, max_size=3)),
                             port=draw(st.sampled_from([80, 443]))))
    return cluster(*found)


@st.composite
def allow_lists(draw: st.DrawFn) -> VipAllowList:
    global_cidrs = draw(st.none() | st.lists(cidr_text, min_size=1, max_size=3))
    entries = draw(st.dictionaries(st.sampled_from(NAMESPACES), st.lists(cidr_text, min_size=1, max_size=2),
                                   max_size=2))
    return VipAllowList(parse_cidrs(",".join(global_cidrs)) if global_cidrs else None,
                        parse_namespace_cidrs(";".join(f"{ns}={','.join(c)}" for ns, c in entries.items()))
                        if entries else ())


def allowed_to(allow_list: VipAllowList, namespace: str) -> tuple[ipaddress.IPv4Network | ipaddress.IPv6Network,
                                                                   ...]:
    """The test's own reading of the rule: the namespace's entry, else the global list (less the
    namespaces' entries), else nothing."""
    own = dict(allow_list.namespaces)
    if namespace in own:
        return own[namespace]
    reserved = [n for _, nets in allow_list.namespaces for n in nets]
    return tuple(net for g in allow_list.global_cidrs or () for net in _minus(g, reserved))


def _minus(network: ipaddress.IPv4Network | ipaddress.IPv6Network,
           reserved: list[ipaddress.IPv4Network | ipaddress.IPv6Network]
           ) -> list[ipaddress.IPv4Network | ipaddress.IPv6Network]:
    parts = [network]
    for hole in reserved:
        kept = []
        for part in parts:
            if hole.version != part.version or not part.overlaps(hole):
                kept.append(part)
            elif not hole.supernet_of(part):
                kept.extend(part.address_exclude(hole))  # type: ignore[arg-type]
        parts = kept
    return parts


@settings(max_examples=400, deadline=None)
@given(services(), allow_lists())
def test_a_vip_outside_every_cidr_allowed_to_its_owners_is_never_advertised(snapshot: ClusterSnapshot,
                                                                           allow_list: VipAllowList) -> None:
    state = decide(DecideConfig(node_name=HERE, vip_allow=allow_list), snapshot)
    for vip, advertisement in state.advertisements.items():
        for key in advertisement.services:
            assert any(vip in net for net in allowed_to(allow_list, key.namespace)), (vip, key)
    unfiltered = decide(DecideConfig(node_name=HERE), snapshot)
    refused = {(p.service, m) for p in state.problems if p.reason == "VIPNotAllowed" for m in [p.message]}
    dropped = {(key, vip) for vip, ad in unfiltered.advertisements.items() for key in ad.services
               if vip not in state.advertisements or key not in state.advertisements[vip].services}
    assert {(key, str(vip)) for key, vip in dropped} <= {(key, m.split()[1]) for key, m in refused}


@settings(max_examples=300, deadline=None)
@given(services())
def test_with_the_list_off_decide_is_unchanged_and_an_allow_everything_list_changes_nothing(
        snapshot: ClusterSnapshot) -> None:
    off = decide(DecideConfig(node_name=HERE), snapshot)
    assert decide(DecideConfig(node_name=HERE, vip_allow=None), snapshot) == off
    everything = VipAllowList(parse_cidrs("0.0.0.0/0,::/0"))
    assert decide(DecideConfig(node_name=HERE, vip_allow=everything), snapshot) == off
