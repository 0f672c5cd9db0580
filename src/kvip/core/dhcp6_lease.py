"""The DHCPv6 client's lease state machine (RFC 8415 §18), pure, the shape of `kvip.core.dhcp_lease`:
every function takes `now` and returns the next state and the message to send.

INIT → (Solicit) SELECTING → (Advertise; Request) REQUESTING → (Reply) BOUND → at T1 (Renew) RENEWING →
at T2 (Rebind) REBINDING → at the valid lifetime's end INIT again, the address gone. A Reply refusing
the address (NoBinding, NotOnLink, NoAddrsAvail, or the address with lifetime 0) sends the client back to
INIT, asking again for the address it held.

Simplifications, and why: the first Advertise that offers an address is taken (no wait for a better
preference: a LAN of one server is the case kvip serves); retransmission starts at 1 s and doubles up
to 16 s (not SOL_MAX_RT's hour: a Service waits for its address); the Solicit is not delayed by a
random 0-1 s (one client per macvlan, no storm of hosts booting at once).
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, replace

from kvip.core.dhcp import DhcpAsk
from kvip.core.dhcp6 import (
    ADVERTISE,
    ASKED_OPTIONS,
    FQDN_NO_UPDATE,
    REBIND,
    RELEASE,
    RENEW,
    REPLY,
    REQUEST,
    SOLICIT,
    SUCCESS,
    Dhcp6Message,
    IaAddress,
    IaNa,
    duid_ll,
    iaid_of,
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

__all__ = ["Client6State", "Lease6", "next_wakeup", "receive", "release", "tick"]

FIRST_RETRY = 1.0  # RFC 8415 SOL_TIMEOUT / REQ_TIMEOUT


@dataclass(frozen=True)
class Lease6(LeaseTimers):
    address: ipaddress.IPv6Address
    server_id: bytes
    obtained_at: float
    t1: int
    t2: int
    preferred: int
    valid: int

    @property
    def lifetime(self) -> int:
        return self.valid

    @property
    def server_name(self) -> str:
        """The server's DUID, as status shows it."""
        return self.server_id.hex(":")


@dataclass(frozen=True)
class Offer6:
    address: ipaddress.IPv6Address
    server_id: bytes


@dataclass(frozen=True)
class Client6State:
    phase: Phase = Phase.INIT
    xid: int = 0
    lease: Lease6 | None = None  # held in BOUND, RENEWING, REBINDING
    offer: Offer6 | None = None  # the Advertise being requested (REQUESTING)
    started: float = 0.0  # when this exchange began (the Elapsed Time option)
    next_send: float = 0.0
    retry: float = FIRST_RETRY
    tries: int = 0
    lost: str | None = None  # why the last lease was lost (until a new one is bound)
    hint: ipaddress.IPv6Address | None = None  # the address held last: asked for again
    renewals: int = 0


