"""Services per namespace and eligible Services are counted again only for the Services a pass says
changed (kvip issue #21), and always agree with counting every Service afresh."""

from __future__ import annotations

import time

from kvip.agent.metrics import AgentMetrics
from kvip.core.model import CONTROL_PLANE_KEY, DesiredState, ServiceDecision, ServiceKey
from kvip.reconcile import ReconcileResult


def decision(namespace: str, name: str, eligible: bool = True) -> ServiceDecision:
    key = ServiceKey(namespace, name)
    return ServiceDecision(key, (), eligible, eligible, "local endpoint" if eligible else "no local endpoint")


def result(decisions: list[ServiceDecision], changed: set[ServiceKey] | None) -> ReconcileResult:
    state = DesiredState({}, {d.service: d for d in decisions})
    return ReconcileResult(desired=state, diffs=(), reasons={}, started_at=time.time(), duration=0.001,
                           changed_services=None if changed is None else frozenset(changed))


def counts(metrics: AgentMetrics) -> list[str]:
    return sorted(line for line in metrics.render().decode().splitlines()
                  if line.startswith(("kube_vip_active_services{", "kvip_eligible_services ")))


def test_counting_the_changes_gives_what_counting_everything_gives() -> None:
    a1, a2, b1 = decision("a", "one"), decision("a", "two"), decision("b", "one")
    cp = ServiceDecision(CONTROL_PLANE_KEY, (), True, True, "leader")
    passes = [
        ([a1, a2, b1, cp], None),
        ([a1, decision("a", "two", eligible=False), b1, cp], {a2.service}),  # a/two turns ineligible
        ([a1, decision("a", "two", eligible=False), cp], {b1.service}),  # namespace b's last Service goes
        ([a1, decision("a", "two", eligible=False), decision("c", "new"), cp], {ServiceKey("c", "new")}),
    ]
    delta = AgentMetrics("node-a", lambda: ())
    for decisions, changed in passes:
        delta.observe(result(decisions, changed))
        fresh = AgentMetrics("node-a", lambda: ())
        fresh.observe(result(decisions, None))
        assert counts(delta) == counts(fresh)
    assert counts(delta) == ['kube_vip_active_services{namespace="a"} 2.0',
                             'kube_vip_active_services{namespace="c"} 1.0', "kvip_eligible_services 2.0"]
