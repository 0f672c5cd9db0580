"""The lease state machine with a plain clock: INIT → SELECTING → REQUESTING → BOUND → RENEWING →
REBINDING → expiry, NAK, retransmission, and the DHCP steps of decide()."""

from __future__ import annotations

import ipaddress

from dhcp_scenes import CONFIG, KEY, LED, with_endpoint

from kvip.core.decide import DecideConfig, decide
from kvip.core.dhcp import (
    ACK,
    BOOTREPLY,
    DISCOVER,
    NAK,
    OFFER,
    RELEASE,
    REQUEST,
    DhcpAsk,
    DhcpLease,
    DhcpMessage,
)
from kvip.core.dhcp_lease import ClientState, Phase, next_wakeup, receive, release, tick
from kvip.core.model import (
    ClusterSnapshot,
    EndpointView,
    Leadership,
    ServiceKey,
    ServiceView,
)

ASK = DhcpAsk(bytes.fromhex("02aabbccddee"), "vip-web", ipaddress.IPv4Address("10.0.0.7"), "web")
SERVER = ipaddress.IPv4Address("10.0.0.1")
ADDRESS = ipaddress.IPv4Address("10.0.0.7")


def reply(state: ClientState, kind: int, *, server: ipaddress.IPv4Address = SERVER, lease: int = 100,
          t1: int | None = None, t2: int | None = None) -> DhcpMessage:
    return DhcpMessage(BOOTREPLY, state.xid, ASK.mac, kind, yiaddr=ADDRESS, server_id=server, lease_time=lease,
                       t1=t1, t2=t2)


def bound(now: float = 0.0, **kwargs: int) -> ClientState:
    state, sent = tick(ASK, ClientState(), now, xid=1)
    assert sent is not None and sent.message_type == DISCOVER and sent.requested_ip == ASK.requested
    state = receive(ASK, state, reply(state, OFFER), now)
    state, sent = tick(ASK, state, now, xid=2)
    assert sent is not None and sent.message_type == REQUEST and sent.server_id == SERVER
    state = receive(ASK, state, reply(state, ACK, **kwargs), now)
    assert state.phase is Phase.BOUND
    return state


def test_a_lease_is_bound_after_discover_offer_request_ack_and_renewed_at_t1() -> None:
    state = bound(lease=100)
    assert state.lease is not None and state.lease.address == ADDRESS
    assert next_wakeup(state) == 50  # T1 = lease / 2
    assert tick(ASK, state, 49.9, xid=3) == (state, None)
    state, sent = tick(ASK, state, 50, xid=3)
    assert state.phase is Phase.RENEWING and sent is not None and sent.requested_ip == ADDRESS
    state = receive(ASK, state, reply(state, ACK), 51)
    assert state.phase is Phase.BOUND and state.lease is not None and state.lease.expires_at == 151
    assert state.renewals == 1


def test_renewing_turns_to_rebinding_at_t2_and_the_address_goes_at_expiry_saying_why() -> None:
    state = bound(lease=100, t1=10, t2=20)
    state, _ = tick(ASK, state, 10, xid=3)
    assert state.phase is Phase.RENEWING
    state, _ = tick(ASK, state, next_wakeup(state), xid=4)
    state, _ = tick(ASK, state, 20, xid=5)
    assert state.phase is Phase.REBINDING and state.lease is not None  # still usable
    other = reply(state, ACK, server=ipaddress.IPv4Address("10.0.0.2"))
    rebound = receive(ASK, state, other, 21)  # REBINDING takes any server's answer
    assert rebound.phase is Phase.BOUND
    while state.lease is not None:
        assert next_wakeup(state) <= 100
        state, sent = tick(ASK, state, max(next_wakeup(state), 21), xid=6)
    assert state.phase is Phase.SELECTING and sent is not None and sent.message_type == DISCOVER
    assert state.lost is not None and "10.0.0.7 expired" in state.lost


def test_renewing_ignores_another_servers_answer() -> None:
    state, _ = tick(ASK, bound(lease=100), 50, xid=3)
    assert receive(ASK, state, reply(state, ACK, server=ipaddress.IPv4Address("10.0.0.2")), 51) == state


