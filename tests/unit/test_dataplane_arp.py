"""ArpBackend's ownership against a real kernel in a namespace of its own: only addresses carrying our
IFA_PROTO are ours. An operator's address on the same interface is never reported, so never removed."""

from __future__ import annotations

import ipaddress
import subprocess
from collections.abc import AsyncIterator, Iterator

import pytest

from kvip.core.model import Advertisement, DesiredState
from kvip.dataplane.arp import ArpBackend, OwnedAddress
from kvip.dataplane.base import ApplyError
from kvip.lab.topology import topology

pytestmark = pytest.mark.root


@pytest.fixture
def netns() -> Iterator[str]:
    with topology(["solo"]) as topo:
        yield topo.node("solo").netns


@pytest.fixture
async def arp(netns: str) -> AsyncIterator[ArpBackend]:
    backend = ArpBackend(interface="eth0", netns=netns, arp_rate=3600)
    try:
        yield backend
    finally:
        await backend.close()


def want(*vips: str) -> DesiredState:
    return DesiredState({ipaddress.ip_address(v): Advertisement(ipaddress.ip_address(v), frozenset()) for v in vips})


def addresses(netns: str) -> str:
    return subprocess.run(["ip", "-n", netns, "address", "show", "dev", "eth0"], check=True, capture_output=True,
                          text=True).stdout


def ip(netns: str, *args: str) -> None:
    subprocess.run(["ip", "-n", netns, *args], check=True, capture_output=True, text=True)


async def test_addresses_without_our_ifa_proto_are_never_reported_nor_removed(arp: ArpBackend, netns: str) -> None:
    ip(netns, "address", "add", "10.96.0.7/32", "dev", "eth0")  # an operator's, no protocol at all
    ip(netns, "-6", "address", "add", "fd00:96::7/128", "dev", "eth0", "nodad")
    other = ArpBackend(interface="eth0", netns=netns, protocol=249)  # another tool marking its own
    try:
        await other.apply(other.desired(want("10.96.0.8")), frozenset())
    finally:
        await other.close()
    ours = arp.desired(want("10.96.0.1"))
    await arp.apply(ours, frozenset())

    held = await arp.observe()
    assert held == {OwnedAddress(ipaddress.ip_address("10.96.0.1"), "eth0", 248)}

    await arp.apply(frozenset(), held)  # withdraw everything we own, as shutdown does
    assert await arp.observe() == frozenset()
    listing = addresses(netns)
    assert "10.96.0.1/32" not in listing
    for foreign in ("10.96.0.7/32", "10.96.0.8/32", "fd00:96::7/128"):
        assert foreign in listing


async def test_a_vip_already_held_without_our_protocol_is_refused_not_taken_over(arp: ArpBackend, netns: str) -> None:
    ip(netns, "address", "add", "10.96.0.7/32", "dev", "eth0")
    with pytest.raises(ApplyError, match="without our protocol"):
        await arp.apply(arp.desired(want("10.96.0.7")), frozenset())
    assert await arp.observe() == frozenset()
    assert "10.96.0.7/32" in addresses(netns)


async def test_each_address_names_its_vip(arp: ArpBackend) -> None:
    item = OwnedAddress(ipaddress.ip_address("fd00:96::1"), "eth0", 248)
    assert arp.vip_of(item) == ipaddress.ip_address("fd00:96::1")
