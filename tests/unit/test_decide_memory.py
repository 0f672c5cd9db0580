"""What the decision core keeps between passes stays small at 10,000 Services (kvip issue #21): an index
entry of one Service is that Service, not a set of one; equal immutable values are shared; the answer
lends the memo's dicts instead of copying them. None of it changes an answer (the property test proves
the incremental answer equal to decide()'s)."""

from __future__ import annotations

import ipaddress
from types import MappingProxyType

from kvip.core.decide import NO_ATTRIBUTES, DecideConfig, decide
from kvip.core.decide_service import local_usable_addresses
from kvip.core.incremental import IdentityMemo, IncrementalDecider
from kvip.core.model import (
    ClusterSnapshot,
    EndpointView,
    NodeView,
    PortView,
    ProbeVerdicts,
    ServiceKey,
    ServiceView,
)
from kvip.core.vips import LOADBALANCER_IPS_ANNOTATION, service_vips

CONFIG = DecideConfig("n1")
VIP = ipaddress.ip_address("10.96.0.1")


def service(name: str, vips: str, port: int = 80) -> ServiceView:
    return ServiceView(ServiceKey("default", name), ports=(PortView("http", port),),
                       annotations=MappingProxyType({LOADBALANCER_IPS_ANNOTATION: vips}))


def snapshot(*services: ServiceView, address: str = "10.244.0.1") -> ClusterSnapshot:
    here = (EndpointView((address,), "n1"),)
    return ClusterSnapshot({s.key: s for s in services}, {s.key: here for s in services}, NodeView("n1"))


def test_an_index_entry_of_one_service_is_the_service_and_a_set_only_while_shared() -> None:
    web, api = service("web", "10.96.0.1"), service("api", "10.96.0.1", port=443)
    decider = IncrementalDecider(CONFIG)
    decider.decide(snapshot(web))
    assert decider._users[VIP] is web.key
    decider.decide(snapshot(web, api))
    assert decider._users[VIP] == {web.key, api.key}
    moved = service("api", "10.96.0.2", port=443)
    state = decider.decide(snapshot(web, moved))
    assert decider._users[VIP] == web.key  # back to the bare key
    assert state == decide(CONFIG, snapshot(web, moved))
    decider.decide(snapshot(moved))
    assert VIP not in decider._users


def test_the_local_address_index_waits_for_a_probe_verdict_and_is_kept_from_then_on() -> None:
    web, api = service("web", "10.96.0.1"), service("api", "10.96.0.2")
    decider = IncrementalDecider(CONFIG)
    decider.decide(snapshot(web, api))
    assert decider._local is None  # no verdict yet: nothing to look up
    decider.decide(snapshot(web, api), probes=ProbeVerdicts(frozenset({"10.244.9.9"})))
    assert decider._local == {"10.244.0.1": {web.key, api.key}}
    decider.decide(snapshot(web, address="10.244.0.2"), probes=ProbeVerdicts(frozenset({"10.244.9.9"})))
    assert decider._local == {"10.244.0.2": web.key}  # api gone, web's address moved


def test_a_probe_verdict_on_a_shared_address_re_decides_every_service_behind_it() -> None:
    web, api = service("web", "10.96.0.1"), service("api", "10.96.0.2")
    decider = IncrementalDecider(CONFIG)
    decider.decide(snapshot(web, api))
    state = decider.decide(snapshot(web, api), probes=ProbeVerdicts(frozenset({"10.244.0.1"})))
    assert decider.redecided == 2 and not any(d.advertised for d in state.decisions.values())


def test_the_answer_lends_the_memos_dicts_and_a_later_pass_leaves_it_as_it_was() -> None:
    web = service("web", "10.96.0.1")
    decider = IncrementalDecider(CONFIG)
    first = decider.decide(snapshot(web))
    assert first.decisions is decider._decisions and first.advertisements is decider._ads  # no copy kept
    kept = (dict(first.decisions), dict(first.advertisements))
    decider.decide(snapshot(service("web", "10.96.0.2")))
    assert (first.decisions, first.advertisements) == kept


def test_a_services_local_endpoints_are_its_endpoints_own_tuple() -> None:
    one = EndpointView(("10.244.0.1", "fd00::1"), "n1")
    assert local_usable_addresses(CONFIG, (one, EndpointView(("10.244.1.1",), "n2")), ProbeVerdicts()) is one.addresses
    two = EndpointView(("10.244.0.2",), "n1")
    assert local_usable_addresses(CONFIG, (one, two), ProbeVerdicts()) == ("10.244.0.1", "fd00::1", "10.244.0.2")
    failing = ProbeVerdicts(frozenset({"fd00::1"}))
    assert local_usable_addresses(CONFIG, (one,), failing) == ("10.244.0.1",)
    assert local_usable_addresses(CONFIG, (EndpointView(("10.244.0.1", "10.244.0.1"), "n1"),),
                                  ProbeVerdicts()) == ("10.244.0.1",)


def test_every_vip_without_bgp_attributes_shares_one_empty_attributes_value() -> None:
    state = decide(CONFIG, snapshot(service("web", "10.96.0.1"), service("api", "10.96.0.2")))
    assert all(ad.attributes is NO_ATTRIBUTES for ad in state.advertisements.values())


def test_the_vip_memo_keeps_the_vips_alone_when_nothing_was_wrong() -> None:
    fine, odd = service("fine", "10.96.0.1"), service("odd", "10.96.0.1,nonsense")
    assert service_vips(fine) == ((VIP,), ())
    assert service_vips.memo[fine] == (VIP,)  # type: ignore[attr-defined]
    vips, problems = service_vips(odd)
    assert vips == (VIP,) and [p.reason for p in problems] == ["InvalidVIP"]
    assert service_vips(odd) == (vips, problems)


def test_an_identity_memo_builds_each_item_once_and_forgets_everything_at_its_limit() -> None:
    built: list[object] = []
    memo = IdentityMemo(lambda item: built.append(item) or str(item), limit=2)
    a, b, c = (ipaddress.ip_address(f"10.0.0.{n}") for n in (1, 2, 3))
    assert memo([a, b]) == ["10.0.0.1", "10.0.0.2"] and memo([b, a]) == ["10.0.0.2", "10.0.0.1"]
    assert built == [a, b]
    assert memo([a, b, c]) == ["10.0.0.1", "10.0.0.2", "10.0.0.3"] and built == [a, b, a, b, c]  # over the limit
