"""The DHCPv6 lease state machine with a plain clock: Solicit → Advertise → Request → Reply → BOUND →
Renew at T1 → Rebind at T2 → expiry; refusals, retransmission, other clients' messages, Release."""

from __future__ import annotations

import ipaddress

from kvip.core.dhcp import DhcpAsk
from kvip.core.dhcp6 import (
    ADVERTISE,
    NO_BINDING,
    REBIND,
    RELEASE,
    RENEW,
    REPLY,
    REQUEST,
    SOLICIT,
    Dhcp6Message,
    IaAddress,
    IaNa,
    Status,
    duid_ll,
    iaid_of,
)
from kvip.core.dhcp6_lease import Client6State, next_wakeup, receive, release, tick
from kvip.core.dhcp_lease import Phase

MAC = bytes.fromhex("02aabbccddee")
ASK = DhcpAsk(MAC, "vip-web", hostname="web", families=frozenset({6}),
              requested6=ipaddress.IPv6Address("2001:db8::99"))  # what the annotation asks
SERVER, OTHER = b"\x00\x01server", b"\x00\x01other"
ADDRESS = ipaddress.IPv6Address("2001:db8::7")  # what the server hands out


def answer(state: Client6State, kind: int, *, server: bytes = SERVER, t1: int = 50, t2: int = 80,
           preferred: int = 100, valid: int = 120, address: ipaddress.IPv6Address = ADDRESS,
           status: Status | None = None, iaid: int = iaid_of(MAC)) -> Dhcp6Message:
    ia = IaNa(iaid, t1, t2, (IaAddress(address, preferred, valid),), status)
    return Dhcp6Message(kind, state.xid, duid_ll(MAC), server, (ia,))


def bound(now: float = 0.0, **kwargs: int) -> Client6State:
    state, sent = tick(ASK, Client6State(), now, xid=1)
    assert sent is not None and sent.kind == SOLICIT and sent.server_id is None
    assert sent.client_id == duid_ll(MAC) and sent.fqdn == "web"
    assert [a.address for a in sent.ia_na[0].addresses] == [ASK.requested6]  # kube-vip.io/requestedIP
    state = receive(ASK, state, answer(state, ADVERTISE), now)
    assert state.phase is Phase.REQUESTING
    state, sent = tick(ASK, state, now, xid=2)
    assert sent is not None and sent.kind == REQUEST and sent.server_id == SERVER and sent.xid == 2
    state = receive(ASK, state, answer(state, REPLY, **kwargs), now)
    assert state.phase is Phase.BOUND
    return state


def test_a_lease_is_bound_with_the_servers_t1_t2_and_lifetimes() -> None:
    state = bound(10.0)
    assert state.lease is not None and state.lease.address == ADDRESS and state.lease.server_id == SERVER
    assert (state.lease.renew_at, state.lease.rebind_at, state.lease.expires_at) == (60.0, 90.0, 130.0)
    assert next_wakeup(state) == 60.0 and tick(ASK, state, 59.0, xid=9) == (state, None)


def test_renew_at_t1_to_the_leasing_server_then_rebind_at_t2_to_any_then_expiry_says_why() -> None:
    state = bound()
    state, sent = tick(ASK, state, 50.0, xid=3)
    assert state.phase is Phase.RENEWING and sent is not None and sent.kind == RENEW
    assert sent.server_id == SERVER and sent.xid == 3 and sent.ia_na[0].addresses[0].address == ADDRESS
    assert receive(ASK, state, answer(state, REPLY, server=OTHER), 51.0) == state  # Renew names one server
    state, sent = tick(ASK, state, 80.0, xid=4)
    assert state.phase is Phase.REBINDING and sent is not None and sent.kind == REBIND and sent.server_id is None
    assert state.lease is not None and state.lease.address == ADDRESS  # still usable until the valid lifetime
    state, sent = tick(ASK, state, 120.0, xid=5)
    assert state.lease is None and state.lost is not None and "expired" in state.lost and str(ADDRESS) in state.lost
    assert state.phase is Phase.SELECTING and sent is not None and sent.kind == SOLICIT
    assert sent.ia_na[0].addresses[0].address == ADDRESS  # asks again for the address it held


