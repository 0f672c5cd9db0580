"""The soak's checks and faults beyond routes (kvip issue #19): egress SNAT rules, the DHCP server, and the
`kvip.io/advertised-by` annotation — each judged, like the routes, from the stand-in's objects and the
kernel's state, never with kvip's own logic.

- Egress: a Service annotated `kube-vip.io/egress: "true"` must have, on each node that holds its VIP route,
  one rule per ready endpoint on that node (pod → VIP), and no other rule anywhere (read back from the rules'
  comments in `inet kvip_egress`). Fault: someone flushes or deletes that table.
- DHCP: the lab's dnsmasq is stopped and started again (keeping its lease file, as a real server does); a
  Service's leased address must stay where it was (its lease outlives the restart).
- advertised-by: once a step has settled, each live Service's annotation must name exactly the nodes that
  hold its VIP route (absent or empty when none does).
"""

from __future__ import annotations

import asyncio
import json
import random
import socket
import subprocess
from collections import defaultdict
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from kvip.lab.cluster import LabCluster
from kvip.lab.dnsmasq import Dnsmasq
from kvip.lab.objects import Endpoint, endpoint_slice, load_balancer_service

EGRESS = "kube-vip.io/egress"
ADVERTISED_BY = "kvip.io/advertised-by"
TABLE = "kvip_egress"
POD_CIDR = "10.244.0.0/16"  # the soak's endpoints are all in it
DHCP_SERVICE = "dhcp0"  # never moved nor churned by the soak: only the server and the agents fail under it


def egress_env() -> dict[str, str]:
    return {"egress_podcidr": POD_CIDR}


def egress_rules(netns: str, table: str = TABLE) -> set[tuple[str, str]]:
    """(pod, VIP) of every rule in the table, from the comments kvip writes; empty without a table."""
    listed = subprocess.run(["ip", "netns", "exec", netns, "nft", "-j", "list", "table", "inet", table],
                            capture_output=True, text=True, check=False)
    if listed.returncode != 0:
        return set()
    rules = [e["rule"] for e in json.loads(listed.stdout).get("nftables", []) if "rule" in e]
    found = set()
    for rule in rules:
        words = str(rule.get("comment", "")).split()
        found.add((words[3], words[2]) if len(words) >= 4 and words[0] == "kvip" else ("foreign", str(rule)))
    return found


def _ready_by_service(lab: LabCluster) -> dict[str, list[Mapping[str, Any]]]:
    slices: dict[str, list[Mapping[str, Any]]] = defaultdict(list)
    for obj in lab.api.list("endpointslices"):
        name = (obj["metadata"].get("labels") or {}).get("kubernetes.io/service-name", "")
        slices[name].extend(e for e in obj.get("endpoints") or [] if (e.get("conditions") or {}).get("ready", True))
    return slices


def expected_egress(lab: LabCluster, routes: Mapping[str, set[str]]) -> dict[str, set[tuple[str, str]]]:
    """node → (pod, VIP) it must SNAT, given the VIP routes each node holds (already judged right)."""
    ready = _ready_by_service(lab)
    want: dict[str, set[tuple[str, str]]] = {n: set() for n in routes}
    for svc in lab.api.list("services"):
        if (svc["metadata"].get("annotations") or {}).get(EGRESS, "").lower() != "true":
            continue
        vips = [i["ip"] for i in svc.get("status", {}).get("loadBalancer", {}).get("ingress", []) if ":" not in i["ip"]]
        for node, held in routes.items():
            for vip in vips:
                if f"{vip}/32" in held:
                    want[node].update((ip, vip) for e in ready[svc["metadata"]["name"]] if e.get("nodeName") == node
                                      for ip in e.get("addresses") or [])
    return want


def egress_view(lab: LabCluster, nodes: Iterable[str]) -> dict[str, set[tuple[str, str]]]:
    return {n: egress_rules(lab.node(n).netns) for n in nodes}


def flush_egress(lab: LabCluster, rng: random.Random) -> None:
    """Flush (rules gone, table kept) or delete our table on one node, as an operator's `nft` would."""
    node = lab.node(rng.choice(lab.node_names)).netns
    verb = rng.choice(("flush", "delete"))
    subprocess.run(["ip", "netns", "exec", node, "nft", verb, "table", "inet", TABLE], capture_output=True, check=False)


