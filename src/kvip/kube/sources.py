"""What a reflector reports about its source (state, counters), for the status document and the metrics.

Kept apart from `kvip.kube.reflector` (which re-exports both) so that module stays one list+watch loop.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass


class SourceState(enum.Enum):
    STARTING = "starting"  # never listed successfully
    SYNCED = "synced"  # list succeeded; watch running or about to resume
    DEGRADED = "degraded"  # API unreachable or erroring; store is the last good one
    FORBIDDEN = "forbidden"  # 401/403; store is the last good one


@dataclass(frozen=True)
class SourceStatus:
    resource: str
    state: SourceState
    objects: int
    resource_version: str
    relists: int
    watch_restarts: int
    last_list_at: float | None  # wall clock (time.time()) of the last successful list
    last_ok_monotonic: float | None  # last moment the API answered us for this source
    last_error: str | None
    errors: Mapping[str, int]  # by HTTP status code, or "network" for transport failures
    checks: int = 0  # consistency checks completed
    check_repairs: int = 0  # objects a check found different and fetched again
    last_check_at: float | None = None  # wall clock of the last completed check