def test_a_rebind_answered_by_another_server_keeps_the_address() -> None:
    state, _ = tick(ASK, bound(), 80.0, xid=4)
    state = receive(ASK, state, answer(state, REPLY, server=OTHER, valid=300, preferred=200, t1=0, t2=0), 81.0)
    assert state.phase is Phase.BOUND and state.lease is not None and state.lease.server_id == OTHER
    assert state.renewals == 1
    # T1/T2 of 0 leave them to the client: 1/2 and 4/5 of the preferred lifetime
    assert (state.lease.t1, state.lease.t2) == (100, 160)


def test_no_binding_sends_the_client_back_to_solicit_without_the_address() -> None:
    state, _ = tick(ASK, bound(), 50.0, xid=3)
    state = receive(ASK, state, answer(state, REPLY, status=Status(NO_BINDING, "unknown")), 51.0)
    assert state.phase is Phase.INIT and state.lease is None
    assert state.lost is not None and "refused" in state.lost and "unknown" in state.lost
    state, sent = tick(ASK, state, 51.0, xid=6)
    assert sent is not None and sent.kind == SOLICIT and sent.ia_na[0].addresses[0].address == ADDRESS


def test_a_reply_to_a_renew_that_does_not_speak_of_our_ia_keeps_the_lease() -> None:
    state, _ = tick(ASK, bound(), 50.0, xid=3)
    silent = Dhcp6Message(REPLY, state.xid, duid_ll(MAC), SERVER)
    assert receive(ASK, state, silent, 51.0) == state


def test_messages_for_another_exchange_or_client_or_without_a_server_change_nothing() -> None:
    state, _ = tick(ASK, Client6State(), 0.0, xid=1)
    offer = answer(state, ADVERTISE)
    assert receive(ASK, state, Dhcp6Message(ADVERTISE, 2, offer.client_id, SERVER, offer.ia_na), 0.1) == state
    assert receive(ASK, state, Dhcp6Message(ADVERTISE, 1, duid_ll(b"\x02" * 6), SERVER, offer.ia_na), 0.1) == state
    assert receive(ASK, state, Dhcp6Message(ADVERTISE, 1, offer.client_id, None, offer.ia_na), 0.1) == state
    assert receive(ASK, state, answer(state, ADVERTISE, iaid=7), 0.1) == state  # another IA
    assert receive(ASK, state, answer(state, ADVERTISE, valid=0), 0.1) == state  # no usable address
    assert receive(ASK, state, answer(state, ADVERTISE, preferred=200, valid=100), 0.1) == state  # RFC 8415 §21.6
    assert receive(ASK, state, answer(state, ADVERTISE, t1=90, t2=80), 0.1) == state  # RFC 8415 §21.4


def test_an_unanswered_solicit_is_retransmitted_with_backoff_and_the_elapsed_time() -> None:
    state, _ = tick(ASK, Client6State(), 0.0, xid=1)
    sends = []
    for now in (0.5, 1.0, 2.0, 3.0, 5.0, 7.0):
        state, sent = tick(ASK, state, now, xid=99)
        if sent is not None:
            sends.append((now, sent.xid, sent.elapsed))
    assert sends == [(1.0, 1, 100), (3.0, 1, 300), (7.0, 1, 700)]  # 1, 2, 4 s apart; the same exchange


def test_an_unanswered_request_gives_up_and_solicits_again() -> None:
    state, _ = tick(ASK, Client6State(), 0.0, xid=1)
    state = receive(ASK, state, answer(state, ADVERTISE), 0.0)
    kinds = []
    for now in range(40):
        state, sent = tick(ASK, state, float(now), xid=100 + now)
        kinds += [sent.kind] if sent is not None else []
    assert kinds[:5] == [REQUEST] * 4 + [SOLICIT]


def test_release_names_the_leased_address_and_server_and_nothing_when_none_is_held() -> None:
    state = bound()
    sent = release(ASK, 77, state)
    assert sent is not None and sent.kind == RELEASE and sent.server_id == SERVER and sent.xid == 77
    assert sent.ia_na[0].iaid == iaid_of(MAC) and sent.ia_na[0].addresses[0].address == ADDRESS
    assert release(ASK, 77, Client6State()) is None
