"""`kvip status` (this node's agent, over its HTTP endpoint) and `kvip audit` (the whole cluster)."""

from __future__ import annotations

import argparse
import asyncio
import http.client
import json
import os
import socket
import sys
import urllib.request
from typing import Any

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from kvip.cli.status_dataplane import print_dataplane, print_drift
from kvip.cli.status_handovers import print_handovers


def _e(value: Any) -> str:
    """A value from the cluster (names, annotations, problem messages) as literal text: rich must not
    read `[/bold]` in a tenant's annotation as markup (kvip issue #17, row 13: it crashed `kvip status`)."""
    return escape(str(value))


def _es(values: Any) -> str:
    return ", ".join(_e(v) for v in values)


def add_status_arguments(parser: argparse.ArgumentParser) -> None:
    from kvip.config.options import DEFAULTS

    # In the agent's container the agent's own setting names the socket; elsewhere the default.
    socket_path = os.environ.get("kvip_status_socket") or DEFAULTS["status_socket"]
    parser.add_argument("--socket", default=socket_path,
                        help=f"the agent's local unix socket [env kvip_status_socket; default {socket_path}]")
    parser.add_argument("--url", "--address", dest="address", default=None,
                        help="the agent's loopback status address instead (kvip_status_address), "
                             "e.g. http://127.0.0.1:2113")
    parser.add_argument("-o", "--output", choices=["table", "json"], default="table")


class _UnixConnection(http.client.HTTPConnection):
    """HTTP over the agent's unix socket (/status is not served on any network address by default)."""

    def __init__(self, path: str, timeout: float) -> None:
        super().__init__("localhost", timeout=timeout)
        self.path = path

    def connect(self) -> None:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(self.timeout)
        try:
            sock.connect(self.path)
        except OSError:
            sock.close()
            raise
        self.sock = sock


def fetch_status(args: argparse.Namespace, timeout: float = 5.0) -> dict[str, Any]:
    """The agent's /status document, from --url if given, else from the unix socket."""
    if args.address:
        url = args.address if "://" in args.address else f"http://{args.address}"
        with urllib.request.urlopen(f"{url.rstrip('/')}/status", timeout=timeout) as response:
            return json.load(response)  # type: ignore[no-any-return]
    connection = _UnixConnection(args.socket, timeout)
    try:
        connection.request("GET", "/status")
        response = connection.getresponse()
        if response.status != 200:
            raise OSError(f"HTTP {response.status}")
        return json.load(response)  # type: ignore[no-any-return]
    finally:
        connection.close()


def run_status(args: argparse.Namespace) -> int:
    try:
        doc = fetch_status(args)
    except (OSError, http.client.HTTPException, ValueError) as exc:
        where = args.address or args.socket
        print(f"kvip status: cannot read the agent's status at {where}: {exc}", file=sys.stderr)
        return 2
    if args.output == "json":
        print(json.dumps(doc, indent=2))
        return 0
    console = Console(width=None if sys.stdout.isatty() else 200)
    console.print(f"node [bold]{_e(doc['node'])}[/bold]  mode {_e(doc['mode'])}  synced {_e(doc['synced'])}  "
                  f"passes {_e(doc['passes'])}")
    sources = Table("source", "state", "objects", "relists", "last error")
    for s in doc["sources"]:
        sources.add_row(_e(s["resource"]), _e(s["state"]), _e(s["objects"]), _e(s["relists"]),
                        _e(s["lastError"] or ""))
    console.print(sources)
    cp = doc.get("controlPlane")
    if cp:
        elected = f"Lease {_e(cp['lease'])} held by {_e(cp['holder'] or 'nobody')}" if cp["election"] else "anycast"
        console.print(f"control-plane VIP {_es(cp['vips']) or _e(cp['address'])}:{_e(cp['port'])}  "
                      f"{'advertised' if cp['advertised'] else 'not advertised'} ({_e(cp['reason'])})  "
                      f"API server {'healthy' if cp['apiserverHealthy'] else 'UNHEALTHY'}  {elected}")
    last = doc.get("lastPass") or {}
    actual_failed = {k for d in last.get("diffs", []) for k in d.get("failed", {})}
    services = Table("service", "VIPs", "desired", "reason", "local endpoints", "last known good endpoint",
                     "advertised by")
    carriers = doc.get("advertisedBy") or {}  # the kvip.io/advertised-by annotation (absent: writer off)
    for name, s in doc["services"].items():
        services.add_row(_e(name), _es(s["vips"]) or "-", "yes" if s["advertised"] else "no", _e(s["reason"]),
                         _es(s["localEndpoints"]) or "-", _e(s["lastKnownGoodEndpoint"] or "-"),
                         _e(carriers.get(name) or "-"))
    console.print(services)
    bgp = doc.get("backends", {}).get("bgp")
    if bgp:
        sessions = Table("BGP peer", "session")
        for peer, state in bgp["sessions"].items():
            sessions.add_row(_e(peer), _e(state))
        console.print(sessions)
        console.print(f"speaker running {_e(bgp['speakerRunning'])}, restarts {_e(bgp['speakerRestarts'])}, "
                      f"announcing {_e(bgp['announced'])} prefix(es); {_e(bgp['runDir'])}")
    if doc["problems"]:
        problems = Table("service", "problem", "message")
        for p in doc["problems"]:
            problems.add_row(_e(p["service"]), _e(p["reason"]), _e(p["message"]))
        console.print(problems)
    print_dataplane(console, doc)  # DHCP leases, egress rules, their drift
    print_handovers(console, doc)  # kvip.io/preferred-nodes
    cut = {k: v for k, v in doc.get("truncated", {}).items() if v}
    if cut:
        console.print(f"[yellow]partial listing, the agent bounds /status; left out: "
                      f"{_e(', '.join(f'{k} {v}' for k, v in cut.items()))}[/yellow]")
    if actual_failed:
        console.print(f"[red]not applied (retrying):[/red] {_es(sorted(actual_failed))}")
    return 0


