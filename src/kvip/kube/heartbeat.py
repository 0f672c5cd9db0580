"""Each agent's published view: one small Lease per node carrying what it advertises right now.

`kvip audit` reads these to compare, for every VIP, the nodes that should advertise it with the nodes
that say they do, without reaching any node. Written only when the advertised set changes or the
heartbeat is due (every resync period); a failure to write is logged once and never affects routes.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Iterable

from lightkube import AsyncClient

from kvip.kube.election import micro_time
from kvip.kube.errors import ApiFailure, classify, describe
from kvip.kube.resources import Lease

log = logging.getLogger("kvip.heartbeat")

ADVERTISED_ANNOTATION = "kvip.io/advertised"
DESIRED_ANNOTATION = "kvip.io/desired"
MODE_ANNOTATION = "kvip.io/mode"
NODE_LEASE_PREFIX = "kvip-node-"
LABEL = "kvip.io/heartbeat"
MIN_INTERVAL = 1.0


def node_lease_name(node: str) -> str:
    return f"{NODE_LEASE_PREFIX}{node}"


class HeartbeatPublisher:
    def __init__(self, client: AsyncClient, *, node_name: str, namespace: str, mode: str, period: float) -> None:
        self._client = client
        self._node = node_name
        self._namespace = namespace
        self._mode = mode
        self._period = period
        self._pending: tuple[tuple[str, ...], tuple[str, ...]] | None = None
        self._published: tuple[tuple[str, ...], tuple[str, ...]] | None = None
        self._last_write = 0.0
        self._wake = asyncio.Event()
        self._warned = False

    def report(self, advertised: Iterable[str], desired: Iterable[str]) -> None:
        self._pending = (tuple(sorted(advertised)), tuple(sorted(desired)))
        if self._pending != self._published:
            self._wake.set()

    async def run(self) -> None:
        while True:
            try:
                await asyncio.wait_for(self._wake.wait(), self._period)
            except asyncio.TimeoutError:
                pass
            self._wake.clear()
            if self._pending is None:
                continue
            since = time.monotonic() - self._last_write
            if self._pending == self._published and since < self._period:
                continue
            if since < MIN_INTERVAL:
                # A burst of changes becomes one write: the audit reads a settled view, and a busy node
                # does not turn every reconcile into an API write of its whole VIP list.
                await asyncio.sleep(MIN_INTERVAL - since)
                self._wake.clear()
            try:
                await self._write(self._pending)
                self._published = self._pending
                self._last_write = time.monotonic()
                self._warned = False
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                if not self._warned:
                    log.warning("cannot publish heartbeat Lease (%s); routes are unaffected", describe(exc))
                    self._warned = True

    async def _write(self, view: tuple[tuple[str, ...], tuple[str, ...]]) -> None:
        name = node_lease_name(self._node)
        body = {
            "apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
            "metadata": {
                "name": name, "namespace": self._namespace, "labels": {LABEL: "true"},
                "annotations": {ADVERTISED_ANNOTATION: json.dumps(list(view[0])),
                                DESIRED_ANNOTATION: json.dumps(list(view[1])), MODE_ANNOTATION: self._mode},
            },
            "spec": {"holderIdentity": self._node, "leaseDurationSeconds": int(max(1, 3 * self._period)),
                     "renewTime": micro_time()},
        }
        try:
            current = await self._client.get(Lease, name, namespace=self._namespace)
        except Exception as exc:
            if classify(exc) is not ApiFailure.NOT_FOUND:
                raise
            await self._client.create(Lease(body), namespace=self._namespace)
            return
        body["metadata"]["resourceVersion"] = current["metadata"]["resourceVersion"]
        await self._client.replace(Lease(body), namespace=self._namespace)
