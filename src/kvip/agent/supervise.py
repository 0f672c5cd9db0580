"""`supervise`: every agent task runs forever, and one that fails is restarted (fail-static), never fatal.

Moved out of `kvip.agent.wiring` to keep that module under the 400-line limit; re-exported there.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

from kvip.runtime.tasks import Backoff

log = logging.getLogger("kvip.agent.wiring")


async def supervise(name: str, start: Callable[[], Awaitable[None]], *, on_failure: Callable[[], None],
                    backoff: Backoff | None = None) -> None:
    """Run `start()` forever: every task is meant to run until cancelled, so one that raises or returns
    is a bug — logged, counted by `on_failure`, and restarted after a backoff. Never raises but for
    cancellation; what is advertised stays as it is meanwhile (fail-static)."""
    backoff = backoff or Backoff(initial=0.5, cap=30.0)
    loop = asyncio.get_running_loop()
    while True:
        began = loop.time()
        try:
            await start()
            log.error("task %s ended unexpectedly; restarting it (advertisements kept)", name)
        except asyncio.CancelledError:
            raise
        except Exception:  # fail-static: any bug in a task is survived (logged), never a withdraw
            log.exception("task %s failed; restarting it (advertisements kept)", name)
        on_failure()
        if loop.time() - began > 60.0:  # it ran well for a while: this is a new failure, not a crash loop
            backoff.reset()
        await asyncio.sleep(backoff.next_delay())
