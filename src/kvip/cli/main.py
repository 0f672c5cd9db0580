"""`kvip` command line: agent, lab, lab apiserver. Parses arguments and hands over; no logic here."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import os
import signal
import socket
import sys
from collections.abc import Sequence


class _JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        return json.dumps({"time": self.formatTime(record, "%Y-%m-%dT%H:%M:%S"), "level": record.levelname.lower(),
                           "logger": record.name, "msg": record.getMessage()})


def _setup_logging(level: str, fmt: str = "text") -> None:
    logging.basicConfig(
        level=logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    if fmt == "json":
        for handler in logging.getLogger().handlers:
            handler.setFormatter(_JsonFormatter())
    # One line per HTTP request would drown the state changes we do log.
    for noisy in ("httpx2", "httpcore2", "httpx", "httpcore", "pyroute2", "asyncio"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    logging.getLogger("kvip").setLevel(getattr(logging, level.upper(), logging.INFO))


def _invalid(command: str, error: Exception) -> int:
    """Exit 2 with one line per problem, each naming its variable or flag; never a traceback."""
    for line in str(error).splitlines():
        print(f"kvip {command}: {line}", file=sys.stderr)
    return 2


async def _run_agent(args: argparse.Namespace) -> int:
    from kvip.agent.wiring import Agent, AgentError
    from kvip.config.agent import ConfigError, config_from_args
    from kvip.kube.client import KubeClientError

    try:
        config = config_from_args(args, os.environ, host_name=socket.gethostname())
    except ConfigError as exc:
        return _invalid("agent", exc)
    _setup_logging(config.log_level, config.log_format)
    for line in config.infos:  # how kube-vip settings were read, and those kvip ignores: one line each
        logging.getLogger("kvip.config").info("%s", line)
    for line in config.notices:
        logging.getLogger("kvip.config").warning("%s", line)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    try:
        agent = Agent(config)
    except (AgentError, KubeClientError) as exc:
        print(f"kvip agent: {exc}", file=sys.stderr)
        return 2
    logging.getLogger("kvip").info(
        "starting on node %s: mode=%s table=%d protocol=%d interface=%s election=%s",
        config.node_name, config.mode.value, config.routing_table_id, config.routing_protocol,
        config.interface, config.election.value,
    )
    await agent.run(stop)
    return 0


async def _run_controller(args: argparse.Namespace) -> int:
    from kvip.config.controller import ConfigError, controller_config_from_args
    from kvip.controller.allocator import Controller
    from kvip.kube.client import KubeClientError, make_client

    try:
        config = controller_config_from_args(args, os.environ)
    except ConfigError as exc:
        return _invalid("controller", exc)
    _setup_logging("info")
    try:
        client = make_client(config.kubeconfig)
    except KubeClientError as exc:
        print(f"kvip controller: {exc}", file=sys.stderr)
        return 2
    controller = Controller(client, identity=config.identity or socket.gethostname(), namespace=config.namespace,
                            configmap=config.configmap, timing=config.lease_timing)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    runner = asyncio.create_task(controller.run())
    await asyncio.wait([runner, asyncio.create_task(stop.wait())], return_when=asyncio.FIRST_COMPLETED)
    runner.cancel()
    with contextlib.suppress(BaseException):
        await runner
    return 0


def _add_lab_parser(sub: argparse._SubParsersAction, *, with_arguments: bool = True) -> None:  # type: ignore[type-arg]
    lab = sub.add_parser("lab", help="run the embedded lab: API stand-in, node namespaces, BGP router")
    if not with_arguments:
        return
    lab_sub = lab.add_subparsers(dest="lab_command")
    api = lab_sub.add_parser("apiserver", help="run only the Kubernetes API stand-in")
    api.add_argument("--host", default="127.0.0.1")
    api.add_argument("--port", type=int, default=6443)
    api.add_argument("--kubeconfig", default="kvip-lab.kubeconfig", help="where to write a kubeconfig")
    try:
        from kvip.lab.cli import add_lab_arguments
    except ImportError:
        return
    add_lab_arguments(lab)


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """Every subcommand, each with its arguments; with `command`, only that subcommand's arguments are
    added (the others keep their name and help line): `kvip agent` then never loads the lab, the
    manifests or the status tools just to describe flags it will not parse (kvip issue #21: 2.4 MiB)."""
    parser = argparse.ArgumentParser(prog="kvip", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    def wanted(name: str) -> bool:
        return command is None or command == name

    agent = sub.add_parser("agent", help="run the per-node agent (DaemonSet)")
    if wanted("agent"):
        from kvip.config.agent import add_agent_arguments

        add_agent_arguments(agent)
    controller = sub.add_parser("controller", help="leader-elected LoadBalancer IP allocator (kubevip ConfigMap)")
    if wanted("controller"):
        from kvip.config.controller import add_controller_arguments

        add_controller_arguments(controller)
    manifest = sub.add_parser("manifest", help="print DaemonSet/Pod/controller manifests with least-privilege RBAC")
    if wanted("manifest"):
        from kvip.deploy.manifests import add_manifest_arguments

        add_manifest_arguments(manifest)
    status = sub.add_parser("status", help="this node's agent: sources, decisions, problems")
    audit = sub.add_parser("audit", help="cluster-wide: should-advertise vs does-advertise per VIP")
    if wanted("status") or wanted("audit"):
        from kvip.cli.tools import add_audit_arguments, add_status_arguments

        add_status_arguments(status)
        add_audit_arguments(audit)
    _add_lab_parser(sub, with_arguments=wanted("lab"))
    return parser


def _command_of(argv: Sequence[str]) -> str | None:
    """The subcommand `argv` names (its first word: `kvip` has no options of its own but -h), else None."""
    return argv[0] if argv and not argv[0].startswith("-") else None


def main(argv: Sequence[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    args = build_parser(_command_of(argv)).parse_args(argv)
    if args.command == "agent":
        return asyncio.run(_run_agent(args))
    if args.command == "manifest":
        from kvip.deploy.manifests import run_manifest

        return run_manifest(args)
    if args.command == "controller":
        return asyncio.run(_run_controller(args))
    if args.command in ("status", "audit"):
        from kvip.cli import tools as cli_tools

        return cli_tools.run_status(args) if args.command == "status" else cli_tools.run_audit(args)
    if args.command == "lab":
        if getattr(args, "lab_command", None) == "apiserver":
            from kvip.lab.apiserver import run_standalone

            _setup_logging("info")
            with _quiet_interrupt():
                asyncio.run(run_standalone(args.host, args.port, args.kubeconfig))
            return 0
        from kvip.lab.cli import run_lab

        return run_lab(args)
    return 2


class _quiet_interrupt:
    def __enter__(self) -> None:
        return None

    def __exit__(self, kind: object, value: object, tb: object) -> bool:
        return kind is KeyboardInterrupt


if __name__ == "__main__":
    sys.exit(main())
