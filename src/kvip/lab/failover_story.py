"""The lab's second story, for leader-elected modes (`--election global|service`, `--mode table|arp`):
one node advertises; a clean stop, a partition (its Lease access revoked) and a hand-made deletion
each move or repair the VIP, and each step is measured until exactly one node holds it again.

In ARP mode the VIP is an address on eth0 and the router namespace plays the client: after each
failover its neighbour entry for the VIP must point at the new holder's MAC.
"""

from __future__ import annotations

import asyncio
import json
import re
import subprocess
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from kvip.lab.cluster import LabCluster
from kvip.lab.objects import Endpoint, endpoint_slice, load_balancer_service

NODES = ("node-a", "node-b", "node-c")


@dataclass(frozen=True)
class Mode:
    name: str  # table | arp
    election: str  # global | service
    vip: str

    def agent_env(self) -> dict[str, str]:
        env = {"vip_leaseduration": "3", "vip_renewdeadline": "2", "vip_retryperiod": "0.5"}
        env["vip_leaderelection" if self.election == "global" else "svc_election"] = "true"
        if self.name == "arp":
            env.update({"vip_routingtable": "false", "vip_arp": "true", "vip_interface": "eth0", "vip_arpRate": "500"})
        return env


def mode_for(name: str, election: str) -> Mode:
    return Mode(name, election, "10.250.100.10" if name == "arp" else "10.96.0.100")


def holders(lab: LabCluster, mode: Mode) -> set[str]:
    if mode.name == "table":
        return {n for n, routes in lab.all_routes().items() if f"{mode.vip}/32" in routes}
    return {n for n in NODES if f"inet {mode.vip}/32" in subprocess.run(
        ["ip", "-n", lab.node(n).netns, "addr", "show", "dev", "eth0"], capture_output=True, text=True).stdout}


def mac_of(lab: LabCluster, node: str) -> str:
    out = subprocess.run(["ip", "-n", lab.node(node).netns, "-j", "link", "show", "dev", "eth0"],
                         capture_output=True, text=True, check=True).stdout
    return json.loads(out)[0]["address"]


def client_neighbour(lab: LabCluster, vip: str) -> str | None:
    assert lab.topology is not None
    out = subprocess.run(["ip", "-n", lab.topology.router_netns, "neigh", "show", vip], capture_output=True,
                         text=True).stdout
    found = re.search(r"lladdr (\S+)", out)
    return found.group(1) if found else None


@dataclass
class Outcome:
    title: str
    seconds: float | None
    detail: str
    error: str | None = None


async def single_holder(lab: LabCluster, mode: Mode, *, not_on: set[str], timeout: float) -> tuple[str, float]:
    start = time.monotonic()
    while time.monotonic() - start < timeout:
        held = holders(lab, mode) - not_on if mode.name == "table" else holders(lab, mode)
        if len(held) == 1 and not (held & not_on):
            node = held.pop()
            if mode.name == "arp":
                # the client learns the new MAC from the gratuitous ARP, without asking
                if client_neighbour(lab, mode.vip) not in (None, mac_of(lab, node)):
                    await asyncio.sleep(0.02)
                    continue
            return node, time.monotonic() - start
        await asyncio.sleep(0.02)
    raise TimeoutError(f"no single holder of {mode.vip} within {timeout}s (holders: {sorted(holders(lab, mode))})")


async def play(lab: LabCluster, mode: Mode, say: Callable[[str], None], timeout: float) -> list[Outcome]:
    lab.api.create(load_balancer_service("demo", vips=[mode.vip], external_traffic_policy="Cluster"))
    lab.api.create(endpoint_slice("demo", [Endpoint("10.244.1.10", "node-a"), Endpoint("10.244.2.10", "node-b")]))
    outcomes: list[Outcome] = []
    state: dict[str, str] = {}

    async def step(title: str, explain: str, act: Callable[[], Awaitable[set[str]]]) -> None:
        say(f"== {title}\n   {explain}")
        try:
            t0 = time.monotonic()
            excluded = await act()
            node, _ = await single_holder(lab, mode, not_on=excluded, timeout=timeout)
            took = time.monotonic() - t0
            state["leader"] = node
            outcomes.append(Outcome(title, took, f"{mode.vip} on {node}"))
            say(f"   converged: {mode.vip} held by {node} only, in {took * 1000:.0f} ms")
        except Exception as exc:  # report and go on: the lab must still tear down
            outcomes.append(Outcome(title, None, "", str(exc)))
            say(f"   FAILED: {exc}")

    async def nothing() -> set[str]:
        if mode.name == "arp":
            assert lab.topology is not None
            await asyncio.to_thread(subprocess.run, ["ip", "netns", "exec", lab.topology.router_netns, "ping", "-c1",
                                                     "-W1", mode.vip], capture_output=True)
        return set()

    async def stop_leader() -> set[str]:
        leader = state["leader"]
        await lab.stop_agent(leader)
        lab.start_agent(leader)  # it comes back as a follower
        return {leader}

    async def partition_leader() -> set[str]:
        leader = state["leader"]
        lab.api.deny("leases", ("get", "list", "create", "update", "patch"), user=leader)
        state["partitioned"] = leader
        return {leader}

    async def delete_by_hand() -> set[str]:
        lab.api.allow("leases", ("get", "list", "create", "update", "patch"), user=state.pop("partitioned", ""))
        netns = lab.node(state["leader"]).netns
        if mode.name == "table":
            command = ["ip", "-n", netns, "route", "del", f"{mode.vip}/32", "table", "198"]
        else:
            command = ["ip", "-n", netns, "addr", "del", f"{mode.vip}/32", "dev", "eth0"]
        subprocess.run(command, check=True)
        return set()

    await step("Leader elected", f"{mode.election} election, {mode.name} mode: exactly one node advertises.", nothing)
    await step("Leader stopped cleanly (SIGTERM)", "It withdraws, then releases its Lease: another node takes over "
               "within one retry period.", stop_leader)
    await step("Leader cut off from its Leases (403)", "It cannot renew, so it withdraws at its renew deadline — "
               "before anyone else may acquire (no two holders at any instant).", partition_leader)
    await step("VIP deleted by hand on the leader", "The netlink watch sees it and the next pass restores it.",
               delete_by_hand)
    return outcomes
