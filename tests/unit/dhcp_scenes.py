"""What the DHCP unit tests share: the decide() scene of `test_dhcp_lease` and `test_dhcp6_ask` (the Service
default/web, led by this node, node-a, with per-Service election, its one endpoint on node-b), and the
wire tests' rule for garbage (`test_dhcp_wire`, `test_dhcp6_wire`)."""

from __future__ import annotations

from collections.abc import Callable

from kvip.core import model
from kvip.core.decide import DecideConfig
from kvip.core.dhcp import MalformedDhcp

KEY = model.ServiceKey("default", "web")
CONFIG = DecideConfig("node-a", election=model.ElectionMode.SERVICE)
LED = model.Leadership(led_services=frozenset({KEY}))


def with_endpoint(service: model.ServiceView) -> model.ClusterSnapshot:
    """A cluster of `service` alone, its endpoint on node-b."""
    endpoints = (model.EndpointView(("10.244.0.5",), "node-b"),)
    return model.ClusterSnapshot({service.key: service}, {service.key: endpoints})


def read_or_refused(decode: Callable[[bytes], object], data: bytes) -> None:
    """`decode(data)` either reads a message or raises MalformedDhcp: any other exception fails the test."""
    try:
        decode(data)
    except MalformedDhcp:
        pass
