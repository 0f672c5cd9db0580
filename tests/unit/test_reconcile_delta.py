"""What a pass tells its observers changed (kvip issue #21: they report the delta, not every Service), and
which passes make the backends read the whole dataplane back."""

from __future__ import annotations

import ipaddress

import pytest

from kvip.core.model import Advertisement, DesiredState, ServiceDecision, ServiceKey
from kvip.dataplane.base import DataplaneBase
from kvip.reconcile import (
    BackendDiff,
    Reconciler,
    ReconcileResult,
    reads_back,
    reported_vips,
)
from kvip.runtime.tasks import Trigger

WEB, DB, CACHE = (ServiceKey("default", name) for name in ("web", "db", "cache"))


def decided(key: ServiceKey, *endpoints: str) -> ServiceDecision:
    return ServiceDecision(key, (), True, bool(endpoints), "local endpoint" if endpoints else "no local endpoint",
                           endpoints)


class Nothing(DataplaneBase):
    name = "nothing"

    def desired(self, state: DesiredState) -> frozenset[str]:
        return frozenset()

    async def observe(self) -> frozenset[str]:
        return frozenset()

    async def apply(self, add: frozenset[str], remove: frozenset[str]) -> None:
        return None


async def test_observers_are_told_exactly_the_services_whose_decision_changed() -> None:
    web, db = decided(WEB, "10.1.0.5"), decided(DB, "10.1.0.6")
    current = [DesiredState({}, {WEB: web, DB: db})]
    reconciler = Reconciler(compute=lambda: current[0], backends=[Nothing()], trigger=Trigger())
    first = await reconciler.reconcile_once()
    assert first is not None and first.changed_services is None  # the first pass: everything is new
    # web keeps its decision object, db is decided again to an equal one, cache is new.
    current[0] = DesiredState({}, {WEB: web, DB: decided(DB, "10.1.0.6"), CACHE: decided(CACHE, "10.1.0.7")})
    second = await reconciler.reconcile_once()
    assert second is not None and second.changed_services == {CACHE}
    current[0] = DesiredState({}, {WEB: decided(WEB), CACHE: current[0].decisions[CACHE]})
    third = await reconciler.reconcile_once()
    assert third is not None and third.changed_services == {WEB, DB}
    # The last known good endpoint survives web losing its endpoint, and goes with db.
    assert reconciler.last_known_good_endpoint == {WEB: "10.1.0.5", CACHE: "10.1.0.7"}


@pytest.mark.parametrize("reasons", [None, {}, {"timer": 1}, {"retry": 1}, {"manual": 1}, {"start": 1},
                                     {"dataplane:routes": 1}, {"source:services": 3, "timer": 1}, {"novel": 1}])
def test_passes_not_woken_by_cluster_inputs_alone_read_the_dataplane_back(reasons: dict[str, int] | None) -> None:
    assert reads_back(reasons)


@pytest.mark.parametrize("reasons", [{"source:services": 2}, {"source:endpointslices": 1, "lease": 1},
                                     {"probe": 1}, {"dhcp": 1}, {"drain-window": 1}])
def test_passes_woken_by_cluster_inputs_alone_may_trust_a_kept_view(reasons: dict[str, int]) -> None:
    assert not reads_back(reasons)


def test_the_reported_vips_are_those_wanted_unless_a_change_failed() -> None:
    wanted = DesiredState({ipaddress.ip_address(v): Advertisement(ipaddress.ip_address(v), frozenset({WEB}))
                           for v in ("10.96.0.1", "10.96.0.2")})

    def after(diff: BackendDiff) -> tuple[set[str], set[str]]:
        return reported_vips(ReconcileResult(desired=wanted, diffs=(diff,), reasons={}, started_at=0.0, duration=0.0))

    landed = BackendDiff("routes", frozenset({"10.96.0.2"}), frozenset())
    assert after(landed) == ({"10.96.0.1", "10.96.0.2"}, {"10.96.0.1", "10.96.0.2"})
    refused = BackendDiff("routes", frozenset({"10.96.0.2"}), frozenset({"10.96.0.9"}), {"x": "EEXIST"},
                          vips_not_added=frozenset({ipaddress.ip_address("10.96.0.2")}),
                          vips_not_removed=frozenset({ipaddress.ip_address("10.96.0.9")}))
    assert after(refused) == ({"10.96.0.1", "10.96.0.2"}, {"10.96.0.1", "10.96.0.9"})
