"""DHCPv6 wire format (RFC 8415, RFC 4704 FQDN), with plain values and hypothesis."""

from __future__ import annotations

import ipaddress
import struct

import pytest
from dhcp_scenes import read_or_refused
from hypothesis import given, settings
from hypothesis import strategies as st

from kvip.core.dhcp import MalformedDhcp
from kvip.core.dhcp6 import (
    NO_ADDRS_AVAIL,
    OPT_CLIENT_FQDN,
    OPT_IA_NA,
    REPLY,
    SOLICIT,
    Dhcp6Message,
    IaAddress,
    IaNa,
    Status,
    decode,
    duid_ll,
    encode,
    iaid_of,
)

MAC = bytes.fromhex("02aabbccddee")
V6 = st.integers(0, 2**128 - 1).map(ipaddress.IPv6Address)
U32 = st.integers(0, 2**32 - 1)
STATUS = st.none() | st.builds(Status, st.integers(0, 65535), st.text(max_size=20))
ADDRESSES = st.builds(IaAddress, V6, U32, U32, STATUS)
IAS = st.builds(IaNa, U32, U32, U32, st.lists(ADDRESSES, max_size=3).map(tuple), STATUS)


@given(kind=st.integers(0, 255), xid=st.integers(0, 2**24 - 1), client=st.none() | st.binary(max_size=20),
       server=st.none() | st.binary(max_size=20), ias=st.lists(IAS, max_size=2).map(tuple),
       elapsed=st.none() | st.integers(0, 65535), oro=st.lists(st.integers(0, 65535), max_size=4).map(tuple),
       preference=st.none() | st.integers(0, 255), status=STATUS,
       fqdn=st.none() | st.from_regex(r"[a-z0-9-]{1,20}(\.[a-z0-9-]{1,20}){0,2}", fullmatch=True),
       flags=st.integers(0, 7))
def test_every_message_reads_back_as_it_was_written(kind: int, xid: int, client: bytes | None, server: bytes | None,
                                                    ias: tuple[IaNa, ...], elapsed: int | None,
                                                    oro: tuple[int, ...], preference: int | None,
                                                    status: Status | None, fqdn: str | None, flags: int) -> None:
    message = Dhcp6Message(kind, xid, client, server, ias, elapsed, oro, preference, status, fqdn,
                           flags if fqdn else 0)
    assert decode(encode(message)) == message


@given(st.binary(max_size=300))
def test_garbage_is_refused_with_a_named_error_never_another_exception(data: bytes) -> None:
    read_or_refused(decode, data)


@given(st.binary(max_size=120))
def test_garbage_inside_an_ia_na_is_refused_with_a_named_error(inner: bytes) -> None:
    data = struct.pack("!I", REPLY << 24 | 7) + struct.pack("!HH", OPT_IA_NA, len(inner)) + inner
    read_or_refused(decode, data)


KNOWN = st.sampled_from([1, 2, 3, 5, 6, 7, 8, 13, 39, 82])
FIXED = {3: 12, 5: 24}  # IA_NA and IAADDR carry fixed fields before their own options


def _framed(code: int, body: bytes, children: list[bytes]) -> bytes:
    value = body + b"".join(children)
    return struct.pack("!HH", code, len(value)) + value


LEAF = st.builds(_framed, KNOWN, st.binary(max_size=30), st.just([]))
TLV = st.recursive(
    st.builds(_framed, st.one_of(KNOWN, st.integers(0, 65535)), st.binary(max_size=30), st.just([])),
    lambda inner: st.sampled_from([3, 5]).flatmap(lambda code: st.builds(
        _framed, st.just(code), st.binary(min_size=FIXED[code], max_size=FIXED[code]) | st.binary(max_size=30),
        st.lists(inner, max_size=3))),
    max_leaves=8)


@settings(max_examples=300)
@given(head=st.binary(min_size=4, max_size=4), options=st.lists(LEAF | TLV, max_size=4),
       cut=st.just(0) | st.integers(1, 6))
def test_well_framed_options_with_any_content_are_refused_with_a_named_error(head: bytes, options: list[bytes],
                                                                             cut: int) -> None:
    """Option headers that frame correctly, down into IA_NA and IAADDR, around contents of any size."""
    data = head + b"".join(options)
    read_or_refused(decode, data[:len(data) - cut])


def test_a_truncated_option_is_malformed_not_read_past_the_end() -> None:
    good = encode(Dhcp6Message(REPLY, 5, duid_ll(MAC), b"srv", (IaNa(1, 10, 20, (IaAddress(
        ipaddress.IPv6Address("2001:db8::5"), 30, 60),)),)))
    with pytest.raises(MalformedDhcp, match="runs past"):
        decode(good[:-1])
    with pytest.raises(MalformedDhcp, match="IAADDR option of 23 bytes"):
        decode(struct.pack("!I", REPLY << 24) + struct.pack("!HH", OPT_IA_NA, 12 + 4 + 23) + bytes(12)
               + struct.pack("!HH", 5, 23) + bytes(23))
    with pytest.raises(MalformedDhcp, match="shorter than a DHCPv6 header"):
        decode(b"\x07\x00")


def test_the_header_is_the_type_and_a_24_bit_transaction_id() -> None:
    data = encode(Dhcp6Message(SOLICIT, 0xABCDEF))
    assert data == b"\x01\xab\xcd\xef"
    assert encode(Dhcp6Message(SOLICIT, 0x1ABCDEF))[1:4] == b"\xab\xcd\xef"  # never spills into the type


def test_the_client_id_is_a_duid_ll_of_the_mac_and_the_iaid_its_last_four_bytes() -> None:
    assert duid_ll(MAC) == bytes.fromhex("00030001") + MAC
    assert iaid_of(MAC) == 0xBBCCDDEE


def test_the_host_name_goes_out_as_a_dns_wire_partial_name_with_the_no_update_flag() -> None:
    data = encode(Dhcp6Message(SOLICIT, 1, fqdn="web.lab", fqdn_flags=4))
    assert data[4:] == struct.pack("!HH", OPT_CLIENT_FQDN, 9) + b"\x04\x03web\x03lab"


def test_statuses_at_the_message_ia_and_address_level_are_read() -> None:
    refused = Dhcp6Message(REPLY, 9, ia_na=(IaNa(3, status=Status(NO_ADDRS_AVAIL, "pool exhausted")),),
                           status=Status(NO_ADDRS_AVAIL, "none"))
    back = decode(encode(refused))
    assert back.ia_na[0].status == Status(NO_ADDRS_AVAIL, "pool exhausted") and back.status is not None


def test_an_unknown_option_is_skipped() -> None:
    data = encode(Dhcp6Message(REPLY, 1, server_id=b"s")) + struct.pack("!HH", 9999, 3) + b"abc"
    assert decode(data) == Dhcp6Message(REPLY, 1, server_id=b"s")