def add_audit_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--kubeconfig", default=None)
    parser.add_argument("--namespace", default="kube-system", help="where the agents publish heartbeats")
    parser.add_argument("--election", choices=["none", "global", "service"], default="none")
    parser.add_argument("--lease-name", default="plndr-svcs-lock")
    parser.add_argument("--stale-after", type=float, default=90.0, help="seconds before a heartbeat is stale")
    parser.add_argument("--control-plane-address", default="",
                        help="also audit the control-plane VIP(s), comma separated IPs (cp_enable's address)")
    parser.add_argument("--control-plane-lease", default=None, metavar="NAME",
                        help="the control-plane VIP is elected on this Lease (vip_leasename, e.g. plndr-cp-lock) "
                             "in --namespace; unset: anycast")
    parser.add_argument("-o", "--output", choices=["table", "json"], default="table")


def run_audit(args: argparse.Namespace) -> int:
    from kvip.cli.audit import ControlPlaneAudit, collect
    from kvip.core.model import ElectionMode
    from kvip.kube.client import KubeClientError, make_client

    vips = tuple(v.strip() for v in args.control_plane_address.split(",") if v.strip())
    lease = (args.namespace, args.control_plane_lease) if args.control_plane_lease else None
    control_plane = ControlPlaneAudit(vips, lease) if vips else None

    async def go() -> Any:
        client = make_client(args.kubeconfig)
        try:
            return await collect(client, namespace=args.namespace, election=ElectionMode(args.election),
                                 stale_after=args.stale_after, global_lease=(args.namespace, args.lease_name),
                                 control_plane=control_plane)
        finally:
            await client.close()

    try:
        report = asyncio.run(go())
    except KubeClientError as exc:
        print(f"kvip audit: {exc}", file=sys.stderr)
        return 2
    if args.output == "json":
        print(json.dumps(report.to_json(), indent=2))
    else:
        table = Table("VIP", "services", "should advertise", "says it does", "", "advertised-by annotation")
        for row in report.vips:
            table.add_row(_e(row.vip), _es(row.services) or "-", _es(sorted(row.expected)) or "-",
                          _es(sorted(row.reported)) or "-", "ok" if row.ok else "DRIFT",
                          "; ".join(f"{_e(s)}: {_e(report.advertised_by.get(s) or '-')}" for s in row.services) or "-")
        console = Console(width=None if sys.stdout.isatty() else 200)
        console.print(table)
        for node in report.stale_nodes:
            console.print(f"stale heartbeat: {_e(node)}")
        for node in report.silent_nodes:
            console.print(f"no heartbeat at all: {_e(node)}")
        for u in report.unresolved_nodes:
            console.print(f"drifts on VIPs the heartbeat digest cannot name: {_e(u.node)} advertises "
                          f"{u.advertised_count if u.advertised_count is not None else '?'}, should advertise "
                          f"{len(u.expected)}: {_es(u.expected[:20])}{' …' if len(u.expected) > 20 else ''}")
        print_drift(console, report.dataplane)
        console.print("audit: ok" if report.ok else "audit: DRIFT")
    return 0 if report.ok else 1