def advertised_by_mismatches(lab: LabCluster, routes: Mapping[str, set[str]]) -> list[str]:
    """Services whose kvip.io/advertised-by differs from the nodes holding their VIP routes."""
    wrong = []
    for svc in lab.api.list("services"):
        if svc["spec"].get("type") != "LoadBalancer":
            continue
        vips = [i["ip"] for i in svc.get("status", {}).get("loadBalancer", {}).get("ingress", [])]
        carriers = sorted(n for n, held in routes.items() if vips and all(f"{v}/32" in held for v in vips))
        said = (svc["metadata"].get("annotations") or {}).get(ADVERTISED_BY, "")
        if said != ",".join(carriers):
            wrong.append(f"{svc['metadata']['name']}: advertised-by {said!r}, routes on {carriers}")
    return wrong


def start_dhcp(lab: LabCluster, workdir: Path) -> Dnsmasq:
    """dnsmasq on the router's bridge, a default route on each node (table mode puts the DHCP macvlan on the
    default route's interface), and one Service asking for an address, with a ready pod on every node."""
    assert lab.topology is not None
    for name in lab.node_names:
        subprocess.run(["ip", "-n", lab.node(name).netns, "route", "replace", "default", "via",
                        str(lab.topology.router_address)], check=True, capture_output=True)
    server = Dnsmasq(lab.topology.router_netns, workdir / "dnsmasq")
    server.start()
    lab.api.create(load_balancer_service(DHCP_SERVICE, vips=["0.0.0.0"], via="spec", external_traffic_policy="Cluster",
                                         annotations={"kube-vip.io/loadbalancerHostname": "soak-dhcp"}))
    pods = [Endpoint(f"10.244.9.{i + 1}", name) for i, name in enumerate(lab.node_names)]
    lab.api.create(endpoint_slice(DHCP_SERVICE, pods))
    return server


async def restart_dhcp(server: Dnsmasq, rng: random.Random) -> None:
    """Stop the server a moment and start it again with its lease file: the leased address stays put."""
    await asyncio.to_thread(server.stop)
    await asyncio.sleep(rng.uniform(0.05, 0.5))
    await asyncio.to_thread(server.start)


def agent_status(lab: LabCluster, node: str) -> dict[str, Any]:
    """The agent's /status document, over its unix socket."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(5)
        sock.connect(str(lab.status_socket(node)))
        sock.sendall(b"GET /status HTTP/1.0\r\nHost: localhost\r\n\r\n")
        data = b"".join(iter(lambda: sock.recv(65536), b""))
    return json.loads(data.split(b"\r\n\r\n", 1)[1])


def dhcp_status_violations(lab: LabCluster) -> list[str]:
    """At a quiet point: exactly one agent's /status shows the DHCP Service's lease, bound, with the address
    its status says, on the node holding that address's route; no agent reports drift."""
    svc = lab.api.get("services", DHCP_SERVICE, "default")
    address = next(iter(i["ip"] for i in svc.get("status", {}).get("loadBalancer", {}).get("ingress", [])), None)
    docs = {n: agent_status(lab, n) for n in lab.node_names}
    rows = {n: [r for r in d.get("dhcp", []) if r["service"] == f"default/{DHCP_SERVICE}"] for n, d in docs.items()}
    showing = {n: r[0] for n, r in rows.items() if r}
    holder = [n for n in lab.node_names if f"{address}/32" in lab.routes(n)]
    problems = [f"{n}: dataplane drift {d['dataplaneDrift']}" for n, d in docs.items() if d.get("dataplaneDrift")]
    if len(showing) != 1 or list(showing) != holder or next(iter(showing.values()))["address"] != address \
            or next(iter(showing.values()))["state"] not in ("bound", "renewing", "rebinding"):
        problems.append(f"DHCP lease of {address} (route on {holder}) shown in /status as {showing}")
    return problems


async def settle_dhcp_status(lab: LabCluster, bound: float) -> list[str]:
    """`dhcp_status_violations` once it holds, or its last answer after `bound` seconds."""
    deadline = asyncio.get_running_loop().time() + bound
    while (problems := await asyncio.to_thread(dhcp_status_violations, lab)) and \
            asyncio.get_running_loop().time() < deadline:
        await asyncio.sleep(0.2)
    return problems
