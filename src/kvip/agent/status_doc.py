"""The /status document, bounded (kvip issue #17, row 6).

The document mirrors what the cluster holds, so without bounds its size is the attacker's choice: one
Service with a 1 MiB annotation once made it 16.8 MB. Here every list is capped (services, problems,
VIPs, endpoints, diffs, backend entries) with the number left out under "truncated", and every string
is cut to `StatusLimits.text` characters. Problem messages come from core already quoted and cut
(`kvip.core.model.shown`), so no raw annotation text reaches the document; the cut here is the
second line of defence for every other string (error texts, names, backend state).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from kvip.core.dataplane_report import EgressView, LeaseView
from kvip.core.model import CONTROL_PLANE_KEY, ServiceKey
from kvip.kube.election import LeaseElector
from kvip.kube.reflector import SourceStatus
from kvip.reconcile import ReconcileResult


@dataclass(frozen=True)
class StatusLimits:
    services: int = 200  # service entries listed (by name)
    problems: int = 100  # problem entries listed
    items: int = 16  # entries of any inner list or map (VIPs, endpoints, diffs, sessions)
    advertised: int = 256  # the node-wide VIP list
    text: int = 256  # characters of any string

    def max_bytes(self) -> int:
        """A generous upper bound of the encoded document (JSON escapes a character into at most 6
        bytes); the tests hold the document to it whatever the cluster holds."""
        string = 6 * self.text + 64
        service = string + 4 * self.items * string + 256
        return (self.services * service + self.problems * 3 * string + self.advertised * string
                + 64 * self.items * string + 16 * 1024 + self.dataplane_bytes())

    def dataplane_bytes(self) -> int:
        """The DHCP and egress sections' share of `max_bytes` (`dataplane_sections`)."""
        string = 6 * self.text + 64
        return self.services * (12 * string + (self.items + 4) * string) + self.items * string


def clip(value: object, limit: int) -> str:
    text = str(value)
    return text if len(text) <= limit else f"{text[:limit]}... ({len(text)} characters)"


class _Bounder:
    """Cuts lists and strings, counting what it left out by section."""

    def __init__(self, limits: StatusLimits) -> None:
        self.limits = limits
        self.left_out: Counter[str] = Counter()

    def text(self, value: object) -> str:
        return clip(value, self.limits.text)

    def maybe_text(self, value: object | None) -> str | None:
        return None if value is None else self.text(value)

    def first(self, items: Sequence[Any], section: str, limit: int | None = None) -> Sequence[Any]:
        cap = self.limits.items if limit is None else limit
        if len(items) > cap:
            self.left_out[section] += len(items) - cap
        return items[:cap]

    def texts(self, values: Iterable[object], section: str = "items") -> list[str]:
        return [self.text(v) for v in self.first(list(values), section)]

    def value(self, value: object, depth: int = 0) -> object:
        """Any JSON-like value (a backend's status): strings cut, containers capped, depth bounded."""
        if value is None or isinstance(value, (bool, int, float)):
            return value
        if depth >= 4:
            return self.text(value)
        if isinstance(value, Mapping):
            pairs = self.first(sorted(value.items(), key=lambda kv: str(kv[0])), "items")
            return {self.text(k): self.value(v, depth + 1) for k, v in pairs}
        if isinstance(value, (list, tuple, set, frozenset)):
            return [self.value(v, depth + 1) for v in self.first(list(value), "items")]
        return self.text(value)


