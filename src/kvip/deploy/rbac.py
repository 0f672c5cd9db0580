"""The permissions each kvip component needs — the single source of truth for RBAC.

Manifests are generated from these rules, and the end-to-end RBAC test gives an agent exactly these
rules (as the API stand-in's allow list) and checks that removing any one of them is reported.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, order=True)
class Rule:
    group: str
    resource: str
    verbs: tuple[str, ...]

    def to_k8s(self) -> dict[str, list[str]]:
        return {"apiGroups": [self.group], "resources": [self.resource], "verbs": list(self.verbs)}


def agent_rules(*, election: bool) -> tuple[Rule, ...]:
    """What `kvip agent` calls: reflectors, status writes, Events, heartbeat (and election) Leases."""
    rules = [
        Rule("", "services", ("list", "watch")),
        Rule("", "services/status", ("patch",)),
        Rule("discovery.k8s.io", "endpointslices", ("list", "watch")),
        Rule("", "nodes", ("list", "watch")),
        Rule("", "events", ("create",)),
        # the heartbeat Lease always; the election's Leases (observed with list) when an election is on
        Rule("coordination.k8s.io", "leases",
             ("create", "get", "list", "update") if election else ("create", "get", "update")),
    ]
    return tuple(sorted(rules))


def controller_rules() -> tuple[Rule, ...]:
    """What `kvip controller` calls: services (annotate), the kubevip ConfigMap, its Lease, Events."""
    return tuple(sorted([
        Rule("", "services", ("list", "watch", "patch")),
        Rule("", "configmaps", ("list", "watch")),
        Rule("coordination.k8s.io", "leases", ("create", "get", "list", "update")),
        Rule("", "events", ("create",)),
    ]))


def allow_list(rules: tuple[Rule, ...]) -> set[tuple[str, str]]:
    """(resource, verb) pairs, as the API stand-in's per-user allow list takes them."""
    return {(rule.resource, verb) for rule in rules for verb in rule.verbs}
