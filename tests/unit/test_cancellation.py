"""A cancel is never lost: SIGTERM must end every agent task at once, whatever it was waiting for.

Python 3.11's `asyncio.wait_for` returns normally when the awaited thing completes in the same loop
iteration as the cancel arrives (gh-86296). The heartbeat did exactly that when the last pass's report
woke it as SIGTERM cancelled it: the agent then ignored SIGTERM for a whole heartbeat period and was
SIGKILLed with its routes still in place."""

from __future__ import annotations

import ast
import asyncio
from pathlib import Path

import pytest

from kvip.kube.heartbeat import HeartbeatPublisher
from kvip.runtime.tasks import wait_event

SRC = Path(__file__).resolve().parents[2] / "src" / "kvip"


async def _cancel_as_it_is_set(event: asyncio.Event, waiter: asyncio.Task[object]) -> None:
    await asyncio.sleep(0)  # the waiter is parked on the event
    event.set()
    waiter.cancel()  # same loop iteration: the race wait_for loses
    with pytest.raises(asyncio.CancelledError):
        await asyncio.wait_for(asyncio.shield(waiter), 2.0)


async def test_a_cancel_that_arrives_as_the_event_is_set_still_ends_the_wait() -> None:
    event = asyncio.Event()

    async def wait_then_linger() -> None:
        await wait_event(event, 30.0)
        await asyncio.sleep(30.0)  # reached only if the cancel was swallowed

    await _cancel_as_it_is_set(event, asyncio.create_task(wait_then_linger()))


async def test_wait_event_says_whether_the_event_came_or_the_time_ran_out() -> None:
    event = asyncio.Event()
    assert await wait_event(event, 0.01) is False
    event.set()
    assert await wait_event(event, 0.01) is True


async def test_the_heartbeat_stops_when_cancelled_as_the_last_pass_reports() -> None:
    publisher = HeartbeatPublisher(None, node_name="node-a", namespace="kube-system",  # type: ignore[arg-type]
                                   mode="table", period=60.0)
    runner = asyncio.create_task(publisher.run())
    await asyncio.sleep(0)
    publisher.report(["10.96.0.10/32"], ["10.96.0.10/32"])  # sets the wake-up, as a pass does
    runner.cancel()
    with pytest.raises(asyncio.CancelledError):
        await asyncio.wait_for(asyncio.shield(runner), 2.0)


def test_no_agent_code_waits_with_asyncio_wait_for() -> None:
    users = []
    for path in sorted(SRC.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if (isinstance(node, ast.Attribute) and node.attr == "wait_for"
                    and isinstance(node.value, ast.Name) and node.value.id == "asyncio"):
                users.append(f"{path.relative_to(SRC)}:{node.lineno}")
    assert not users, f"use kvip.runtime.tasks.wait_event or asyncio.timeout instead: {users}"
