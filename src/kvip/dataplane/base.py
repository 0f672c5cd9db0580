"""The one interface every dataplane backend implements (routes, ARP/NDP, BGP).

A backend owns a set of hashable *items* (a route, an address on an interface, an announced
prefix). The reconciler never knows what an item is: it asks the backend which items a
`DesiredState` means, which items the dataplane really holds (only ones we own), and to add
and remove the difference. `changes()` yields a bare hint whenever the dataplane may have moved
under us (netlink, a speaker restart); hints carry no payload because the reconciler re-reads
everything anyway.

The interface is complete: besides the diff, every backend answers `vip_of(item)` (which VIP an
item carries, for per-VIP reporting), `maintain()` (its own periodic work, run for the agent's
life), `status()` (what an operator needs in /status) and `collectors()` (its Prometheus metrics).
Backends inherit `DataplaneBase`, whose no-op defaults say "nothing of that kind here", so the
agent calls every member unconditionally. A base class rather than optional runtime-checkable
Protocols: `isinstance` against a Protocol checks only that a name exists, never its signature,
and would make "does this backend do X" a run-time question again — the probing this replaces.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Hashable, Mapping, Sequence
from typing import Protocol, TypeVar

from prometheus_client.registry import Collector

from kvip.core.model import DesiredState, IPAddress

Item = TypeVar("Item", bound=Hashable)


class DataplaneError(Exception):
    """A backend could not read or program the dataplane."""


class ApplyError(DataplaneError):
    """Some items could not be added or removed; the rest were applied.

    The reconciler retries these with backoff on its next pass.
    """

    def __init__(self, failed: Mapping[Hashable, str]) -> None:
        self.failed = dict(failed)
        detail = ", ".join(f"{item}: {why}" for item, why in list(self.failed.items())[:5])
        super().__init__(f"{len(self.failed)} dataplane change(s) failed: {detail}")


class Dataplane(Protocol[Item]):
    name: str

    def desired(self, state: DesiredState) -> frozenset[Item]:
        """The items that `state` means for this backend (pure)."""
        ...

    async def observe(self) -> frozenset[Item]:
        """What the dataplane holds now, restricted to items we own. A backend may answer from a view it
        keeps (its own changes plus its monitor), but only until `doubt()`: then it reads everything back."""
        ...

    def doubt(self) -> None:
        """The next `observe()` must read the whole dataplane back (check period, retry, resync)."""
        ...

    async def apply(self, add: frozenset[Item], remove: frozenset[Item]) -> None:
        """Add then remove; raise `ApplyError` listing what failed after trying everything."""
        ...

    def changes(self) -> AsyncIterator[None]:
        """Hints that the dataplane changed behind our back (may be spurious)."""
        ...

    def vip_of(self, item: Item) -> IPAddress:
        """The VIP this item advertises (pure)."""
        ...

    async def maintain(self) -> None:
        """The backend's own periodic work (announcements, speaker supervision); runs until cancelled."""
        ...

    def status(self) -> Mapping[str, object]:
        """Backend-specific state for /status (JSON-serialisable); empty when there is none."""
        ...

    def collectors(self) -> Sequence[Collector]:
        """Backend-specific Prometheus collectors, registered once by the agent."""
        ...

    async def close(self) -> None: ...


class DataplaneBase:
    """No-op defaults for the members a backend may have nothing to say about."""

    async def maintain(self) -> None:
        await asyncio.Event().wait()  # nothing periodic: idle until the agent cancels us

    def doubt(self) -> None:
        return None  # (a backend without a kept view reads everything back on every observe())

    def status(self) -> Mapping[str, object]:
        return {}

    def collectors(self) -> Sequence[Collector]:
        return ()

    async def close(self) -> None:
        return None
