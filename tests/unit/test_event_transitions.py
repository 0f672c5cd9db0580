"""A Normal Event when this node starts or stops advertising a Service: once per transition, whether the
pass hands over every decision or only the changed ones (kvip issue #21), never for the control-plane VIP."""

from __future__ import annotations

import ipaddress

from kvip.core.model import CONTROL_PLANE_KEY, ServiceDecision, ServiceKey
from kvip.kube.events import EventRecorder

WEB, DB = ServiceKey("default", "web"), ServiceKey("default", "db")


def decision(key: ServiceKey, advertised: bool) -> ServiceDecision:
    return ServiceDecision(key, (ipaddress.ip_address("10.96.0.7"),), True, advertised,
                           "local endpoint" if advertised else "no local endpoint")


def queued(recorder: EventRecorder) -> list[tuple[str, str]]:
    """The Events waiting to be sent, as (Service name, reason), emptying the outbox."""
    out = []
    while not recorder._queue.empty():
        event, _ = recorder._queue.get_nowait()
        out.append((event.service.name, event.reason))
    return out


def test_only_changed_services_are_looked_at_and_each_transition_is_reported_once() -> None:
    recorder = EventRecorder(None, node_name="node-a")  # type: ignore[arg-type]  (nothing is sent here)
    web_on, db_off = decision(WEB, True), decision(DB, False)
    recorder.report_transitions({WEB: web_on, DB: db_off, CONTROL_PLANE_KEY: decision(CONTROL_PLANE_KEY, True)})
    assert queued(recorder) == []  # the first pass: what is, not a transition
    recorder.report_transitions({WEB: web_on, DB: decision(DB, True)}, {DB})
    assert queued(recorder) == [("db", "Advertised")]
    recorder.report_transitions({WEB: decision(WEB, False), DB: decision(DB, True)}, {WEB})
    assert queued(recorder) == [("web", "Withdrawn")]
    # db leaves and comes back advertised: one Event, as a new Service (it was not advertised before).
    recorder.report_transitions({WEB: decision(WEB, False)}, {DB})
    recorder.report_transitions({WEB: decision(WEB, False), DB: decision(DB, True)}, {DB})
    assert queued(recorder) == [("db", "Advertised")]
    # A pass that does not say what changed compares everything, and finds the same.
    recorder.report_transitions({WEB: decision(WEB, True), DB: decision(DB, True),
                                 CONTROL_PLANE_KEY: decision(CONTROL_PLANE_KEY, False)})
    assert queued(recorder) == [("web", "Advertised")]
