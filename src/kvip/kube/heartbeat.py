"""Each agent's published view: one small Lease per node saying how many VIPs it advertises, and which.

"Which" is a digest, not a list: the Lease is rewritten whole in etcd on every renewal, so a list of
10,000 VIPs cost 347 KB per node every resync period (kvip issue #21). The Lease holds the count and a
digest of the advertised and of the desired set, the mode, and the few VIPs where the two differ (at
most MAX_LISTED each way), so its size does not grow with the VIP count. `kvip audit` recomputes
each node's expected set with decide() and checks it against the digests (`resolve_advertised`).

Renewal is one merge PATCH of spec.renewTime (plus the annotations that changed), no GET first; the
Lease is created on 404. Written when the view changes (at most once per MIN_INTERVAL) or when the
heartbeat is due (every resync period); a failure to write is logged once and never affects routes.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import hashlib
import json
import logging
import time
from collections.abc import Callable, Collection, Iterable, Mapping
from dataclasses import dataclass, replace
from typing import Any

from lightkube import AsyncClient
from lightkube.types import PatchType

from kvip.kube.election import micro_time
from kvip.kube.errors import ApiFailure, classify, describe
from kvip.kube.resources import Lease
from kvip.runtime.tasks import wait_event

log = logging.getLogger("kvip.heartbeat")

ADVERTISED_COUNT = "kvip.io/advertised-count"
ADVERTISED_DIGEST = "kvip.io/advertised-digest"
DESIRED_COUNT = "kvip.io/desired-count"
DESIRED_DIGEST = "kvip.io/desired-digest"
MISSING_ANNOTATION = "kvip.io/missing"  # desired but not advertised
EXTRA_ANNOTATION = "kvip.io/extra"  # advertised but not desired
MODE_ANNOTATION = "kvip.io/mode"
DRIFT_ANNOTATION = "kvip.io/dataplane-drift"  # DHCP/egress drift lines (kvip.core.dataplane_report)
# Written by kvip before issue #21 (the full JSON lists): read for rolling upgrades, removed on first write.
LEGACY_ADVERTISED = "kvip.io/advertised"
LEGACY_DESIRED = "kvip.io/desired"
NODE_LEASE_PREFIX = "kvip-node-"
LABEL = "kvip.io/heartbeat"
MIN_INTERVAL = 1.0
MAX_LISTED = 16
DIGEST_HEX = 32  # 128 bits: collisions are not a concern at any cluster's VIP count
DIGEST_V2 = "v2:"  # the incremental digest (`VipSetDigest`); no prefix: v1, read only
DIGEST_KEY = b"kvip.io/vip-set-digest"
DIGEST_MOD = 1 << 128
# Issue #20: what an agent says of its settings and sessions (`AgentFacts`), beside its view.
AGENT_SELECTOR_ANNOTATION = "kvip.io/agent-node-selector"  # its kvip_node_selector, as written ("" = none)
BGP_PEERS_ANNOTATION = "kvip.io/bgp-peers"  # Established peers → IP versions exported to each ("" = not BGP)
MAX_PEERS = 16
FACTS_POLL = 5.0  # seconds: how soon a BGP session that came up or went down reaches the Lease


def node_lease_name(node: str) -> str:
    return f"{NODE_LEASE_PREFIX}{node}"


def vip_hash(vip: str) -> int:
    """One VIP's share of a v2 digest: 128 bits of keyed BLAKE2b (the key only separates this use)."""
    return int.from_bytes(hashlib.blake2b(vip.encode(), digest_size=16, key=DIGEST_KEY).digest(), "big")


# vip_hash of each VIP seen, so the audit's from-scratch sums cost a dict lookup (in C) per VIP.
_HASHES: dict[str, int] = {}
HASH_MEMO_LIMIT = 1 << 16


def vip_sum(vips: Collection[str], *, remember: bool = True) -> int:
    """The sum of `vip_hash` over `vips` (unique), not yet reduced mod 2^128. `remember=False`: the
    hashes computed here are not kept in the memo (an agent's own digest, `VipSetSum`, sums its whole set
    only on its first update: keeping 10,000 128-bit hashes for that cost 0.6 MiB for good, issue #21)."""
    found = list(map(_HASHES.get, vips))
    if None in found and not remember:
        return sum(vip_hash(v) if h is None else h for v, h in zip(vips, found))
    if None in found:
        if len(_HASHES) + len(vips) > HASH_MEMO_LIMIT:
            _HASHES.clear()
        _HASHES.update((v, vip_hash(v)) for v in vips if v not in _HASHES)
        found = list(map(_HASHES.__getitem__, vips))
    return sum(found)  # type: ignore[arg-type]


