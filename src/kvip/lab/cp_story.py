"""`kvip lab --controlplane`: the control-plane VIP story, each step measured as a kubectl user sees it.

Three control-plane nodes, each with its own API server, one elected holder of the VIP; a client
namespace runs `kubectl --server https://VIP:6443 get --raw /livez` in a loop. The leader's API server
dies, then the next leader's agent is killed, then the next leader's link is cut (its API server loses
etcd with it); each time the VIP moves, and the step prints how long the client got no answer. A
background checker reads every node's state every 50 ms: never two holders at once.
"""

from __future__ import annotations

import asyncio
import shutil
import signal
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from kvip.lab.api_probe import ClientProbe
from kvip.lab.control_plane import ControlPlaneLab, HolderChecker


@dataclass
class CpOutcome:
    title: str
    holder: str | None = None
    moved_seconds: float | None = None
    downtime_seconds: float | None = None
    error: str | None = None


def probe_kind() -> str:
    """kubectl when installed (what an operator runs), else the same request from Python."""
    return "kubectl" if shutil.which("kubectl") else "http"


async def play_control_plane(lab: ControlPlaneLab, say: Callable[[str], None], timeout: float = 30.0,
                             probe: ClientProbe | None = None) -> tuple[list[CpOutcome], HolderChecker]:
    probe = probe or lab.probe(probe_kind(), interval=0.05, timeout=1.0)
    outcomes: list[CpOutcome] = []
    state: dict[str, str] = {}
    watch: dict[str, asyncio.Future[float]] = {}
    checker = HolderChecker(lab)

    async def step(title: str, explain: str, act: Callable[[str | None], Awaitable[frozenset[str]]],
                   after: Callable[[str], Awaitable[str]] | None = None, *, stale_ok: bool = False) -> None:
        """`act` faults and returns the nodes that must lose the VIP; with `stale_ok` they may keep a stale
        copy (a killed agent cannot remove it) and one other node must hold it."""
        say(f"== {title}\n   {explain}")
        outcome = CpOutcome(title)
        outcomes.append(outcome)
        try:
            t0 = time.monotonic()
            not_on = await act(state.get("leader"))
            held, _ = await lab.wait_holders(lambda h: len(h - not_on) == 1 and (stale_ok or not h & not_on),
                                             timeout=timeout, what=f"one holder, not on {sorted(not_on)}")
            holder = next(iter(held - not_on))
            outcome.holder, outcome.moved_seconds = holder, time.monotonic() - t0
            ok_at = await probe.wait_ok_after(time.monotonic(), timeout)
            outcome.downtime_seconds = probe.downtime(t0, until=ok_at)
            state["leader"] = holder
            failed = sum(not a.ok for a in probe.attempts if a.started >= t0)
            say(f"   VIP on {holder} only, after {outcome.moved_seconds * 1000:.0f} ms; client-visible downtime "
                f"{outcome.downtime_seconds * 1000:.0f} ms ({failed} failed {probe.kind} call(s))")
            if after is not None:
                say(f"   {await after(holder)}")
        except Exception as exc:  # report and go on: the lab must still tear down
            for pending in watch.values():
                pending.cancel()
            watch.clear()
            outcome.error = str(exc).splitlines()[0]
            say(f"   FAILED: {outcome.error}")

    async def nothing(_: str | None) -> frozenset[str]:
        return frozenset()

    async def kill_api(leader: str | None) -> frozenset[str]:
        assert leader is not None
        state["api_down"] = leader
        await lab.kill_api(leader)
        return frozenset({leader})

    async def restart_api(_: str) -> str:
        node = state.pop("api_down")
        await lab.restore_api(node)
        return f"{node}'s API server restarted; it stays a follower"

    async def kill_agent(leader: str | None) -> frozenset[str]:
        assert leader is not None
        state["killed"] = leader
        checker.ignore.add(leader)  # kill -9 leaves its VIP behind until the agent restarts (kube-vip too)
        await lab.kill_agent(leader, signal.SIGKILL)
        return frozenset({leader})

    async def restart_agent(_: str) -> str:
        node = state.pop("killed")
        lab.start_agent(node)  # what the kubelet does with a static Pod
        t0 = time.monotonic()
        await lab.wait_holders(lambda held: node not in held, timeout=timeout, what=f"{node} cleans up")
        checker.ignore.discard(node)
        return f"{node}'s agent restarted (as the kubelet would) and removed its stale VIP in " \
               f"{(time.monotonic() - t0) * 1000:.0f} ms"

    async def cut_link(leader: str | None) -> frozenset[str]:
        assert leader is not None
        lab.cut_link(leader)
        cut_at = time.monotonic()

        async def dropped() -> float:
            await lab.wait_holders(lambda held: leader not in held, timeout=timeout, what=f"{leader} drops it")
            return time.monotonic() - cut_at

        watch["dropped"] = asyncio.ensure_future(dropped())
        return frozenset({leader})

    async def report_drop(_: str) -> str:
        took = await watch.pop("dropped")
        return f"the cut-off node dropped the VIP by itself {took * 1000:.0f} ms after the cut (its renew deadline)"

    async def restore(_: str | None) -> frozenset[str]:
        for node in list(lab.cut):
            lab.restore_link(node)
        return frozenset()

    await probe_until_ready(lab, probe, timeout)
    with checker:
        await step("VIP up", "Each node's agent checks its own API server; one wins the Lease and holds the VIP "
                   f"({lab.mode.name} mode).", nothing)
        await step("The leader's API server dies", "Its agent sees /livez fail and cannot renew: it lets the "
                   "VIP go; another node takes the Lease.", kill_api, restart_api)
        await step("The leader's agent is killed (kill -9)", "Nothing withdraws; the others take over when "
                   "its Lease expires.", kill_agent, restart_agent, stale_ok=True)
        await step("The leader's link is cut", "Its API server loses etcd, it cannot renew: it drops the VIP "
                   "at its renew deadline, before anyone else may take it.", cut_link, report_drop)
        await step("Everything restored", "The link comes back; the VIP stays where it is.", restore)
    probe.stop()
    say(f"   never two holders: at most {checker.max_holders} node(s) held the VIP in {checker.samples} checks "
        f"(one every {checker.period * 1000:.0f} ms)")
    return outcomes, checker


async def probe_until_ready(lab: ControlPlaneLab, probe: ClientProbe, timeout: float) -> None:
    """Start the client loop once a holder exists, so the first step does not count the lab's start."""
    await lab.wait_holders(lambda held: bool(held), timeout=timeout, what="a first holder")
    probe.start()
    await probe.wait_ok_after(time.monotonic(), timeout)
