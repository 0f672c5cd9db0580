"""The story `kvip lab` plays: the seed's failure, step by step, each step a measured convergence.

A step is an action on the cluster plus the state every node and the router must reach. The story
is cumulative (step 3 needs the RBAC revoked in step 2), so `--scenario NAME` plays the steps up to
and including NAME.
"""

from __future__ import annotations

import os
import signal
import subprocess
from collections.abc import Callable
from dataclasses import dataclass

from kvip.lab.cluster import LabCluster
from kvip.lab.objects import Endpoint, endpoint_slice, load_balancer_service

DEMO_VIP = "10.96.0.100"
DEMO_ROUTE = f"{DEMO_VIP}/32"


@dataclass(frozen=True)
class Step:
    name: str
    title: str
    explain: str
    action: Callable[[LabCluster], None]
    advertising: frozenset[str]  # nodes that must hold the demo route afterwards


def _set_endpoints(lab: LabCluster, nodes: list[str]) -> None:
    current = lab.api.get("endpointslices", "demo-kvip", "default")
    eps = [{"addresses": [f"10.244.{i + 1}.10"], "nodeName": n, "conditions": {"ready": True}}
           for i, n in enumerate(nodes)]
    lab.api.replace({**current, "endpoints": eps})


def _create_demo(lab: LabCluster) -> None:
    lab.api.create(load_balancer_service("demo", vips=[DEMO_VIP], external_traffic_policy="Local"))
    lab.api.create(endpoint_slice("demo", [Endpoint("10.244.1.10", "node-a"), Endpoint("10.244.2.10", "node-b")]))


def _revoke(lab: LabCluster) -> None:
    lab.api.deny("endpointslices", ("get", "list", "watch"), user="node-a")


def _restore(lab: LabCluster) -> None:
    lab.api.allow("endpointslices", ("get", "list", "watch"), user="node-a")


def _delete_route_by_hand(lab: LabCluster) -> None:
    subprocess.run(["ip", "-n", lab.node("node-b").netns, "route", "del", DEMO_ROUTE, "table", "198"], check=True)


STORY: tuple[Step, ...] = (
    Step("anycast", "Normal anycast",
         "Service demo (externalTrafficPolicy Local) has pods on node-a and node-b: both advertise, "
         "the router load-balances over both (ECMP).",
         _create_demo, frozenset({"node-a", "node-b"})),
    Step("rbac-revoked", "RBAC revoked on node-a",
         "node-a's agent gets 403 on EndpointSlices. It keeps its last good cache (fail-static) "
         "and says so in its log and metrics.",
         _revoke, frozenset({"node-a", "node-b"})),
    Step("pod-moved", "The pod on node-a moves to node-c (node-a cannot see it)",
         "node-c starts advertising at once. node-a is blind and still advertises: this is where "
         "kube-vip kept the route forever once the delete event was lost.",
         lambda lab: _set_endpoints(lab, ["node-c", "node-b"]), frozenset({"node-a", "node-b", "node-c"})),
    Step("rbac-restored", "RBAC restored on node-a",
         "node-a relists at once, recomputes everything from the fresh cache and withdraws: "
         "no event had to be replayed.",
         _restore, frozenset({"node-b", "node-c"})),
    Step("route-deleted", "Someone runs `ip route del` on node-b",
         "The netlink watch sees our route disappear and the next pass puts it back.",
         _delete_route_by_hand, frozenset({"node-b", "node-c"})),
)

def _kill_speaker(lab: LabCluster) -> None:
    pid = int((lab.workdir / "bgp-node-b" / "bird.pid").read_text())
    os.kill(pid, signal.SIGKILL)


def _cordon(lab: LabCluster) -> None:
    lab.api.patch("nodes", "node-c", {"spec": {"unschedulable": True}})


# BGP mode: the agents are the BGP speakers (no table 198, no BIRD on the nodes), the router peers
# with them directly. Same failure story, then the two things only BGP mode has.
BGP_STORY: tuple[Step, ...] = STORY[:4] + (
    Step("speaker-killed", "node-b's BGP speaker is killed (kill -9)",
         "The router drops node-b's paths; kvip restarts its BIRD at once and re-announces.",
         _kill_speaker, frozenset({"node-b", "node-c"})),
    Step("cordon-drain", "node-c is cordoned",
         "Make-before-break: node-c re-announces with GRACEFUL_SHUTDOWN (65535:0) so the router moves "
         "traffic away, waits its drain time, then withdraws.",
         _cordon, frozenset({"node-b"})),
)

STEP_NAMES = tuple(step.name for step in STORY)
BGP_STEP_NAMES = tuple(step.name for step in BGP_STORY)


def steps_until(name: str, story: tuple[Step, ...] = STORY) -> tuple[Step, ...]:
    names = tuple(step.name for step in story)
    if name == "all":
        return story
    if name not in names:
        raise ValueError(f"unknown scenario {name!r}; choose from: all, {', '.join(names)}")
    return story[: names.index(name) + 1]
