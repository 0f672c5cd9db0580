"""The agent's own HTTP endpoint: /healthz, /readyz, /metrics (Prometheus) and /status (JSON).

Read-only: nothing here changes what the agent advertises, except `POST /resync`, which only
fires a trigger (and a relist), exactly like a timer would.
"""

from __future__ import annotations

import asyncio
import time
from typing import TYPE_CHECKING, Any

from aiohttp import web

if TYPE_CHECKING:
    from kvip.agent.wiring import Agent


def status_document(agent: Agent) -> dict[str, Any]:
    result = agent.reconciler.last_result
    desired = result.desired if result else None
    return {
        "node": agent.config.node_name,
        "mode": agent.config.mode.value,
        "synced": agent.cache.synced,
        "passes": agent.reconciler.passes,
        "sources": [
            {
                "resource": s.resource, "state": s.state.value, "objects": s.objects,
                "resourceVersion": s.resource_version, "relists": s.relists,
                "watchRestarts": s.watch_restarts, "lastError": s.last_error,
            }
            for s in agent.cache.statuses()
        ],
        "advertised": sorted(str(vip) for vip in (desired.vips if desired else ())),
        "services": {
            str(key): {
                "vips": [str(v) for v in d.vips], "eligible": d.eligible, "advertised": d.advertised,
                "reason": d.reason, "localEndpoints": list(d.local_endpoints),
                "lastKnownGoodEndpoint": agent.reconciler.last_known_good_endpoint.get(key),
            }
            for key, d in sorted((desired.decisions if desired else {}).items())
        },
        "problems": [
            {"service": str(p.service), "reason": p.reason, "message": p.message}
            for p in (desired.problems if desired else ())
        ],
        # Backend-specific state an operator needs (BGP: sessions and speaker restarts).
        "backends": {b.name: b.status() for b in agent.backends if hasattr(b, "status")},
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


def build_app(agent: Agent) -> web.Application:
    async def healthz(_: web.Request) -> web.Response:
        # Alive means the loop turns: after the first pass, one must complete every resync period
        # (the timer guarantees a trigger), so three missed periods mean a stuck agent.
        last = agent.reconciler.last_result
        if last is not None and time.time() - (last.started_at + last.duration) > 3 * agent.config.resync_period:
            return web.Response(status=503, text="reconcile loop stalled\n")
        return web.Response(text="ok\n")

    async def readyz(_: web.Request) -> web.Response:
        if agent.ready.is_set():
            return web.Response(text="ready\n")
        return web.Response(status=503, text="not ready: cache not synced or no reconcile yet\n")

    async def metrics(_: web.Request) -> web.Response:
        return web.Response(body=agent.metrics.render(), content_type="text/plain", charset="utf-8")

    async def status(_: web.Request) -> web.Response:
        return web.json_response(status_document(agent))

    async def resync(_: web.Request) -> web.Response:
        agent.cache.request_relist()
        agent.trigger.fire("manual")
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


async def serve_agent_http(agent: Agent, address: str) -> None:
    host, port = parse_address(address)
    runner = web.AppRunner(build_app(agent), access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, host, port)
    await site.start()
    try:
        await asyncio.Event().wait()
    finally:
        await runner.cleanup()
