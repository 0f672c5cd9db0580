"""The agent's own HTTP endpoint: /healthz, /readyz, /metrics (Prometheus) and /status (JSON).

Read-only: nothing here changes what the agent advertises, except `POST /resync`, which only
fires a trigger (and a relist), exactly like a timer would. The server sees the agent only through
`AgentView`, the five things it reads or asks for, never the Agent itself (no import of the wiring).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from kvip.core.model import ServiceKey
from kvip.kube.reflector import SourceStatus
from kvip.reconcile import ReconcileResult


@dataclass(frozen=True)
class AgentView:
    """What the HTTP endpoint may see of a running agent."""

    status: Callable[[], Mapping[str, Any]]  # the /status document
    alive: Callable[[], bool]  # the reconcile loop turns
    ready: Callable[[], bool]  # first sync and first pass done
    metrics: Callable[[], bytes]  # Prometheus text exposition
    resync: Callable[[], None]  # relist and reconcile now


def status_document(
    *,
    node: str,
    mode: str,
    synced: bool,
    passes: int,
    sources: Iterable[SourceStatus],
    result: ReconcileResult | None,
    last_known_good_endpoint: Mapping[ServiceKey, str],
    backends: Mapping[str, Mapping[str, object]],
) -> dict[str, Any]:
    desired = result.desired if result else None
    return {
        "node": node,
        "mode": mode,
        "synced": synced,
        "passes": passes,
        "sources": [
            {
                "resource": s.resource, "state": s.state.value, "objects": s.objects,
                "resourceVersion": s.resource_version, "relists": s.relists,
                "watchRestarts": s.watch_restarts, "lastError": s.last_error,
            }
            for s in sources
        ],
        "advertised": sorted(str(vip) for vip in (desired.vips if desired else ())),
        "services": {
            str(key): {
                "vips": [str(v) for v in d.vips], "eligible": d.eligible, "advertised": d.advertised,
                "reason": d.reason, "localEndpoints": list(d.local_endpoints),
                "lastKnownGoodEndpoint": last_known_good_endpoint.get(key),
            }
            for key, d in sorted((desired.decisions if desired else {}).items())
        },
        "problems": [
            {"service": str(p.service), "reason": p.reason, "message": p.message}
            for p in (desired.problems if desired else ())
        ],
        # Backend-specific state an operator needs (BGP: sessions and speaker restarts).
        "backends": {name: dict(status) for name, status in backends.items()},
        "lastPass": None if result is None else {
            "startedAt": result.started_at, "durationSeconds": result.duration,
            "reasons": dict(result.reasons), "error": result.error,
            "diffs": [
                {"backend": d.backend, "added": sorted(map(str, d.added)),
                 "removed": sorted(map(str, d.removed)), "failed": {str(k): v for k, v in d.failed.items()}}
                for d in result.diffs
            ],
        },
    }


def build_app(view: AgentView) -> web.Application:
    async def healthz(_: web.Request) -> web.Response:
        if not view.alive():
            return web.Response(status=503, text="reconcile loop stalled\n")
        return web.Response(text="ok\n")

    async def readyz(_: web.Request) -> web.Response:
        if view.ready():
            return web.Response(text="ready\n")
        return web.Response(status=503, text="not ready: cache not synced or no reconcile yet\n")

    async def metrics(_: web.Request) -> web.Response:
        return web.Response(body=view.metrics(), content_type="text/plain", charset="utf-8")

    async def status(_: web.Request) -> web.Response:
        return web.json_response(view.status())

    async def resync(_: web.Request) -> web.Response:
        view.resync()
        return web.json_response({"ok": True})

    app = web.Application()
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    app.router.add_get("/metrics", metrics)
    app.router.add_get("/status", status)
    app.router.add_post("/resync", resync)
    return app


def parse_address(address: str) -> tuple[str, int]:
    host, _, port = address.rpartition(":")
    return (host or "0.0.0.0"), int(port)


async def serve_agent_http(view: AgentView, address: str) -> None:
    host, port = parse_address(address)
    runner = web.AppRunner(build_app(view), access_log=None)
    await runner.setup()
    try:
        site = web.TCPSite(runner, host, port)
        await site.start()
        await asyncio.Event().wait()
    finally:
        await runner.cleanup()