def test_a_nak_sends_the_client_back_to_init_without_the_address() -> None:
    state, _ = tick(ASK, bound(lease=100), 50, xid=3)
    state = receive(ASK, state, reply(state, NAK), 51)
    assert state.phase is Phase.INIT and state.lease is None and "DHCPNAK" in (state.lost or "")


def test_replies_to_another_exchange_or_client_change_nothing() -> None:
    state, _ = tick(ASK, ClientState(), 0, xid=1)
    assert receive(ASK, state, DhcpMessage(BOOTREPLY, 99, ASK.mac, OFFER, server_id=SERVER), 0) == state
    assert receive(ASK, state, DhcpMessage(BOOTREPLY, 1, b"\x02" * 6, OFFER, server_id=SERVER), 0) == state


def test_an_unanswered_discover_is_retransmitted_with_backoff() -> None:
    state, _ = tick(ASK, ClientState(), 0, xid=1)
    sends = []
    now = 0.0
    for _ in range(5):
        now = next_wakeup(state)
        state, sent = tick(ASK, state, now, xid=9)
        assert sent is not None and sent.xid == 1
        sends.append(now)
    gaps = [b - a for a, b in zip([0.0, *sends], sends)]
    assert gaps == [4, 8, 16, 16, 16]


def test_release_names_the_leased_address_and_server() -> None:
    sent = release(ASK, 5, bound())
    assert sent is not None and sent.message_type == RELEASE and sent.ciaddr == ADDRESS and sent.server_id == SERVER
    assert release(ASK, 5, ClientState()) is None


# -- decide() with DHCP ----------------------------------------------------------------------

SERVICE = ServiceView(KEY, uid="0123456789abcdef", load_balancer_ip="0.0.0.0")
SNAPSHOT = with_endpoint(SERVICE)


def test_a_led_dhcp_service_waits_for_its_lease_then_is_advertised_on_its_macvlan() -> None:
    waiting = decide(CONFIG, SNAPSHOT, LED)
    assert waiting.decisions[KEY].reason == "dhcp-pending" and not waiting.advertisements
    assert KEY in waiting.eligible  # so this node contends for the Service's Lease
    assert not [p for p in waiting.problems if p.reason == "InvalidVIP"]  # 0.0.0.0 asks DHCP
    leased = decide(CONFIG, SNAPSHOT, LED, dhcp={KEY: DhcpLease(ADDRESS, "vip-01234567")})
    assert leased.decisions[KEY].advertised and leased.decisions[KEY].vips == (ADDRESS,)
    assert leased.advertisements[ADDRESS].interface == "vip-01234567"


def test_a_dhcp_service_led_elsewhere_runs_no_client_here() -> None:
    assert decide(CONFIG, SNAPSHOT, Leadership()).decisions[KEY].reason == "not-leader"


def test_a_lost_lease_withdraws_the_address_with_a_reason() -> None:
    state = decide(CONFIG, SNAPSHOT, LED, dhcp={KEY: DhcpLease(None, "vip-01234567", "lease of 10.0.0.7 expired")})
    assert not state.advertisements and state.decisions[KEY].reason == "dhcp-pending"
    assert [p.message for p in state.problems if p.reason == "DHCPLeaseLost"] == ["lease of 10.0.0.7 expired"]


def test_dhcp_without_an_election_is_refused_for_that_service_only() -> None:
    other = ServiceView(ServiceKey("default", "static"), load_balancer_ip="192.0.2.1")
    snapshot = ClusterSnapshot({KEY: SERVICE, other.key: other},
                               {k: (EndpointView(("10.244.0.5",), "node-a"),) for k in (KEY, other.key)})
    state = decide(DecideConfig("node-a"), snapshot)
    assert [p.reason for p in state.problems] == ["DHCPNeedsElection"]
    assert state.decisions[other.key].advertised and state.decisions[KEY].reason == "no-vip"


def test_a_malformed_hwaddr_is_an_event_for_that_service_and_no_client() -> None:
    bad = ServiceView(KEY, uid="u", load_balancer_ip="0.0.0.0", annotations={"kube-vip.io/hwaddr": "nope"})
    state = decide(CONFIG, ClusterSnapshot({KEY: bad}, SNAPSHOT.endpoints), LED)
    assert [p.reason for p in state.problems] == ["InvalidAnnotation"]
    assert state.decisions[KEY].reason == "no-vip"
