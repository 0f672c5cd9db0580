"""Change hints from rtnetlink multicast groups: one hint per burst of relevant messages."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Mapping
from typing import Any

from pyroute2 import AsyncIPRoute

RTMGRP_LINK = 0x1
RTMGRP_IPV4_IFADDR = 0x10
RTMGRP_IPV4_ROUTE = 0x40
RTMGRP_IPV6_IFADDR = 0x100
RTMGRP_IPV6_ROUTE = 0x400


async def netlink_hints(netns: str | None, groups: int, relevant: Callable[[Mapping[str, Any]], bool],
                        bound: Callable[[], None] | None = None) -> AsyncIterator[None]:
    """`bound()` runs once the socket is subscribed: every change after it reaches `relevant`."""
    monitor = AsyncIPRoute(netns=netns, groups=groups)
    try:
        await monitor.bind()
        if bound is not None:
            bound()
        while True:
            # get() yields one batch of broadcast messages and ends; a burst makes one hint.
            hit = False
            async for msg in monitor.get():
                hit |= relevant(msg)
            if hit:
                yield None
    finally:
        monitor.close()


class LazyRtnl:
    """One request socket per backend, opened on first use (in the backend's namespace), closed once."""

    def __init__(self, netns: str | None) -> None:
        self._netns = netns
        self._ipr: AsyncIPRoute | None = None

    async def get(self) -> AsyncIPRoute:
        if self._ipr is None:
            self._ipr = AsyncIPRoute(netns=self._netns)
        return self._ipr

    def close(self) -> None:
        if self._ipr is not None:
            self._ipr.close()
            self._ipr = None
