"""Writes `status.loadBalancer.ingress` of the Services this node advertises — only when it differs.

kube-vip rewrote Service status constantly (kube-vip #627), waking every controller that watches
Services. Here a write happens only when the VIPs a service asks for (annotation or spec) are not what
its status already says; anycast nodes all compute the same value, so after the first write the
difference is gone everywhere and nobody writes again. Best effort: a failure is logged once and never
touches routes.
"""

from __future__ import annotations

import asyncio
import logging

from lightkube import AsyncClient

from kvip.core.model import DesiredState, ServiceKey, ServiceView
from kvip.kube.errors import describe
from kvip.kube.resources import Service

log = logging.getLogger("kvip.status")


def wanted_ingress(service: ServiceView, vips: tuple[str, ...]) -> tuple[str, ...] | None:
    """The ingress list the status should carry, or None when it already does."""
    if not vips or tuple(service.ingress_ips) == vips:
        return None
    return vips


class ServiceStatusWriter:
    def __init__(self, client: AsyncClient) -> None:
        self._client = client
        self._queue: asyncio.Queue[tuple[ServiceKey, tuple[str, ...]]] = asyncio.Queue(maxsize=10_000)
        self._queued: set[tuple[ServiceKey, tuple[str, ...]]] = set()
        self._warned = False
        self.writes = 0

    def report(self, state: DesiredState, services: dict[ServiceKey, ServiceView]) -> None:
        for key, decision in state.decisions.items():
            service = services.get(key)
            if service is None or not decision.advertised:
                continue
            want = wanted_ingress(service, tuple(str(v) for v in decision.vips))
            if want is None or (key, want) in self._queued or self._queue.full():
                continue
            self._queued.add((key, want))
            self._queue.put_nowait((key, want))

    async def run(self) -> None:
        while True:
            key, ingress = await self._queue.get()
            try:
                patch = {"status": {"loadBalancer": {"ingress": [{"ip": ip} for ip in ingress]}}}
                await self._client.patch(Service.Status, key.name, patch, namespace=key.namespace)
                self.writes += 1
                self._warned = False
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                if not self._warned:
                    log.warning("cannot write status of %s (%s); routes are unaffected", key, describe(exc))
                    self._warned = True
            finally:
                self._queued.discard((key, ingress))
