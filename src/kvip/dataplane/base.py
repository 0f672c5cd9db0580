"""The one interface every dataplane backend implements (routes, ARP/NDP, BGP).

A backend owns a set of hashable *items* (a route, an address on an interface, an announced
prefix). The reconciler never knows what an item is: it asks the backend which items a
`DesiredState` means, which items the dataplane really holds (only ones we own), and to add
and remove the difference. `changes()` yields a bare hint whenever the dataplane may have moved
under us (netlink, a speaker restart); hints carry no payload because the reconciler re-reads
everything anyway.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Hashable
from typing import Protocol, TypeVar

from kvip.core.model import DesiredState

Item = TypeVar("Item", bound=Hashable)


class DataplaneError(Exception):
    """A backend could not read or program the dataplane."""


class ApplyError(DataplaneError):
    """Some items could not be added or removed; the rest were applied.

    The reconciler retries these with backoff on its next pass.
    """

    def __init__(self, failed: dict[Hashable, str]) -> None:
        self.failed = failed
        detail = ", ".join(f"{item}: {why}" for item, why in list(failed.items())[:5])
        super().__init__(f"{len(failed)} dataplane change(s) failed: {detail}")


class Dataplane(Protocol[Item]):
    name: str

    def desired(self, state: DesiredState) -> frozenset[Item]:
        """The items that `state` means for this backend (pure)."""
        ...

    async def observe(self) -> frozenset[Item]:
        """What the dataplane holds now, restricted to items we own."""
        ...

    async def apply(self, add: frozenset[Item], remove: frozenset[Item]) -> None:
        """Add then remove; raise `ApplyError` listing what failed after trying everything."""
        ...

    def changes(self) -> AsyncIterator[None]:
        """Hints that the dataplane changed behind our back (may be spurious)."""
        ...

    async def close(self) -> None: ...
