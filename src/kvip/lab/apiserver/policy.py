"""Who may do what on the stand-in, and the tunables of its behaviour: tokens → users, allow lists
(RBAC grants), deny rules (faults), latency, bookmark interval, list freshness wait, gzip threshold."""

from __future__ import annotations

from dataclasses import dataclass, field

from kvip.lab.apiserver.media import GZIP_THRESHOLD
from kvip.lab.apiserver.paging import FRESH_WAIT_SECONDS

__all__ = ["Grant", "Policy"]


# One permission as a Role or ClusterRole binding grants it: (apiGroup, resource, verb, namespace),
# namespace None = cluster-wide (a ClusterRoleBinding: every namespace and cluster-scoped resources).
Grant = tuple[str, str, str, str | None]


@dataclass
class Policy:
    """Who may do what: tokens → users, allow lists (RBAC) and deny rules (faults: user or None for everyone)."""

    tokens: dict[str, str] | None = None
    anonymous: str | None = None  # user for requests without a token (kubectl sends none over plain HTTP)
    denied: set[tuple[str | None, str, str]] = field(default_factory=set)
    # user → the only grants it has, like Roles and ClusterRoles bound to that user; absent = no limit
    allowed: dict[str, set[Grant]] = field(default_factory=dict)
    latency: float = 0.0
    resource_latency: dict[str, float] = field(default_factory=dict)  # plural → extra seconds per request
    bookmark_interval: float = 5.0
    fresh_wait: float = FRESH_WAIT_SECONDS  # how long a list waits for a resourceVersion not reached yet
    gzip_threshold: int = GZIP_THRESHOLD

    def is_denied(self, user: str, group: str, resource: str, verb: str, namespace: str | None) -> bool:
        grants = self.allowed.get(user)
        if grants is not None and not _granted(grants, group, resource, verb, namespace):
            return True
        return (None, resource, verb) in self.denied or (user, resource, verb) in self.denied


def _granted(grants: set[Grant], group: str, resource: str, verb: str, namespace: str | None) -> bool:
    """RBAC's rule: a cluster-wide grant covers every namespace; a namespaced one only requests inside
    that namespace (a list or watch across all namespaces needs the cluster-wide grant)."""
    return (group, resource, verb, None) in grants or (
        namespace is not None and (group, resource, verb, namespace) in grants)
