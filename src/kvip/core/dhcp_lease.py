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

import enum
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

FIRST_RETRY = 4.0  # RFC 2131 §4.1: 4 s, doubled each time...
MAX_RETRY = 16.0  # ...capped lower than the RFC's 64 s: a Service waits for its address, not a laptop
REQUEST_TRIES = 4  # REQUESTING gives up (back to INIT) after this many unanswered REQUESTs
MIN_RETRY = 2.0  # RENEWING/REBINDING retransmit at half the remaining time, never more often than this
DEFAULT_LEASE = 3600  # a server that names no lease time


class Phase(enum.Enum):
    INIT = "init"
    SELECTING = "selecting"
    REQUESTING = "requesting"
    BOUND = "bound"
    RENEWING = "renewing"
    REBINDING = "rebinding"


@dataclass(frozen=True)
class Lease:
    address: ipaddress.IPv4Address
    server: ipaddress.IPv4Address
    obtained_at: float
    lease_time: int
    t1: int
    t2: int

    @property
    def renew_at(self) -> float:
        return self.obtained_at + self.t1

    @property
    def rebind_at(self) -> float:
        return self.obtained_at + self.t2

    @property
    def expires_at(self) -> float:
        return self.obtained_at + self.lease_time


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


def _backoff(state: ClientState) -> float:
    return min(state.retry * 2, MAX_RETRY)


def tick(ask: DhcpAsk, state: ClientState, now: float, xid: int) -> tuple[ClientState, DhcpMessage | None]:
    """Advance by the clock: what to send now, if anything. `xid` starts a new exchange when one begins."""
    phase, lease = state.phase, state.lease
    if lease is not None and now >= lease.expires_at:
        lost = (f"lease of {lease.address} expired: no DHCP server answered for {lease.lease_time - lease.t1}s "
                "after T1")
        return tick(ask, ClientState(lost=lost), now, xid)
    if phase is Phase.INIT:
        previous = state.lease.address if state.lease else None
        sent = discover(ask, xid, previous)
        return ClientState(Phase.SELECTING, xid, None, None, now + FIRST_RETRY, FIRST_RETRY, 1, state.lost,
                           state.renewals), sent
    if now < state.next_send and phase not in (Phase.BOUND,):
        return state, None
    if phase is Phase.SELECTING:
        return replace(state, next_send=now + _backoff(state), retry=_backoff(state), tries=state.tries + 1), \
            discover(ask, state.xid)
    if phase is Phase.REQUESTING:
        assert state.offer is not None
        if state.tries >= REQUEST_TRIES:
            return tick(ask, ClientState(lost=state.lost, renewals=state.renewals), now, xid)
        return replace(state, next_send=now + _backoff(state), retry=_backoff(state), tries=state.tries + 1), \
            request_offer(ask, state.xid, state.offer)
    assert lease is not None
    if phase is Phase.BOUND:
        if now < lease.renew_at:
            return state, None
        phase, state = Phase.RENEWING, replace(state, xid=xid)
    if phase is Phase.RENEWING and now >= lease.rebind_at:
        phase, state = Phase.REBINDING, replace(state, xid=xid)
    end = lease.rebind_at if phase is Phase.RENEWING else lease.expires_at
    wait = max((end - now) / 2, MIN_RETRY)
    return replace(state, phase=phase, next_send=min(now + wait, end), tries=state.tries + 1), \
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


def next_wakeup(state: ClientState) -> float:
    """When `tick` has something to do next."""
    if state.phase is Phase.INIT:
        return 0.0
    if state.phase is Phase.BOUND and state.lease is not None:
        return state.lease.renew_at
    if state.lease is not None:
        return min(state.next_send, state.lease.expires_at)
    return state.next_send


def held_address(state: ClientState) -> ipaddress.IPv4Address | None:
    """The address this client may use now: from BOUND until the lease expires."""
    return state.lease.address if state.lease is not None else None