def _v2(total: int) -> str:
    return f"{DIGEST_V2}{total % DIGEST_MOD:032x}"


@dataclass(frozen=True)
class VipSetDigest:
    """A VIP set's size and digest. v2 (`v2:` + 32 hex): the sum mod 2^128 of each VIP's `vip_hash`, so
    an agent keeps it up to date from a pass's added/removed VIPs (`VipSetSum`) instead of sorting and
    hashing every VIP each pass. v1 (32 hex, no prefix): sha256 of the sorted VIPs, written by kvip
    before that; still read, so an audit works while agents of both versions run (a rolling upgrade)."""

    count: int
    digest: str

    @classmethod
    def of(cls, vips: Iterable[str]) -> VipSetDigest:
        unique = set(vips)
        return cls(len(unique), _v2(vip_sum(unique)))

    @classmethod
    def v1(cls, vips: Iterable[str]) -> VipSetDigest:
        unique = sorted(set(vips))
        return cls(len(unique), hashlib.sha256("\n".join(unique).encode()).hexdigest()[:DIGEST_HEX])

    def matches(self, vips: Collection[str]) -> bool:
        """Whether `vips` is the set this digest was taken of, in the digest's own version."""
        if self.count != len(unique := set(vips)):
            return False
        return self == (VipSetDigest.of(unique) if self.digest.startswith(DIGEST_V2) else VipSetDigest.v1(unique))


class VipSetSum:
    """One VIP set's v2 digest, kept from pass to pass: each update hashes only what was added or removed
    (two set differences in C find them). From scratch on the first update, when more than half the set
    changed (no dearer then), and on `verify()` (the heartbeat calls it once per period: a doubt check)."""

    def __init__(self) -> None:
        self._members: frozenset[str] | set[str] = frozenset()
        self._total: int | None = None
        self.recomputed = 0  # from-scratch sums (tests)

    def update(self, vips: Collection[str]) -> VipSetDigest:
        new = vips if isinstance(vips, (set, frozenset)) else set(vips)
        old = self._members
        if self._total is None or new is not old:
            added, removed = new - old, old - new  # (two C passes; string hashes are cached)
            if self._total is None or len(added) + len(removed) > len(new) // 2:
                self._total = vip_sum(new, remember=False)
                self.recomputed += 1
            else:
                self._total += vip_sum(added, remember=False) - vip_sum(removed, remember=False)
            self._members = new
        return VipSetDigest(len(new), _v2(self._total))

    @property
    def members(self) -> Collection[str]:
        return self._members

    def verify(self) -> bool:
        """Recompute from scratch; False (and the sum repaired) if the kept one had drifted."""
        total = sum(map(vip_hash, self._members))  # (not the memo: this is the check)
        kept, self._total = self._total, total
        self.recomputed += 1
        return kept is None or kept % DIGEST_MOD == total % DIGEST_MOD


@dataclass(frozen=True)
class NodeView:
    """What one heartbeat Lease says; `missing`/`extra` are cut to MAX_LISTED (the digests tell)."""

    advertised: VipSetDigest
    desired: VipSetDigest
    missing: tuple[str, ...] = ()
    extra: tuple[str, ...] = ()
    mode: str = ""
    drift: tuple[str, ...] = ()

    @classmethod
    def of(cls, advertised: Iterable[str], desired: Iterable[str], *, mode: str = "",
           drift: Iterable[str] = (), sums: tuple[VipSetSum, VipSetSum] | None = None) -> NodeView:
        """`sums`: the advertised and desired digests kept from the previous view (`VipSetSum`), so only
        this view's changes are hashed; the answer is the same as without."""
        have = advertised if isinstance(advertised, (set, frozenset)) else set(advertised)
        want = desired if isinstance(desired, (set, frozenset)) else set(desired)
        digests = (VipSetDigest.of(have), VipSetDigest.of(want)) if sums is None else (
            sums[0].update(have), sums[1].update(want))
        return cls(*digests, tuple(sorted(want - have)[:MAX_LISTED]),
                   tuple(sorted(have - want)[:MAX_LISTED]), mode, tuple(drift)[:MAX_LISTED])

    def annotations(self) -> dict[str, str]:
        return {ADVERTISED_COUNT: str(self.advertised.count), ADVERTISED_DIGEST: self.advertised.digest,
                DESIRED_COUNT: str(self.desired.count), DESIRED_DIGEST: self.desired.digest,
                MISSING_ANNOTATION: json.dumps(list(self.missing)), EXTRA_ANNOTATION: json.dumps(list(self.extra)),
                MODE_ANNOTATION: self.mode, DRIFT_ANNOTATION: json.dumps(list(self.drift))}


