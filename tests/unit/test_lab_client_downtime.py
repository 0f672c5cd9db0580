"""The number `kvip lab --controlplane` and bench_cp_failover report: how long the client went unanswered."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from kvip.lab.api_probe import Attempt, client_downtime


def calls(*spec: tuple[float, float, bool]) -> list[Attempt]:
    return [Attempt(start, end, ok) for start, end, ok in spec]


def test_failures_after_the_fault_count_from_the_last_answer_to_the_next_one() -> None:
    record = calls((0.0, 0.1, True), (0.2, 0.3, True), (0.4, 1.4, False), (1.5, 2.5, False), (2.6, 2.7, True))
    assert client_downtime(record, since=0.35) == 2.7 - 0.35  # from the fault: the last answer came before it


def test_no_failed_call_is_no_downtime_however_slow_the_calls() -> None:
    assert client_downtime(calls((0.0, 0.9, True), (1.0, 1.9, True)), since=0.5) == 0.0


def test_a_client_still_failing_at_the_end_is_down_until_then() -> None:
    assert client_downtime(calls((0.0, 0.1, True), (1.0, 1.5, False)), since=0.5, until=3.0) == 2.5


def test_the_longest_outage_counts_not_the_sum() -> None:
    record = calls((0, 0.1, True), (1, 1.1, False), (2, 2.1, True), (3, 3.1, False), (4, 4.1, False), (5, 5.1, True))
    assert client_downtime(record, since=0.5) == 5.1 - 2.1


@given(st.lists(st.tuples(st.floats(0, 100), st.floats(0, 2), st.booleans()), max_size=30), st.floats(0, 100))
def test_downtime_is_never_negative_and_zero_without_failures(raw: list[tuple[float, float, bool]],
                                                             since: float) -> None:
    record = [Attempt(s, s + d, ok) for s, d, ok in raw]
    down = client_downtime(record, since)
    assert down >= 0.0
    if all(a.ok for a in record):
        assert down == 0.0