def status_document(
    *,
    node: str,
    mode: str,
    synced: bool,
    passes: int,
    sources: Iterable[SourceStatus],
    result: ReconcileResult | None,
    last_known_good_endpoint: Mapping[ServiceKey, str],
    backends: Mapping[str, Mapping[str, object]],
    limits: StatusLimits = StatusLimits(),
    control_plane: Mapping[str, object] | None = None,
) -> dict[str, Any]:
    """`control_plane`: the agent's control-plane section (None: cp_enable off); its decision is added here."""
    b = _Bounder(limits)
    desired = result.desired if result else None
    every = desired.decisions if desired else {}
    decisions = sorted((k, d) for k, d in every.items() if k != CONTROL_PLANE_KEY)
    cp = every.get(CONTROL_PLANE_KEY)
    problems = list(desired.problems if desired else ())
    advertised = sorted(str(vip) for vip in (desired.vips if desired else ()))
    doc: dict[str, Any] = {
        "node": b.text(node),
        "mode": b.text(mode),
        "synced": synced,
        "passes": passes,
        "sources": [
            {
                "resource": b.text(s.resource), "state": b.text(s.state.value), "objects": s.objects,
                "resourceVersion": b.text(s.resource_version), "relists": s.relists,
                "watchRestarts": s.watch_restarts, "lastError": b.maybe_text(s.last_error),
                "consistencyChecks": s.checks, "consistencyRepairs": s.check_repairs,
                "lastConsistencyCheck": s.last_check_at,
            }
            for s in b.first(list(sources), "sources")
        ],
        "advertised": b.texts(b.first(advertised, "advertised", limits.advertised)),
        "services": {
            b.text(key): {
                "vips": b.texts(d.vips), "eligible": d.eligible, "advertised": d.advertised,
                "reason": b.text(d.reason), "localEndpoints": b.texts(d.local_endpoints),
                "lastKnownGoodEndpoint": b.maybe_text(last_known_good_endpoint.get(key)),
            }
            for key, d in b.first(decisions, "services", limits.services)
        },
        "problems": [
            {"service": b.text(p.service), "reason": b.text(p.reason), "message": b.text(p.message)}
            for p in b.first(problems, "problems", limits.problems)
        ],
        "controlPlane": None if control_plane is None else {
            **{b.text(k): b.value(v) for k, v in control_plane.items()},
            "advertised": bool(cp and cp.advertised), "reason": b.text(cp.reason if cp else "not-decided-yet"),
        },
        # Backend-specific state an operator needs (BGP: sessions and speaker restarts).
        "backends": {b.text(name): b.value(status) for name, status in b.first(list(backends.items()), "items")},
        "lastPass": None if result is None else {
            "startedAt": result.started_at, "durationSeconds": result.duration,
            "reasons": b.value(dict(result.reasons)), "error": b.maybe_text(result.error),
            "diffs": [
                {"backend": b.text(d.backend), "added": b.texts(sorted(map(str, d.added))),
                 "removed": b.texts(sorted(map(str, d.removed))),
                 "failed": {b.text(k): b.text(v) for k, v in b.first(list(d.failed.items()), "items")}}
                for d in b.first(list(result.diffs), "items")
            ],
        },
    }
    # What was left out, by section, so a reader knows the lists are partial (and how partial).
    doc["truncated"] = {"services": 0, "problems": 0, **b.left_out}
    return doc


def dataplane_sections(dhcp: Sequence[LeaseView], egress: Sequence[EgressView], drift: Sequence[str],
                       limits: StatusLimits = StatusLimits()) -> dict[str, Any]:
    """The DHCP leases and egress rules this node holds, and where they drift (kvip issue #19), bounded
    like the rest: at most `limits.services` rows each, `limits.items` pods per row and drift lines.
    Merged into the document by the agent; its left-out counts go under "truncated"."""
    b = _Bounder(limits)
    doc: dict[str, Any] = {
        "dhcp": [
            {"service": b.text(v.service), "interface": b.text(v.interface), "mac": b.text(v.mac),
             "address": b.maybe_text(v.address), "state": b.text(v.state), "renewsInSeconds": v.renew_in,
             "expiresInSeconds": v.expires_in,
             "server": b.maybe_text(v.server), "renewals": v.renewals, "lost": b.maybe_text(v.lost)}
            for v in b.first(list(dhcp), "dhcp", limits.services)
        ],
        "egress": [
            {"service": b.text(v.service), "vip": b.text(v.vip), "pods": b.texts(v.pods, "egressPods"),
             "table": b.text(v.table)}
            for v in b.first(list(egress), "egress", limits.services)
        ],
        "dataplaneDrift": b.texts(drift, "dataplaneDrift"),
    }
    doc["truncated"] = dict(b.left_out)
    return doc


def with_dataplane(doc: dict[str, Any], sections: Mapping[str, Any]) -> dict[str, Any]:
    """`doc` with the dataplane sections added and both documents' left-out counts merged."""
    merged = {**doc, **{k: v for k, v in sections.items() if k != "truncated"}}
    merged["truncated"] = {**doc.get("truncated", {}), **sections.get("truncated", {})}
    return merged


def handover_sections(elector: LeaseElector | None, limits: StatusLimits = StatusLimits()) -> dict[str, Any]:
    """kvip.io/preferred-nodes handovers (kvip issue #20): this node's counts, its pending requests and the
    last handover of each Lease it contends for, newest first, at most `limits.items` of each. Merged into
    the document by the agent (`with_dataplane`); nothing without an elector."""
    if elector is None:
        return {}
    b = _Bounder(limits)
    report = elector.handovers.report()
    doc: dict[str, Any] = {"handovers": {
        **report.counts,
        "pending": [{"lease": b.text(key), "waitingSeconds": round(waiting, 3)}
                    for key, waiting in b.first(report.pending, "handoverPending")],
        "last": [{"lease": b.text(key), "outcome": event.direction, "to": b.maybe_text(event.peer),
                  "secondsAgo": round(ago, 3)} for key, event, ago in b.first(report.last, "handoverLast")],
    }}
    doc["truncated"] = dict(b.left_out)
    return doc
