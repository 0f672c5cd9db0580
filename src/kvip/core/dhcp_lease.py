"""The DHCP client's lease state machine (RFC 2131 §4.4), pure: every function takes `now` and returns the
next state and the message to send, so timers, retransmission and expiry are tested with plain numbers.

INIT → (DISCOVER) SELECTING → (OFFER; REQUEST) REQUESTING → (ACK) BOUND → at T1 RENEWING → at T2
REBINDING → at expiry INIT again, the address gone. A NAK anywhere sends the client back to INIT.

One deviation, and why: kvip's client socket has no address of its own (the leased address may live on
`lo` or in a routing table, not on the macvlan), so it cannot receive the unicast reply RFC 2131 asks a
server to send to `ciaddr`. RENEWING and REBINDING therefore send the REQUEST broadcast with the leased
address in option 50 and `ciaddr` zero, the broadcast flag set (the form kube-vip's client also uses to
rebind); RENEWING accepts the answer of the leasing server only, REBINDING any server's.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, replace

from kvip.core.dhcp import (
    ACK,
    ASKED_PARAMETERS,
    BOOTREPLY,
    BOOTREQUEST,
    BROADCAST_FLAG,
    DISCOVER,
    NAK,
    OFFER,
    RELEASE,
    REQUEST,
    DhcpAsk,
    DhcpMessage,
)
from kvip.core.dhcp_timers import (
    REQUEST_TRIES,
    LeaseTimers,
    Phase,
    expired,
    extension_phase,
    extension_resend_at,
    next_wakeup,
    retransmitted,
)

__all__ = ["ClientState", "Lease", "Phase", "next_wakeup", "receive", "release", "tick"]

FIRST_RETRY = 4.0  # RFC 2131 §4.1: 4 s, doubled each time (capped lower than the RFC's 64 s: dhcp_timers)
DEFAULT_LEASE = 3600  # a server that names no lease time


@dataclass(frozen=True)
class Lease(LeaseTimers):
    address: ipaddress.IPv4Address
    server: ipaddress.IPv4Address
    obtained_at: float
    lease_time: int
    t1: int
    t2: int

    @property
    def lifetime(self) -> int:
        return self.lease_time

    @property
    def server_name(self) -> str:
        return str(self.server)


@dataclass(frozen=True)
class ClientState:
    phase: Phase = Phase.INIT
    xid: int = 0
    lease: Lease | None = None  # held in BOUND, RENEWING, REBINDING
    offer: DhcpMessage | None = None  # the OFFER being requested (REQUESTING)
    next_send: float = 0.0  # when the current message is (re)sent
    retry: float = FIRST_RETRY
    tries: int = 0
    lost: str | None = None  # why the last lease was lost (until a new one is bound)
    renewals: int = 0


def lease_from_ack(ack: DhcpMessage, now: float) -> Lease:
    """A lease from an ACK; T1 and T2 default to 1/2 and 7/8 of the lease (RFC 2131 §4.4.5), and a
    server's T1/T2 out of order are replaced by those defaults."""
    total = ack.lease_time if ack.lease_time else DEFAULT_LEASE
    t1 = ack.t1 if ack.t1 is not None and 0 < ack.t1 < total else total // 2
    t2 = ack.t2 if ack.t2 is not None and t1 < ack.t2 < total else max(t1, total * 7 // 8)
    server = ack.server_id if ack.server_id is not None else ipaddress.IPv4Address(0)
    return Lease(ack.yiaddr, server, now, total, t1, t2)


def _message(ask: DhcpAsk, xid: int, kind: int, **fields: object) -> DhcpMessage:
    return DhcpMessage(op=BOOTREQUEST, xid=xid, chaddr=ask.mac, message_type=kind, flags=BROADCAST_FLAG,
                       hostname=ask.hostname, client_id=ask.client_id, parameters=ASKED_PARAMETERS,
                       **fields)  # type: ignore[arg-type]


def discover(ask: DhcpAsk, xid: int, previous: ipaddress.IPv4Address | None = None) -> DhcpMessage:
    """DISCOVER, suggesting the address held last (or `kube-vip.io/requestedIP`): RFC 2131 §4.4.1."""
    return _message(ask, xid, DISCOVER, requested_ip=previous or ask.requested)


def request_offer(ask: DhcpAsk, xid: int, offer: DhcpMessage) -> DhcpMessage:
    return _message(ask, xid, REQUEST, requested_ip=offer.yiaddr, server_id=offer.server_id)


def request_extension(ask: DhcpAsk, xid: int, lease: Lease) -> DhcpMessage:
    return _message(ask, xid, REQUEST, requested_ip=lease.address)


def release(ask: DhcpAsk, xid: int, state: ClientState) -> DhcpMessage | None:
    """DHCPRELEASE of the lease held (None: nothing held)."""
    if state.lease is None:
        return None
    return DhcpMessage(op=BOOTREQUEST, xid=xid, chaddr=ask.mac, message_type=RELEASE, ciaddr=state.lease.address,
                       server_id=state.lease.server, client_id=ask.client_id)


def tick(ask: DhcpAsk, state: ClientState, now: float, xid: int) -> tuple[ClientState, DhcpMessage | None]:
    """Advance by the clock: what to send now, if anything. `xid` starts a new exchange when one begins."""
    phase, lease = state.phase, state.lease
    if lease is not None and now >= lease.expires_at:
        return tick(ask, ClientState(lost=expired(lease, "DHCP")), now, xid)
    if phase is Phase.INIT:
        previous = state.lease.address if state.lease else None
        sent = discover(ask, xid, previous)
        return ClientState(Phase.SELECTING, xid, None, None, now + FIRST_RETRY, FIRST_RETRY, 1, state.lost,
                           state.renewals), sent
    if now < state.next_send and phase not in (Phase.BOUND,):
        return state, None
    if phase is Phase.SELECTING:
        return retransmitted(state, now), discover(ask, state.xid)
    if phase is Phase.REQUESTING:
        assert state.offer is not None
        if state.tries >= REQUEST_TRIES:
            return tick(ask, ClientState(lost=state.lost, renewals=state.renewals), now, xid)
        return retransmitted(state, now), request_offer(ask, state.xid, state.offer)
    assert lease is not None
    now_in = extension_phase(phase, lease, now)
    if now_in is None:
        return state, None
    if now_in is not phase:  # at T1 or T2 a new exchange begins
        state = replace(state, phase=now_in, xid=xid)
    return replace(state, next_send=extension_resend_at(now_in, lease, now), tries=state.tries + 1), \
        request_extension(ask, state.xid, lease)


def receive(ask: DhcpAsk, state: ClientState, message: DhcpMessage, now: float) -> ClientState:
    """Take a reply into account; replies to another exchange or another client change nothing."""
    if message.op != BOOTREPLY or message.xid != state.xid or message.chaddr != ask.mac:
        return state
    kind, phase = message.message_type, state.phase
    if phase is Phase.SELECTING and kind == OFFER and message.server_id is not None:
        return replace(state, phase=Phase.REQUESTING, offer=message, next_send=now, retry=FIRST_RETRY, tries=0)
    if phase not in (Phase.REQUESTING, Phase.RENEWING, Phase.REBINDING):
        return state
    if phase is Phase.RENEWING and state.lease is not None and message.server_id not in (None, state.lease.server):
        return state  # RENEWING talks to the leasing server only
    if phase is Phase.REQUESTING and state.offer is not None and message.server_id not in (None,
                                                                                         state.offer.server_id):
        return state  # another server's answer to a REQUEST that named this one
    if kind == ACK and not message.yiaddr.is_unspecified:
        renewed = state.lease is not None
        return ClientState(Phase.BOUND, state.xid, lease_from_ack(message, now), None, 0.0, FIRST_RETRY, 0, None,
                           state.renewals + int(renewed))
    if kind == NAK:
        held = state.lease.address if state.lease else (state.offer.yiaddr if state.offer else None)
        return ClientState(Phase.INIT, state.xid, None, None, now, FIRST_RETRY, 0,
                           f"the DHCP server refused {held} (DHCPNAK)", state.renewals)
    return state
