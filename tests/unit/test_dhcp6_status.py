"""DHCPv6 leases in `kvip status` and the metrics, with the same timers as DHCPv4: renew-in (to T1 while
bound, to T2 while renewing), expires-in (the valid lifetime), the state, the server's DUID; a Service
asking for `0.0.0.0,::` shows two rows and counts two clients."""

from __future__ import annotations

import ipaddress

from hypothesis import given
from hypothesis import strategies as st

from kvip.agent.dataplane_report import DataplaneReport
from kvip.agent.metrics import AgentMetrics
from kvip.core.dataplane_report import lease_view
from kvip.core.dhcp import DhcpAsk, DhcpLease
from kvip.core.dhcp6_lease import Client6State, Lease6
from kvip.core.dhcp_lease import ClientState, Lease
from kvip.core.dhcp_timers import LeaseState, Phase, renew_in
from kvip.core.model import DesiredState, ServiceKey
from kvip.reconcile import ReconcileResult

WEB = ServiceKey("default", "web")
ASK = DhcpAsk(bytes.fromhex("020000000001"), "vip-web", families=frozenset({4, 6}))
V6 = ipaddress.IPv6Address("2001:db8::7")
DUID = bytes.fromhex("000300010200000000aa")


def v6(phase: Phase = Phase.BOUND, at: float = 100.0, renewals: int = 0) -> Client6State:
    return Client6State(phase, 7, Lease6(V6, DUID, at, t1=50, t2=80, preferred=100, valid=120), renewals=renewals)


def v4(renewals: int = 0) -> ClientState:
    lease = Lease(ipaddress.IPv4Address("10.250.200.11"), ipaddress.IPv4Address("10.250.0.1"), 100.0, 120, 60, 105)
    return ClientState(Phase.BOUND, 7, lease, renewals=renewals)


def test_a_bound_v6_lease_shows_renew_in_to_t1_expires_in_to_the_valid_lifetime_and_the_server_duid() -> None:
    row = lease_view(WEB, ASK, v6(at=100.0, renewals=1), now=130.0)
    assert (row.address, row.state, row.renew_in, row.expires_in) == ("2001:db8::7", "bound", 20.0, 90.0)
    assert (row.server, row.mac, row.renewals) == ("00:03:00:01:02:00:00:00:00:aa", "02:00:00:00:00:01", 1)


def test_while_renewing_renew_in_counts_to_t2_and_while_rebinding_only_expiry_is_ahead() -> None:
    assert lease_view(WEB, ASK, v6(Phase.RENEWING), now=160.0).renew_in == 20.0  # T2 at 180
    rebinding = lease_view(WEB, ASK, v6(Phase.REBINDING), now=190.0)
    assert (rebinding.state, rebinding.renew_in, rebinding.expires_in) == ("rebinding", None, 30.0)
    waiting = lease_view(WEB, ASK, Client6State(Phase.SELECTING, lost="lease of 2001:db8::7 expired"), 1.0)
    assert (waiting.address, waiting.renew_in, waiting.expires_in, waiting.server) == (None, None, None, None)


@given(st.sampled_from([v4(), v6(), v6(Phase.RENEWING)]), st.floats(0, 1000))
def test_timers_are_never_negative_and_renewal_comes_before_expiry(state: LeaseState, now: float) -> None:
    due = renew_in(state, now)
    row = lease_view(WEB, ASK, state, now)
    assert row.expires_in is not None and row.expires_in >= 0
    assert due is None or 0 <= due <= row.expires_in


class DualStackRunner:
    """A DHCP runner holding both families for one Service (the runner's two read-only views)."""

    def __init__(self) -> None:
        self.running: dict[tuple[ServiceKey, int], tuple[DhcpAsk, LeaseState]] = {}

    def clients(self) -> dict[tuple[ServiceKey, int], tuple[DhcpAsk, LeaseState]]:
        return dict(self.running)

    def leases(self) -> dict[ServiceKey, DhcpLease]:
        return {WEB: DhcpLease(ipaddress.ip_address("10.250.200.11"), "vip-web", None, V6)}


def metric_of(metrics: AgentMetrics, name: str) -> float:
    line = next(line for line in metrics.render().decode().splitlines() if line.startswith(name + " "))
    return float(line.split()[-1])


def a_pass() -> ReconcileResult:
    return ReconcileResult(DesiredState({}, {}), (), {}, 0.0, 0.0)


async def test_a_dual_stack_service_shows_a_row_per_family_and_both_are_counted() -> None:
    runner, metrics = DualStackRunner(), AgentMetrics("n1", lambda: ())
    report = DataplaneReport(runner, metrics, None, 30.0)  # type: ignore[arg-type]
    runner.running = {(WEB, 4): (ASK, v4()), (WEB, 6): (ASK, v6())}
    report.observe(a_pass())
    rows = report.leases(now=130.0)
    assert [(r.address, r.server, r.renew_in, r.expires_in) for r in rows] == [
        ("10.250.200.11", "10.250.0.1", 30.0, 90.0), ("2001:db8::7", "00:03:00:01:02:00:00:00:00:aa", 20.0, 90.0)]
    assert metric_of(metrics, 'kvip_dhcp_leases{state="bound"}') == 2
    # the DHCPv6 lease renewed, then lost: counted like a DHCPv4 one
    runner.running[(WEB, 6)] = (ASK, v6(renewals=1))
    report.observe(a_pass())
    runner.running[(WEB, 6)] = (ASK, Client6State(Phase.SELECTING, lost="lease of 2001:db8::7 expired", renewals=1))
    report.observe(a_pass())
    assert metric_of(metrics, "kvip_dhcp_renewals_total") == 1 and metric_of(metrics, "kvip_dhcp_lease_lost_total") == 1
    assert metric_of(metrics, 'kvip_dhcp_leases{state="bound"}') == 1
    assert metric_of(metrics, 'kvip_dhcp_leases{state="selecting"}') == 1
