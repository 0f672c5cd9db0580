"""The BGP speaker's Prometheus metrics, read at scrape time; registered through `Dataplane.collectors()`."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector


@dataclass(frozen=True)
class SpeakerState:
    """What the speaker knows about itself at one instant (metrics and /status read this)."""

    running: bool
    restarts: int
    sessions: Mapping[str, str] = field(default_factory=dict)  # peer → BGP state, "unknown" before the first poll
    announced: int = 0


class BgpCollector(Collector):
    """kvip_bgp_session_up{peer} and kvip_bgp_speaker_restarts."""

    def __init__(self, state: Callable[[], SpeakerState]) -> None:
        self._state = state

    def collect(self) -> Iterable[GaugeMetricFamily | CounterMetricFamily]:
        state = self._state()
        up = GaugeMetricFamily("kvip_bgp_session_up", "1 when the BGP session to the peer is Established",
                               labels=["peer"])
        for peer, session in state.sessions.items():
            up.add_metric([peer], 1.0 if session == "Established" else 0.0)
        restarts = CounterMetricFamily("kvip_bgp_speaker_restarts", "Times the BGP speaker died and was restarted")
        restarts.add_metric([], state.restarts)
        yield up
        yield restarts
