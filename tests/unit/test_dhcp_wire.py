"""DHCP wire format (RFC 2131/2132) and what a Service asks for, with plain values."""

from __future__ import annotations

import ipaddress
import struct

import pytest
from dhcp_scenes import read_or_refused
from hypothesis import given
from hypothesis import strategies as st

from kvip.core.dhcp import (
    ACK,
    BOOTREPLY,
    DISCOVER,
    HEADER,
    MAGIC,
    DhcpMessage,
    MalformedDhcp,
    decode,
    derived_mac,
    dhcp_ask,
    encode,
)
from kvip.core.model import ServiceKey, ServiceView

KEY = ServiceKey("default", "web")
V4 = st.integers(0, 2**32 - 1).map(ipaddress.IPv4Address)


def svc(lb_ip: str = "0.0.0.0", uid: str = "0123456789abcdef", **annotations: str) -> ServiceView:
    return ServiceView(KEY, uid=uid, load_balancer_ip=lb_ip, annotations=annotations)


@given(xid=st.integers(0, 2**32 - 1), mac=st.binary(min_size=6, max_size=6), kind=st.integers(1, 8),
       requested=st.none() | V4, server=st.none() | V4, lease=st.none() | st.integers(0, 2**32 - 1),
       t1=st.none() | st.integers(0, 2**32 - 1), host=st.none() | st.from_regex(r"[a-z0-9]{1,40}", fullmatch=True),
       client_id=st.none() | st.binary(min_size=1, max_size=40))
def test_every_message_reads_back_as_it_was_written(xid: int, mac: bytes, kind: int, requested: ipaddress.IPv4Address
                                                    | None, server: ipaddress.IPv4Address | None, lease: int | None,
                                                    t1: int | None, host: str | None, client_id: bytes | None) -> None:
    message = DhcpMessage(BOOTREPLY, xid, mac, kind, flags=0x8000, yiaddr=ipaddress.IPv4Address("10.0.0.9"),
                          requested_ip=requested, server_id=server, lease_time=lease, t1=t1, hostname=host,
                          client_id=client_id, parameters=b"\x01\x03")
    assert decode(encode(message)) == message


@given(st.binary(max_size=400))
def test_garbage_is_refused_with_a_named_error_never_another_exception(data: bytes) -> None:
    read_or_refused(decode, data)


def test_a_truncated_option_is_malformed_not_read_past_the_end() -> None:
    good = encode(DhcpMessage(BOOTREPLY, 1, b"\x02" * 6, ACK, lease_time=60))
    with pytest.raises(MalformedDhcp, match="runs past"):
        decode(good[:-3] + b"\xff")  # the lease-time option now claims 4 bytes where 2 remain + END
    with pytest.raises(MalformedDhcp, match="not a 32-bit time"):
        decode(HEADER.pack(2, 1, 6, 0, 1, 0, 0, *(b"\0" * 4,) * 4, b"\0" * 16, b"", b"") + MAGIC
               + bytes((53, 1, ACK, 51, 2, 0, 60, 255)))


def test_a_discover_carries_the_options_a_server_reads() -> None:
    raw = encode(DhcpMessage(1, 7, bytes.fromhex("02aabbccddee"), DISCOVER, requested_ip=ipaddress.IPv4Address(
        "10.0.0.5"), hostname="web", client_id=b"\x01" + bytes.fromhex("02aabbccddee"), parameters=b"\x01\x033:;"))
    assert raw[HEADER.size:HEADER.size + 4] == MAGIC
    assert struct.unpack_from("!I", raw, 4)[0] == 7
    options = raw[HEADER.size + 4:]
    for code, value in ((53, b"\x01"), (50, bytes((10, 0, 0, 5))), (12, b"web"), (61, b"\x01\x02\xaa\xbb\xcc\xdd\xee")):
        assert bytes((code, len(value))) + value in options


@given(st.text(min_size=1, max_size=40))
def test_the_mac_is_stable_per_uid_unicast_and_locally_administered(uid: str) -> None:
    mac = derived_mac(uid)
    assert mac == derived_mac(uid) != derived_mac(uid + "x")
    assert mac[0] & 0x01 == 0 and mac[0] & 0x02 == 0x02


def test_a_service_asking_for_0000_gets_a_client_named_and_addressed_like_kube_vips() -> None:
    ask, problems = dhcp_ask(svc())
    assert problems == () and ask is not None
    assert ask.interface == "vip-01234567" and ask.mac == derived_mac("0123456789abcdef")
    ask, _ = dhcp_ask(svc(**{"kube-vip.io/hwaddr": "00:11:22:33:44:55", "kube-vip.io/macvlanName": "dhcp-web",
                             "kube-vip.io/requestedIP": "192.0.2.7", "kube-vip.io/loadbalancerHostname": "web"}))
    assert ask is not None
    assert (ask.mac.hex(":"), ask.interface, str(ask.requested), ask.hostname) == \
        ("00:11:22:33:44:55", "dhcp-web", "192.0.2.7", "web")
    annotated = ServiceView(KEY, uid="u", annotations={"kube-vip.io/loadbalancerIPs": "0.0.0.0"})
    assert dhcp_ask(annotated)[0] is not None
    assert dhcp_ask(svc("192.0.2.1")) == (None, ())


@pytest.mark.parametrize("mac", ["zz:11:22:33:44:55", "01:00:5e:00:00:01", "00:00:00:00:00:00", "0011.2233.4455"])
def test_a_malformed_or_multicast_mac_refuses_dhcp_for_that_service_only(mac: str) -> None:
    ask, problems = dhcp_ask(svc(**{"kube-vip.io/hwaddr": mac}))
    assert ask is None
    assert [p.reason for p in problems] == ["InvalidAnnotation"] and "hwaddr" in problems[0].message


def test_a_requested_ip_of_the_wrong_family_is_reported_and_not_requested() -> None:
    ask, problems = dhcp_ask(svc(**{"kube-vip.io/requestedIP": "2001:db8::5"}))
    assert ask is not None and ask.requested is None
    assert [p.reason for p in problems] == ["InvalidAnnotation"] and "IPv4" in problems[0].message
    # kube-vip's dual-stack form (the IPv4 lease, then the IPv6 one): tests/unit/test_dhcp6_ask.py
