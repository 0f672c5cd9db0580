"""Small asyncio building blocks shared by the adapters and the loop: the coalescing `Trigger`,
`cancel_and_wait` for task lifetimes, `wait_event` (a bounded wait that never swallows a cancel), and a
capped exponential `Backoff` with full jitter.

No kvip imports: this sits below `kube`, `dataplane` and `reconcile`."""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any


@dataclass
class Backoff:
    initial: float = 0.2
    cap: float = 10.0
    factor: float = 2.0
    _attempt: int = field(default=0, init=False)

    def next_delay(self) -> float:
        ceiling = min(self.cap, self.initial * self.factor**self._attempt)
        self._attempt += 1
        # Jitter in [ceiling/2, ceiling] keeps a herd of agents apart without ever waiting ~0.
        return random.uniform(ceiling / 2, ceiling)

    def reset(self) -> None:
        self._attempt = 0


async def wait_event(event: asyncio.Event, timeout: float) -> bool:
    """Wait for `event` at most `timeout` seconds; True if it was set.

    Not `asyncio.wait_for`: on Python 3.11 it returns normally when the event is set in the same loop
    iteration as the task is cancelled, so the cancel is lost and a shutdown waits a whole period
    (gh-86296; seen as SIGTERM ignored for 10 s). `asyncio.timeout` re-raises the cancel."""
    try:
        async with asyncio.timeout(timeout):
            await event.wait()
    except TimeoutError:
        return False
    return True


async def cancel_and_wait(tasks: Iterable[asyncio.Task[Any]]) -> None:
    """Cancel tasks and wait until each has really finished (whatever it raised)."""
    tasks = list(tasks)
    for task in tasks:
        task.cancel()
    for task in tasks:
        with contextlib.suppress(BaseException):
            await task


class Trigger:
    """Coalescing wake-up: any number of `fire()` calls between two waits make one pass."""

    def __init__(self) -> None:
        self._event = asyncio.Event()
        self._reasons: Counter[str] = Counter()
        self._timers: set[asyncio.TimerHandle] = set()
        self.first_fired_at: float | None = None  # wall clock of the oldest unserved fire
        self.last_batch_fired_at: float | None = None

    def fire(self, reason: str) -> None:
        if not self._reasons:
            self.first_fired_at = time.time()
        self._reasons[reason] += 1
        self._event.set()

    def fire_later(self, delay: float, reason: str) -> None:
        loop = asyncio.get_running_loop()
        handle: asyncio.TimerHandle

        def due() -> None:
            self._timers.discard(handle)
            self.fire(reason)

        handle = loop.call_later(delay, due)
        self._timers.add(handle)

    async def wait(self) -> Counter[str]:
        await self._event.wait()
        self._event.clear()
        reasons, self._reasons = self._reasons, Counter()
        self.last_batch_fired_at, self.first_fired_at = self.first_fired_at, None
        return reasons

    def cancel_timers(self) -> None:
        for handle in self._timers:
            handle.cancel()
        self._timers.clear()
