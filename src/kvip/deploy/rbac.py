"""The permissions each kvip component needs — the single source of truth for RBAC (docs/decisions.md D10).

Manifests and the Helm chart are generated from / checked against these rules. Each rule has a scope:
cluster-wide (a ClusterRole) or only the component's own namespace (a Role bound there), because a
stolen node token must not be able to rewrite Leases in every namespace (kvip issue #17, row 8).
The end-to-end RBAC test keeps its own literal copy of the expected grants, checks that these rules
produce exactly them, gives them to the API stand-in as the node's allow list, and removes each one.
"""

from __future__ import annotations

from dataclasses import dataclass

ELECTIONS = ("none", "global", "service")

# (apiGroup, resource, verb, namespace or None for cluster-wide): what the API stand-in's allow list takes.
Grant = tuple[str, str, str, str | None]


class UnknownElection(ValueError):
    pass


@dataclass(frozen=True, order=True)
class Rule:
    group: str
    resource: str
    verbs: tuple[str, ...]
    own_namespace: bool = False  # True: a Role in the component's namespace; False: a ClusterRole

    def to_k8s(self) -> dict[str, list[str]]:
        return {"apiGroups": [self.group], "resources": [self.resource], "verbs": list(self.verbs)}


LEASE_VERBS = ("create", "get", "list", "update")
# The agent also renews its heartbeat Lease with a merge patch (no get first: kvip issue #21), and
# watches the other nodes' heartbeats in its namespace for kvip.io/advertised-by (issue #20).
AGENT_LEASE_VERBS = ("create", "get", "list", "patch", "update", "watch")
HEARTBEAT_LEASE_VERBS = ("create", "list", "patch", "watch")


def agent_rules(*, election: str, control_plane: bool = False, on_demand: bool = False) -> tuple[Rule, ...]:
    """What `kvip agent` calls: reflectors, status writes, Events, heartbeat (and election) Leases.

    Leases: the heartbeat (and the global election's Lease, and with `control_plane` the control-plane
    VIP's Lease vip_leasename) live in the agent's namespace (cp_namespace), so a Role there; per-service
    election, and `on_demand` (per_service_election_on_demand: a Lease for each Service annotated
    kube-vip.io/forcePerServiceElection, in its namespace), need Leases in any namespace: only then a ClusterRole.
    `control_plane` is the elected control-plane VIP only: anycast (no election) needs no Lease of its own.
    """
    if election not in ELECTIONS:
        raise UnknownElection(f"election must be one of {ELECTIONS}, not {election!r}")
    rules = [
        # patch: the kvip.io/advertised-by annotation (metadata; RBAC cannot narrow it to annotations).
        Rule("", "services", ("list", "patch", "watch")),
        Rule("", "services/status", ("patch",)),
        Rule("discovery.k8s.io", "endpointslices", ("list", "watch")),
        Rule("", "nodes", ("list", "watch")),
        # Events go to each Service's namespace; patch raises the count of a repeated Event.
        Rule("", "events", ("create", "patch")),
    ]
    if election == "service" or on_demand:
        rules.append(Rule("coordination.k8s.io", "leases", AGENT_LEASE_VERBS))
    elif election == "global" or control_plane:
        rules.append(Rule("coordination.k8s.io", "leases", AGENT_LEASE_VERBS, own_namespace=True))
    else:  # the heartbeat Leases only: ours created once, then patched; every node's watched
        rules.append(Rule("coordination.k8s.io", "leases", HEARTBEAT_LEASE_VERBS, own_namespace=True))
    return tuple(sorted(rules))


def controller_rules() -> tuple[Rule, ...]:
    """What `kvip controller` calls: services (annotate), Events, and in its own namespace only the
    `kubevip` ConfigMap and its Lease."""
    return tuple(sorted([
        Rule("", "services", ("list", "watch", "patch")),
        Rule("", "events", ("create", "patch")),
        Rule("", "configmaps", ("list", "watch"), own_namespace=True),
        Rule("coordination.k8s.io", "leases", LEASE_VERBS, own_namespace=True),
    ]))


def cluster_rules(rules: tuple[Rule, ...]) -> tuple[Rule, ...]:
    return tuple(r for r in rules if not r.own_namespace)


def namespace_rules(rules: tuple[Rule, ...]) -> tuple[Rule, ...]:
    return tuple(r for r in rules if r.own_namespace)


def allow_list(rules: tuple[Rule, ...], namespace: str) -> set[Grant]:
    """The grants these rules give a component running in `namespace`, as the stand-in's allow list takes them."""
    return {(rule.group, rule.resource, verb, namespace if rule.own_namespace else None)
            for rule in rules for verb in rule.verbs}