@dataclass(frozen=True)
class AgentFacts:
    """What an agent says of its own settings and sessions. Rarely changing, so a renewal never carries
    them (only changed annotations are sent). None: not said (a kvip before issue #20; not BGP mode)."""

    node_selector: str | None = None
    bgp_peers: tuple[tuple[str, tuple[int, ...]], ...] | None = None  # (peer address, IP versions exported)

    @classmethod
    def of(cls, node_selector: str | None, bgp_peers: Mapping[str, Iterable[int]] | None) -> AgentFacts:
        if bgp_peers is None:
            return cls(node_selector)
        peers = sorted((str(p), tuple(sorted(set(v)))) for p, v in bgp_peers.items())
        return cls(node_selector, tuple(peers[:MAX_PEERS]))

    def annotations(self) -> dict[str, str]:
        peers = "" if self.bgp_peers is None else json.dumps({p: list(v) for p, v in self.bgp_peers})
        selector = {} if self.node_selector is None else {AGENT_SELECTOR_ANNOTATION: self.node_selector}
        return {**selector, BGP_PEERS_ANNOTATION: peers}


def facts_from_annotations(annotations: Mapping[str, str]) -> AgentFacts:
    """The inverse of `AgentFacts.annotations`; a peer list that cannot be read is not said."""
    selector = annotations.get(AGENT_SELECTOR_ANNOTATION)
    try:
        value = json.loads(annotations.get(BGP_PEERS_ANNOTATION) or "null")
    except ValueError:
        value = None
    if not isinstance(value, dict) or not all(
            isinstance(v, list) and all(x in (4, 6) for x in v) for v in value.values()):
        return AgentFacts(selector)
    return AgentFacts.of(selector, value)


class UnreadableHeartbeat(ValueError):
    pass


def _vips(text: str) -> tuple[str, ...]:
    value = json.loads(text)
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise UnreadableHeartbeat(f"not a list of VIPs: {text[:80]!r}")
    return tuple(value)


def view_from_annotations(annotations: Mapping[str, str]) -> NodeView:
    """The inverse of `NodeView.annotations`; a Lease written before issue #21 (full lists) reads the same."""
    try:
        if ADVERTISED_DIGEST not in annotations and LEGACY_ADVERTISED in annotations:
            return NodeView.of(_vips(annotations[LEGACY_ADVERTISED]), _vips(annotations.get(LEGACY_DESIRED, "[]")),
                               mode=annotations.get(MODE_ANNOTATION, ""))
        return NodeView(VipSetDigest(int(annotations[ADVERTISED_COUNT]), annotations[ADVERTISED_DIGEST]),
                        VipSetDigest(int(annotations[DESIRED_COUNT]), annotations[DESIRED_DIGEST]),
                        _vips(annotations.get(MISSING_ANNOTATION, "[]")), _vips(annotations.get(EXTRA_ANNOTATION, "[]")),
                        annotations.get(MODE_ANNOTATION, ""), _vips(annotations.get(DRIFT_ANNOTATION, "[]")))
    except (KeyError, ValueError) as exc:
        raise UnreadableHeartbeat(str(exc)) from exc


@dataclass(frozen=True)
class HeartbeatLease:
    """A node's heartbeat Lease as its readers (the advertised-by writer, `kvip audit`) take it."""

    node: str
    view: NodeView | None  # None: unreadable (damaged, or written by something else)
    facts: AgentFacts
    renewed: float | None  # renewTime in epoch seconds; None: unset or unreadable
    duration: float | None  # leaseDurationSeconds when a positive integer


def heartbeat_lease(obj: Mapping[str, Any]) -> HeartbeatLease | None:
    """One Lease of the heartbeat namespace read as a heartbeat; None for any other Lease there."""
    meta, spec = obj.get("metadata") or {}, obj.get("spec") or {}
    name = str(meta.get("name", ""))
    if not name.startswith(NODE_LEASE_PREFIX) or (meta.get("labels") or {}).get(LABEL) != "true":
        return None
    annotations = meta.get("annotations") or {}
    try:
        view: NodeView | None = view_from_annotations(annotations)
    except UnreadableHeartbeat:
        view = None
    duration = spec.get("leaseDurationSeconds")
    return HeartbeatLease(name[len(NODE_LEASE_PREFIX):], view, facts_from_annotations(annotations),
                          _epoch(spec.get("renewTime")),
                          float(duration) if isinstance(duration, int) and duration > 0 else None)


def _epoch(text: Any) -> float | None:
    """A Kubernetes (Micro)Time as epoch seconds."""
    for fmt in ("%Y-%m-%dT%H:%M:%S.%fZ", "%Y-%m-%dT%H:%M:%SZ"):
        try:
            return dt.datetime.strptime(str(text), fmt).replace(tzinfo=dt.UTC).timestamp()
        except ValueError:
            continue
    return None


