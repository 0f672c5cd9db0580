"""`kvip lab`: build the lab, play the story with a live view, tear everything down.

Owns only presentation and ordering; the parts are the same as the end-to-end tests use
(`LabCluster`, `BgpFabric`, `STORY`).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from kvip.lab.story import BGP_STORY, DEMO_ROUTE, STEP_NAMES, STORY, Step, steps_until

NODES = ("node-a", "node-b", "node-c")


def add_lab_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--scenario", default="all", help=f"play the story up to this step: all, {', '.join(STEP_NAMES)}")
    parser.add_argument("--mode", default="table", choices=["table", "arp", "bgp"])
    parser.add_argument("--election", default="none", choices=["none", "global", "service"])
    parser.add_argument("--controlplane", action="store_true",
                        help="the control-plane VIP story: 3 API servers behind one VIP, a kubectl client, failovers")
    parser.add_argument("--keep", action="store_true", help="leave the lab up at the end (Ctrl-C tears it down)")
    parser.add_argument("--no-tty", action="store_true", help="plain output, no live view (CI)")
    parser.add_argument("--resync-period", type=float, default=5.0)
    parser.add_argument("--step-timeout", type=float, default=20.0)
    parser.add_argument("--workdir", default=None, help="where logs and kubeconfigs go (default: a temp dir)")


@dataclass
class StepResult:
    step: Step
    kernel_seconds: float | None = None
    router_seconds: float | None = None
    error: str | None = None


@dataclass
class LabView:
    """What the live view shows; refreshed while waiting."""

    routes: dict[str, set[str]] = field(default_factory=dict)
    ecmp: frozenset[str] = frozenset()
    drift: dict[str, str] = field(default_factory=dict)
    title: str = ""


def run_lab(args: argparse.Namespace) -> int:
    if os.geteuid() != 0:
        print("kvip lab needs root: it creates network namespaces and routes inside them. Run it with sudo.",
              file=sys.stderr)
        return 2
    if args.controlplane:
        from kvip.lab.topology import cleanup_stale

        cleanup_stale()
        workdir = Path(args.workdir or tempfile.mkdtemp(prefix="kvip-lab-"))
        try:
            return asyncio.run(_control_plane_lab(args, workdir))
        except KeyboardInterrupt:
            print("\ninterrupted: lab torn down")
            return 130
    if (args.mode == "arp" and args.election == "none") or (args.mode == "bgp" and args.election != "none"):
        why = ("ARP mode needs --election global or service" if args.mode == "arp"
               else "the BGP lab plays the anycast story (BGP with an election is covered by the tests)")
        print(f"kvip lab: --mode {args.mode} --election {args.election}: {why}", file=sys.stderr)
        return 2
    try:
        steps = steps_until(args.scenario, BGP_STORY if args.mode == "bgp" else STORY)
    except ValueError as exc:
        print(f"kvip lab: {exc}", file=sys.stderr)
        return 2
    from kvip.lab.topology import cleanup_stale

    removed = cleanup_stale()
    if removed:
        print(f"removed {len(removed)} namespace(s) left by an earlier lab: {', '.join(removed)}")
    workdir = Path(args.workdir or tempfile.mkdtemp(prefix="kvip-lab-"))
    try:
        if args.election != "none":
            return asyncio.run(_failover_lab(args, workdir))
        return asyncio.run(_lab(args, steps, workdir))
    except KeyboardInterrupt:
        print("\ninterrupted: lab torn down")
        return 130


async def _failover_lab(args: argparse.Namespace, workdir: Path) -> int:
    """Leader-elected modes: the failover story (see kvip.lab.failover_story)."""
    from kvip.lab.cluster import LabCluster
    from kvip.lab.failover_story import mode_for, play

    mode = mode_for(args.mode, args.election)
    out = _Output(live=False)
    lab = LabCluster(NODES, workdir=workdir, resync_period=args.resync_period, agent_env=mode.agent_env())
    out.say(f"starting lab in {workdir}: API stand-in, {len(NODES)} node namespaces, {args.mode} mode, "
            f"{args.election} election")
    await lab.start()
    try:
        for name in NODES:
            lab.start_agent(name)
        await lab.wait_agents_ready(timeout=30)
        outcomes = await play(lab, mode, out.say, args.step_timeout)
        ok = sum(o.error is None for o in outcomes)
        out.say(f"\n{ok}/{len(outcomes)} steps converged")
        if args.keep:
            out.say(f"\nlab kept up (kubeconfig {workdir / 'admin.kubeconfig'}); Ctrl-C tears it down.")
            await asyncio.Event().wait()
        return 0 if ok == len(outcomes) else 1
    finally:
        out.close()
        await lab.stop()


async def _control_plane_lab(args: argparse.Namespace, workdir: Path) -> int:
    """`--controlplane`: see kvip.lab.cp_story."""
    from kvip.lab.control_plane import ControlPlaneLab, CpMode
    from kvip.lab.cp_story import play_control_plane, probe_kind

    out = _Output(live=False)
    lab = ControlPlaneLab(CpMode(args.mode), workdir, resync_period=args.resync_period)
    out.say(f"starting lab in {workdir}: 3 control-plane nodes (each its own API server on :6443, TLS), "
            f"{args.mode} mode, a client namespace running {probe_kind()} against {lab.url}")
    await lab.start()
    try:
        await lab.start_agents()
        outcomes, checker = await play_control_plane(lab, out.say, max(args.step_timeout, 30.0))
        ok = sum(o.error is None for o in outcomes) + (checker.max_holders == 1)
        out.say(f"\n{ok}/{len(outcomes) + 1} checks passed")
        if args.keep:
            out.say(f"\nlab kept up: ip netns exec {lab.client_netns} kubectl --kubeconfig "
                    f"{workdir / 'client.kubeconfig'} get --raw /livez; Ctrl-C tears it down.")
            await asyncio.Event().wait()
        return 0 if ok == len(outcomes) + 1 else 1
    finally:
        out.close()
        await lab.stop()


async def _lab(args: argparse.Namespace, steps: tuple[Step, ...], workdir: Path) -> int:
    from kvip.lab.bgp_router import BgpModeFabric
    from kvip.lab.cluster import LabCluster
    from kvip.lab.fabric import BgpFabric

    bgp = args.mode == "bgp"
    out = _Output(live=not args.no_tty and sys.stdout.isatty(), bgp=bgp)
    lab = LabCluster(NODES, workdir=workdir, resync_period=args.resync_period)
    out.say(f"starting lab in {workdir}: API stand-in, {len(NODES)} node namespaces, BIRD router"
            + (", agents in BGP mode (each runs its own speaker)" if bgp else ""))
    await lab.start()
    assert lab.topology is not None
    fabric = BgpModeFabric(lab.topology, workdir) if bgp else BgpFabric(lab.topology, workdir)
    results: list[StepResult] = []
    try:
        await asyncio.to_thread(fabric.start)
        for name in NODES:
            lab.start_agent(name, env=fabric.agent_env(name))
        await lab.wait_agents_ready(timeout=30)
        await _wait(lambda: fabric.established() >= set(NODES), 30)
        out.say(f"agents ready; router peers established with {', '.join(sorted(fabric.established()))}\n")
        for step in steps:
            results.append(await _play(lab, fabric, step, args.step_timeout, out, kernel=not bgp))
        out.summary(results)
        if args.keep:
            admin = workdir / "admin.kubeconfig"
            out.say(f"\nlab kept up. Try:\n  ip netns exec {lab.topology.router_netns} kubectl "
                    f"--kubeconfig {admin} get svc,endpointslices -A\n  ip -n {lab.node('node-a').netns} route "
                    f"show table 198\nCtrl-C tears everything down.")
            await asyncio.Event().wait()
    finally:
        out.close()
        await asyncio.to_thread(fabric.stop)
        await lab.stop()
    return 0 if all(r.error is None for r in results) else 1


async def _play(lab, fabric, step: Step, timeout: float, out: _Output,  # type: ignore[no-untyped-def]
                kernel: bool = True) -> StepResult:
    result = StepResult(step)
    # BGP mode has no kernel routes to wait for: the router's RIB is the only truth.
    want_routes = {n: ({DEMO_ROUTE} if n in step.advertising else set()) for n in NODES}
    out.step(step)
    t0 = time.monotonic()
    step.action(lab)
    view = LabView(title=step.title)
    try:
        while True:
            rib = fabric.ecmp()
            view.ecmp = rib.get(DEMO_ROUTE, frozenset())
            # BGP mode has no kernel table: show what each node announces, as the router sees it.
            view.routes = (lab.all_routes() if kernel
                           else {n: {p for p, nodes in rib.items() if n in nodes} for n in NODES})
            now = time.monotonic() - t0
            if result.kernel_seconds is None and (view.routes == want_routes or not kernel):
                result.kernel_seconds = now
            if result.router_seconds is None and result.kernel_seconds is not None and view.ecmp == step.advertising:
                result.router_seconds = now
            out.update(view)
            if result.router_seconds is not None:
                break
            if now > timeout:
                result.error = f"not converged after {timeout}s: routes {view.routes}, router {sorted(view.ecmp)}"
                break
            await asyncio.sleep(0.05)
        view.drift = {n: _drift(lab, n) for n in NODES}
        out.update(view)
    except Exception as exc:  # one broken step must still let the lab tear down cleanly
        result.error = str(exc)
    out.result(result)
    return result


def _drift(lab, node: str) -> str:  # type: ignore[no-untyped-def]
    try:
        text = subprocess.run(["ip", "netns", "exec", lab.node(node).netns, "curl", "-s", "-m", "2",
                               "http://127.0.0.1:2112/metrics"], capture_output=True, text=True, check=True).stdout
    except (subprocess.CalledProcessError, FileNotFoundError):
        return "?"
    found = re.search(r'^kvip_drift_items\{backend="[^"]+"\} (\S+)$', text, re.M)
    return found.group(1) if found else "?"


async def _wait(predicate, timeout: float) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise TimeoutError("lab did not come up in time")
        await asyncio.sleep(0.2)


class _Output:
    """Live (rich) or plain output; the plain form is what CI and docs/lab.md show."""

    def __init__(self, live: bool, bgp: bool = False) -> None:
        from rich.console import Console

        self.bgp = bgp
        self.console = Console(highlight=False, force_terminal=live or None, no_color=not live,
                               width=None if live else 110)
        self._live = None
        if live:
            from rich.live import Live

            self._live = Live(console=self.console, refresh_per_second=8, transient=True)
            self._live.start()

    def say(self, text: str) -> None:
        self.console.print(text)

    def step(self, step: Step) -> None:
        self.console.print(f"[bold]== {step.title}[/bold]\n   {step.explain}")

    def update(self, view: LabView) -> None:
        if self._live is None:
            return
        from rich.table import Table

        table = Table(title=view.title)
        table.add_column("node")
        table.add_column("announced (router RIB)" if self.bgp else "table 198 (proto 248)")
        table.add_column("router sends here")
        table.add_column("drift")
        for node in NODES:
            table.add_row(node, ", ".join(sorted(view.routes.get(node, ()))) or "-",
                          "yes" if node in view.ecmp else "no", view.drift.get(node, ""))
        self._live.update(table)

    def result(self, result: StepResult) -> None:
        if result.error:
            self.console.print(f"   [red]FAILED[/red]: {result.error}")
            return
        kernel = "" if self.bgp else f"kernel routes in {result.kernel_seconds * 1000:.0f} ms, "  # type: ignore[operator]
        self.console.print(
            f"   converged: {kernel}"
            f"router ECMP {{{', '.join(sorted(result.step.advertising))}}} in "
            f"{result.router_seconds * 1000:.0f} ms"  # type: ignore[operator]
        )

    def summary(self, results: list[StepResult]) -> None:
        ok = sum(r.error is None for r in results)
        self.console.print(f"\n{ok}/{len(results)} steps converged")

    def close(self) -> None:
        if self._live is not None:
            self._live.stop()
            self._live = None
