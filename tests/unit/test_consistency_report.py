"""The consistency check's figures (kvip.kube.consistency, run by each reflector) are visible to an
operator: how many checks ran, how many objects they repaired, and when the last one finished, per
source, in /metrics and in /status (kvip issue #21)."""

from __future__ import annotations

from kvip.agent.metrics import AgentMetrics
from kvip.agent.status_doc import status_document
from kvip.kube.reflector import SourceState, SourceStatus

CHECKED_AT = 1_700_000_000.0


def source(resource: str, *, checks: int, repairs: int, last: float | None) -> SourceStatus:
    return SourceStatus(resource=resource, state=SourceState.SYNCED, objects=3, resource_version="7", relists=1,
                        watch_restarts=0, last_list_at=None, last_ok_monotonic=None, last_error=None, errors={},
                        checks=checks, check_repairs=repairs, last_check_at=last)


SOURCES = (source("services", checks=12, repairs=2, last=CHECKED_AT), source("nodes", checks=0, repairs=0, last=None))


def test_checks_and_repairs_are_counted_per_source_in_the_metrics() -> None:
    lines = AgentMetrics("node-a", lambda: SOURCES).render().decode().splitlines()
    assert 'kvip_consistency_checks_total{resource="services"} 12.0' in lines
    assert 'kvip_consistency_check_repairs_total{resource="services"} 2.0' in lines
    assert 'kvip_consistency_checks_total{resource="nodes"} 0.0' in lines
    assert 'kvip_consistency_check_last_timestamp_seconds{resource="services"} 1.7e+09' in lines
    # A source never checked yet has no timestamp at all (not a misleading 0 = 1970).
    assert not any(line.startswith('kvip_consistency_check_last_timestamp_seconds{resource="nodes"}')
                   for line in lines)


def test_checks_and_repairs_are_shown_per_source_in_the_status_document() -> None:
    doc = status_document(node="node-a", mode="table", synced=True, passes=1, sources=SOURCES, result=None,
                          last_known_good_endpoint={}, backends={})
    services, nodes = doc["sources"]
    assert (services["consistencyChecks"], services["consistencyRepairs"], services["lastConsistencyCheck"]) == (
        12, 2, CHECKED_AT)
    assert (nodes["consistencyChecks"], nodes["lastConsistencyCheck"]) == (0, None)