def resolve_advertised(view: NodeView, expected: Collection[str]) -> frozenset[str] | None:
    """The set this node advertises, given the set the audit expects of it; None when the Lease cannot
    pin it down (the node's own desired set differs from `expected` where it advertises, or more than
    MAX_LISTED VIPs differ). The expected set corrected by the node's missing/extra lists counts only
    if the advertised digest confirms it, so the answer is never a wrong set."""
    candidate = (frozenset(expected) - set(view.missing)) | set(view.extra)
    return candidate if view.advertised.matches(candidate) else None


class HeartbeatPublisher:
    def __init__(self, client: AsyncClient, *, node_name: str, namespace: str, mode: str, period: float,
                 node_selector: str | None = None,
                 bgp_peers: Callable[[], Mapping[str, Iterable[int]]] | None = None) -> None:
        self._client = client
        self._selector = node_selector
        self._bgp_peers = bgp_peers
        self._facts_written: AgentFacts | None = None
        self._node = node_name
        self._namespace = namespace
        self._mode = mode
        self._period = period
        self._pending: NodeView | None = None
        self._published: NodeView | None = None
        self._written: dict[str, str] | None = None  # the annotations the Lease holds, as far as we know
        self._last_write = 0.0
        self._wake = asyncio.Event()
        self._warned = False
        self._sums = (VipSetSum(), VipSetSum())  # advertised, desired: kept digests (issue #21)

    def report(self, advertised: Iterable[str], desired: Iterable[str], drift: Iterable[str] = ()) -> None:
        # The caller hands the sets over (a pass builds new ones): the kept digests remember them.
        self._pending = NodeView.of(advertised, desired, mode=self._mode, drift=drift, sums=self._sums)
        if self._pending != self._published or self.facts() != self._facts_written:
            self._wake.set()

    def facts(self) -> AgentFacts:
        return AgentFacts.of(self._selector, None if self._bgp_peers is None else self._bgp_peers())

    async def run(self) -> None:
        while True:
            await wait_event(self._wake, min(self._period, FACTS_POLL))  # (a session change wakes nobody)
            self._wake.clear()
            if self._pending is None:
                continue
            since = time.monotonic() - self._last_write
            if self._pending == self._published and since < self._period and self.facts() == self._facts_written:
                continue
            if self._pending == self._published and [s for s in self._sums if not s.verify()]:  # (both checked)
                # Never seen: the kept sums are exact arithmetic. Checked once per period all the same.
                log.warning("heartbeat digest drifted from its VIP set; recomputed")
                advertised, desired = (s.update(s.members) for s in self._sums)
                self._pending = replace(self._pending, advertised=advertised, desired=desired)
            if since < MIN_INTERVAL:
                # A burst of changes becomes one write: the audit reads a settled view.
                await asyncio.sleep(MIN_INTERVAL - since)
                self._wake.clear()
            try:
                await self.renew()
                self._last_write = time.monotonic()
                self._warned = False
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                if not self._warned:
                    log.warning("cannot publish heartbeat Lease (%s); routes are unaffected", describe(exc))
                    self._warned = True

    async def renew(self) -> None:
        """One write of the latest reported view: a merge PATCH, or a create when the Lease is gone."""
        view = self._pending
        if view is None:
            return
        name = node_lease_name(self._node)
        facts = self.facts()
        annotations = {**view.annotations(), **facts.annotations()}
        patch: dict[str, Any] = {"spec": {"renewTime": micro_time()}}
        if self._written is None:
            # First write of this process: also set what a Lease left by an older kvip may lack or hold.
            patch["metadata"] = {"labels": {LABEL: "true"},
                                 "annotations": {LEGACY_ADVERTISED: None, LEGACY_DESIRED: None, **annotations}}
            patch["spec"].update(self._identity())
        elif changed := {k: v for k, v in annotations.items() if self._written.get(k) != v}:
            patch["metadata"] = {"annotations": changed}
        try:
            await self._client.patch(Lease, name, patch, namespace=self._namespace, patch_type=PatchType.MERGE)
        except Exception as exc:
            if classify(exc) is not ApiFailure.NOT_FOUND:
                raise
            body = {"apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
                    "metadata": {"name": name, "namespace": self._namespace, "labels": {LABEL: "true"},
                                 "annotations": annotations},
                    "spec": {**self._identity(), "renewTime": patch["spec"]["renewTime"]}}
            await self._client.create(Lease(body), namespace=self._namespace)
        self._written = annotations
        self._published = view
        self._facts_written = facts

    def _identity(self) -> dict[str, Any]:
        return {"holderIdentity": self._node, "leaseDurationSeconds": int(max(1, 3 * self._period))}
