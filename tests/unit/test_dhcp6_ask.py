"""What a `::` Service asks of DHCPv6, and decide() with its lease: alone and with `0.0.0.0`."""

from __future__ import annotations

import ipaddress

from dhcp_scenes import CONFIG, KEY, LED, with_endpoint

from kvip.core.decide import decide
from kvip.core.dhcp import DhcpLease, dhcp_ask, lease_annotations
from kvip.core.model import ServiceView

V4, V6 = ipaddress.IPv4Address("192.0.2.7"), ipaddress.IPv6Address("2001:db8::5")


def svc(ips: str = "::", **annotations: str) -> ServiceView:
    return ServiceView(KEY, uid="0123456789abcdef", annotations={"kube-vip.io/loadbalancerIPs": ips, **annotations})


def test_a_v6_only_service_asks_for_a_dhcpv6_client_on_its_macvlan() -> None:
    ask, problems = dhcp_ask(svc("::", **{"kube-vip.io/requestedIP": "2001:db8::5",
                                          "kube-vip.io/loadbalancerHostname": "web"}))
    assert problems == () and ask is not None
    assert ask.families == {6} and ask.requested6 == V6 and ask.requested is None and ask.hostname == "web"
    assert ask.interface == "vip-01234567"


def test_kube_vips_dual_stack_request_asks_for_both_addresses_on_one_macvlan() -> None:
    ask, problems = dhcp_ask(svc("0.0.0.0,::", **{"kube-vip.io/requestedIP": "192.0.2.7,2001:db8::5"}))
    assert problems == () and ask is not None
    assert ask.families == {4, 6} and (ask.requested, ask.requested6) == (V4, V6)


def test_a_requested_ip_of_a_family_not_asked_is_an_event_and_not_requested() -> None:
    ask, problems = dhcp_ask(svc("::", **{"kube-vip.io/requestedIP": "192.0.2.7"}))
    assert ask is not None and ask.requested is None and ask.requested6 is None
    assert [p.reason for p in problems] == ["InvalidAnnotation"]
    assert "192.0.2.7" in problems[0].message and "IPv6" in problems[0].message
    ask, problems = dhcp_ask(svc("::", **{"kube-vip.io/requestedIP": "ff02::1"}))
    assert ask is not None and ask.requested6 is None and [p.reason for p in problems] == ["InvalidAnnotation"]


def test_the_annotations_written_back_list_the_v4_lease_then_the_v6_one() -> None:
    ask = dhcp_ask(svc("0.0.0.0,::"))[0]
    assert ask is not None
    notes = lease_annotations(ask, DhcpLease(V4, ask.interface, address6=V6))
    assert notes["kube-vip.io/requestedIP"] == "192.0.2.7,2001:db8::5"
    assert lease_annotations(ask, DhcpLease(None, ask.interface, address6=V6))["kube-vip.io/requestedIP"] == str(V6)


def test_a_led_v6_service_waits_for_its_lease_then_is_advertised_on_its_macvlan() -> None:
    snapshot = with_endpoint(svc())
    waiting = decide(CONFIG, snapshot, LED)
    assert waiting.decisions[KEY].reason == "dhcp-pending" and not waiting.advertisements
    assert not waiting.problems
    leased = decide(CONFIG, snapshot, LED, dhcp={KEY: DhcpLease(None, "vip-01234567", address6=V6)})
    assert leased.decisions[KEY].advertised and leased.decisions[KEY].vips == (V6,)
    assert leased.advertisements[V6].interface == "vip-01234567"


def test_a_dual_service_advertises_each_lease_as_it_comes() -> None:
    snapshot = with_endpoint(svc("0.0.0.0,::"))
    half = decide(CONFIG, snapshot, LED, dhcp={KEY: DhcpLease(V4, "vip-01234567")})
    assert half.decisions[KEY].vips == (V4,)
    both = decide(CONFIG, snapshot, LED, dhcp={KEY: DhcpLease(V4, "vip-01234567", address6=V6)})
    assert both.decisions[KEY].vips == (V4, V6) and set(both.advertisements) == {V4, V6}
    assert {a.interface for a in both.advertisements.values()} == {"vip-01234567"}