def _lifetimes(ia: IaNa) -> tuple[int, int]:
    """T1 and T2 of a lease; a server's 0 leaves them to the client: 1/2 and 4/5 of the shortest
    preferred lifetime (RFC 8415 §21.4)."""
    preferred = min((a.preferred for a in ia.addresses), default=0)
    t1 = ia.t1 or preferred // 2
    t2 = ia.t2 or max(t1, preferred * 4 // 5)
    return t1, t2


def usable(ask: DhcpAsk, ia_na: tuple[IaNa, ...]) -> tuple[IaNa, IaAddress] | None:
    """Our IA and the address it offers, if the server offers one: RFC 8415 §21.4 and §21.6 discard an
    IA_NA with T1 > T2 and an address whose preferred lifetime exceeds its valid one."""
    for ia in ia_na:
        if ia.iaid != iaid_of(ask.mac) or (ia.status is not None and ia.status.code != SUCCESS):
            continue
        if ia.t1 and ia.t2 and ia.t1 > ia.t2:
            continue
        for entry in ia.addresses:
            if (entry.status is None or entry.status.code == SUCCESS) and 0 < entry.valid \
                    and entry.preferred <= entry.valid and not entry.address.is_multicast:
                return ia, entry
    return None


def refusal(ask: DhcpAsk, message: Dhcp6Message) -> str | None:
    """Why a Reply refuses our IA (None: it does not), in the server's words."""
    for status in [message.status] + [ia.status for ia in message.ia_na if ia.iaid == iaid_of(ask.mac)]:
        if status is not None and status.code != SUCCESS:
            return f"status {status.code}" + (f" ({status.message})" if status.message else "")
    return None


def _message(ask: DhcpAsk, state: Client6State, kind: int, now: float, address: ipaddress.IPv6Address | None,
             server_id: bytes | None) -> Dhcp6Message:
    ia = IaNa(iaid_of(ask.mac), addresses=(IaAddress(address),) if address is not None else ())
    return Dhcp6Message(kind, state.xid, client_id=duid_ll(ask.mac), server_id=server_id, ia_na=(ia,),
                        elapsed=min(int((now - state.started) * 100), 0xFFFF), requested_options=ASKED_OPTIONS,
                        fqdn=ask.hostname, fqdn_flags=FQDN_NO_UPDATE)


def release(ask: DhcpAsk, xid: int, state: Client6State) -> Dhcp6Message | None:
    """A Release of the lease held (None: nothing held)."""
    if state.lease is None:
        return None
    ia = IaNa(iaid_of(ask.mac), addresses=(IaAddress(state.lease.address),))
    return Dhcp6Message(RELEASE, xid, client_id=duid_ll(ask.mac), server_id=state.lease.server_id, ia_na=(ia,),
                        elapsed=0)


def _restart(state: Client6State, lost: str | None) -> Client6State:
    hint = state.lease.address if state.lease else (state.offer.address if state.offer else state.hint)
    return Client6State(lost=lost, hint=hint, renewals=state.renewals)


def tick(ask: DhcpAsk, state: Client6State, now: float, xid: int) -> tuple[Client6State, Dhcp6Message | None]:
    """Advance by the clock: what to send now, if anything. `xid` (24 bits) starts a new exchange."""
    xid &= 0xFFFFFF
    lease = state.lease
    if lease is not None and now >= lease.expires_at:
        return tick(ask, _restart(state, expired(lease, "DHCPv6")), now, xid)
    if state.phase is Phase.INIT:
        fresh = replace(state, phase=Phase.SELECTING, xid=xid, started=now, next_send=now + FIRST_RETRY,
                        retry=FIRST_RETRY, tries=1)
        return fresh, _message(ask, fresh, SOLICIT, now, state.hint or ask.requested6, None)
    if state.phase is not Phase.BOUND and now < state.next_send:
        return state, None
    if state.phase is Phase.SELECTING:
        state = retransmitted(state, now)
        return state, _message(ask, state, SOLICIT, now, state.hint or ask.requested6, None)
    if state.phase is Phase.REQUESTING:
        assert state.offer is not None
        if state.tries >= REQUEST_TRIES:
            return tick(ask, _restart(state, state.lost), now, xid)
        if state.tries == 0:  # the Request starts an exchange of its own (RFC 8415 §16.1)
            state = replace(state, xid=xid)
        state = retransmitted(state, now)
        return state, _message(ask, state, REQUEST, now, state.offer.address, state.offer.server_id)
    assert lease is not None
    now_in = extension_phase(state.phase, lease, now)
    if now_in is None:
        return state, None
    if now_in is not state.phase:  # Renew at T1, Rebind at T2: each an exchange of its own
        state = replace(state, phase=now_in, xid=xid, started=now, tries=0)
    state = replace(state, next_send=extension_resend_at(now_in, lease, now), tries=state.tries + 1)
    if state.phase is Phase.RENEWING:
        return state, _message(ask, state, RENEW, now, lease.address, lease.server_id)
    return state, _message(ask, state, REBIND, now, lease.address, None)


def receive(ask: DhcpAsk, state: Client6State, message: Dhcp6Message, now: float) -> Client6State:
    """Take a server's message into account; one for another exchange or client changes nothing."""
    if message.xid != state.xid or message.client_id != duid_ll(ask.mac) or not message.server_id:
        return state
    phase = state.phase
    if phase is Phase.SELECTING and message.kind == ADVERTISE:
        offered = usable(ask, message.ia_na)
        if offered is None or refusal(ask, message):
            return state  # an Advertise without an address for us: wait for another, or retransmit
        return replace(state, phase=Phase.REQUESTING, offer=Offer6(offered[1].address, message.server_id),
                       started=now, next_send=now, retry=FIRST_RETRY, tries=0)
    if message.kind != REPLY or phase not in (Phase.REQUESTING, Phase.RENEWING, Phase.REBINDING):
        return state
    expected = state.offer.server_id if phase is Phase.REQUESTING and state.offer else (
        state.lease.server_id if phase is Phase.RENEWING and state.lease else None)
    if expected is not None and message.server_id != expected:
        return state  # Request and Renew name one server; Rebind accepts any
    granted = usable(ask, message.ia_na)
    why = refusal(ask, message)
    if granted is None and why is None and phase is not Phase.REQUESTING \
            and not any(ia.iaid == iaid_of(ask.mac) for ia in message.ia_na):
        return state  # a Reply that does not speak of our IA: keep the lease, keep asking
    if granted is not None and why is None:
        ia, entry = granted
        t1, t2 = _lifetimes(IaNa(ia.iaid, ia.t1, ia.t2, (entry,)))
        lease = Lease6(entry.address, message.server_id, now, t1, t2, entry.preferred, entry.valid)
        return Client6State(Phase.BOUND, state.xid, lease, None, now, 0.0, FIRST_RETRY, 0, None, None,
                            state.renewals + int(state.lease is not None))
    held = state.lease.address if state.lease else (state.offer.address if state.offer else None)
    return replace(_restart(state, f"the DHCPv6 server refused {held}: {why or 'no address in its Reply'}"),
                   next_send=now)
