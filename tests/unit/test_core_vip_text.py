"""Where a VIP's text stops being read: the 45-character bound is the longest IPv6 text form, not one
character less, and an IPv4-mapped IPv6 address is refused as such (agents cannot advertise it)."""

from __future__ import annotations

import ipaddress

import pytest

from kvip.core.model import ServiceKey, ServiceView
from kvip.core.vips import MAX_VIP_CHARS, InvalidVIP, parse_vip, service_vips

LONGEST = "2001:0db8:0000:0000:0000:0000:255.255.255.255"  # every group written out, IPv4 tail


def test_the_longest_text_form_of_an_ipv6_address_is_a_valid_vip() -> None:
    assert len(LONGEST) == MAX_VIP_CHARS
    assert parse_vip(LONGEST) == ipaddress.ip_address("2001:db8::ffff:ffff")


def test_one_character_more_than_the_longest_form_is_not_an_address() -> None:
    with pytest.raises(InvalidVIP, match="^is not an IP address$"):
        parse_vip("0" + LONGEST)


def test_an_ipv4_mapped_ipv6_vip_is_refused_as_ipv4_mapped() -> None:
    with pytest.raises(InvalidVIP, match="^is an IPv4-mapped IPv6 address$"):
        parse_vip("::ffff:10.96.0.1")


def test_empty_entries_of_the_status_ingress_list_are_skipped_silently() -> None:
    """A LoadBalancer ingress entry may carry only a hostname: its ip is then empty, not an error."""
    service = ServiceView(ServiceKey("default", "web"), ingress_ips=("", " ", "10.96.0.1"))
    assert service_vips(service) == ((ipaddress.ip_address("10.96.0.1"),), ())
