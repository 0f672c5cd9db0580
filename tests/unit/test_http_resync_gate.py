"""POST /resync is coalesced: at most one relist per window, however many requests (kvip issue #17, row 5).

The review sent 1,037 POSTs in 10 s and got ~20 full LISTs per second per resource from every node.
"""

from __future__ import annotations

import asyncio
import itertools

from hypothesis import given
from hypothesis import strategies as st

from kvip.agent.http import Resyncer, ResyncGate, resync_ran, resync_request

WINDOW = 10.0


def test_first_request_relists_at_once() -> None:
    answer, gate = resync_request(ResyncGate(), now=100.0, min_interval=WINDOW)
    assert answer.run_now and answer.next_at == 100.0 and answer.schedule_at is None
    assert gate == ResyncGate(last_run=100.0)


def test_a_request_inside_the_window_schedules_one_relist_at_its_end_and_the_rest_join_it() -> None:
    _, gate = resync_request(ResyncGate(), now=100.0, min_interval=WINDOW)
    second, gate = resync_request(gate, now=101.0, min_interval=WINDOW)
    assert not second.run_now and second.schedule_at == 110.0 and second.next_at == 110.0
    third, gate = resync_request(gate, now=105.0, min_interval=WINDOW)
    assert not third.run_now and third.schedule_at is None and third.next_at == 110.0


def test_after_the_scheduled_relist_a_new_window_starts() -> None:
    _, gate = resync_request(ResyncGate(), now=100.0, min_interval=WINDOW)
    _, gate = resync_request(gate, now=101.0, min_interval=WINDOW)
    gate = resync_ran(gate, now=110.0)
    answer, _ = resync_request(gate, now=112.0, min_interval=WINDOW)
    assert not answer.run_now and answer.schedule_at == 120.0


@given(st.lists(st.floats(min_value=0.0, max_value=1000.0, allow_nan=False), max_size=300))
def test_relists_are_never_closer_than_the_window(times: list[float]) -> None:
    """Every relist that runs, immediate or scheduled, is at least a window after the previous one."""
    gate, runs = ResyncGate(), []
    for now in sorted(times):
        if gate.pending_at is not None and now >= gate.pending_at:  # the timer fires before this request
            runs.append(gate.pending_at)
            gate = resync_ran(gate, gate.pending_at)
        answer, gate = resync_request(gate, now, WINDOW)
        if answer.run_now:
            runs.append(now)
    assert all(later - earlier >= WINDOW - 1e-9 for earlier, later in itertools.pairwise(runs))


async def test_a_burst_of_1000_requests_makes_one_relist_now_and_one_at_the_window_end() -> None:
    relists: list[float] = []
    loop = asyncio.get_running_loop()
    resyncer = Resyncer(lambda: relists.append(loop.time()), min_interval=0.3)
    answers = [resyncer.request()[0] for _ in range(1000)]
    assert len(relists) == 1
    assert sum(a.run_now for a in answers) == 1 and sum(a.schedule_at is not None for a in answers) == 1
    await asyncio.sleep(0.5)
    assert len(relists) == 2 and relists[1] - relists[0] >= 0.3 - 0.01
    await asyncio.sleep(0.4)
    assert len(relists) == 2  # nothing more was asked for
    resyncer.close()
