"""Per-Service macvlan links on the Services interface, each with the Service's stable MAC.

Ownership: kvip's macvlans carry the alias `kvip-dhcp` (IFLA_IFALIAS), so `ours()` finds those left by
a previous run and nothing else is ever deleted; an existing link of the asked name without the alias is
used as it is (kube-vip reuses an existing interface too) and never removed.
"""

from __future__ import annotations

import logging
from pathlib import Path

from pyroute2 import AsyncIPRoute
from pyroute2.netlink.exceptions import NetlinkError

from kvip.core.dhcp import mac_text

log = logging.getLogger("kvip.dhcp")

ALIAS = "kvip-dhcp"


class MacvlanError(Exception):
    """A macvlan could not be created or found; the message says which and why."""


async def ours() -> dict[str, str]:
    """kvip's macvlans present now: name -> MAC."""
    async with AsyncIPRoute() as ipr:
        found = {}
        async for link in await ipr.link("dump"):
            if link.get("ifalias") == ALIAS:
                found[link.get("ifname")] = link.get("address")
        return found


async def ensure(name: str, parent: str, mac: bytes) -> None:
    """The macvlan `name` on `parent` with `mac`, up, rp_filter off (replies come to an address the
    kernel may not see as its own on this link, as kube-vip found: its issue #1170)."""
    async with AsyncIPRoute() as ipr:
        existing = await ipr.link_lookup(ifname=name)
        if not existing:
            parents = await ipr.link_lookup(ifname=parent)
            if not parents:
                raise MacvlanError(f"Services interface {parent!r} does not exist; no macvlan {name}")
            try:
                await ipr.link("add", ifname=name, kind="macvlan", link=parents[0], macvlan_mode="bridge",
                               address=mac_text(mac))
            except NetlinkError as exc:
                raise MacvlanError(f"cannot create macvlan {name} on {parent}: {exc}") from exc
            log.info("created macvlan %s on %s with MAC %s", name, parent, mac_text(mac))
            existing = await ipr.link_lookup(ifname=name)
            await ipr.link("set", index=existing[0], ifalias=ALIAS)  # (not taken by "add")
            _no_dad(name)
        await ipr.link("set", index=existing[0], state="up")
    rp_filter = Path(f"/proc/sys/net/ipv4/conf/{name}/rp_filter")
    try:
        rp_filter.write_text("0")
    except OSError as exc:
        log.warning("cannot set rp_filter of %s: %s", name, exc)


def _no_dad(name: str) -> None:
    """Before the link is up: its link-local address (the DHCPv6 client's source) and a leased VIP on it
    are usable at once, not tentative for DAD's second; its MAC is the Service's own, so no other host
    holds them. No router advertisement adds addresses to it either."""
    for setting in ("accept_dad", "accept_ra"):
        try:
            Path(f"/proc/sys/net/ipv6/conf/{name}/{setting}").write_text("0")
        except OSError as exc:  # IPv6 disabled: the DHCPv4 client does not care
            log.debug("cannot set %s of %s: %s", setting, name, exc)


async def remove(name: str) -> None:
    """Delete kvip's macvlan `name` (any address on it goes with it); absent or not ours: nothing."""
    async with AsyncIPRoute() as ipr:
        found = await ipr.link_lookup(ifname=name)
        if not found:
            return
        links = list(await ipr.link("get", index=found[0]))
        if not links or links[0].get("ifalias") != ALIAS:
            return
        try:
            await ipr.link("del", index=found[0])
            log.info("removed macvlan %s", name)
        except NetlinkError as exc:
            log.warning("cannot remove macvlan %s: %s", name, exc)
