"""Soft preference for a Lease's holder (`kvip.io/preferred-nodes`) and the graceful handover — pure, no I/O.

The annotation is a list of weighted node selectors, `;`-separated, each `WEIGHT:SELECTOR` with a weight
1-100 and a selector in kubectl's `-l` syntax (`kvip.core.node_selector`), as MetalLB's
`preferredNodeSelectors` and Kubernetes' preferred scheduling terms weigh theirs:

    kvip.io/preferred-nodes: "100:zone=a; 50:disk=ssd"

A node's score is the sum of the weights of the terms its labels match; `top` is the sum of every weight.
Preference never makes a node eligible: it only orders the nodes that already contend for the Lease.

What the rules decide, each from what this node saw and its own clock:
- a free Lease (new, released or expired): a node defers taking it by a share of a retry period that
  shrinks with its score (`deferred`), so the best-scoring ready node acts first;
- a held Lease: a node that outscores the holder (as the holder published it in `kvip.io/holder-score`)
  and has been ready without a break for the hold-down asks for it (`should_request`), by writing
  `kvip.io/handover-to` / `kvip.io/handover-score` on the Lease; the holder, seeing a request that
  outscores it, hands the Lease over (`handover_target`) after withdrawing its own advertisement.
The hold-down restarts whenever the node stops contending (unhealthy, not eligible): a node whose health
flaps never asks, so preference and health disagreeing cannot move the VIP back and forth.
"""

from __future__ import annotations

import enum
import functools
from collections.abc import Collection, Mapping
from dataclasses import dataclass

from kvip.core.election_rules import (
    LeaseKey,
    LeaseRecord,
    LeaseTiming,
    Step,
    expires_after,
)
from kvip.core.leases import (
    ElectionPlan,
    InvalidLeaseName,
    lease_of,
    per_service_elected,
)
from kvip.core.model import (
    BadInput,
    ElectionMode,
    NodeView,
    ServiceKey,
    ServiceView,
    shown,
)
from kvip.core.node_selector import InvalidSelector, NodeSelector, parse_selector

PREFERRED_NODES_ANNOTATION = "kvip.io/preferred-nodes"
HOLDER_SCORE_ANNOTATION = "kvip.io/holder-score"  # written by the holder on each write: its score
HANDOVER_TO_ANNOTATION = "kvip.io/handover-to"  # written by a node asking for the Lease: its name
HANDOVER_SCORE_ANNOTATION = "kvip.io/handover-score"  # ... and its score
REQUEST_ANNOTATIONS = (HANDOVER_TO_ANNOTATION, HANDOVER_SCORE_ANNOTATION)
MAX_PREFERENCE_CHARS = 4096
MAX_TERMS = 16
MAX_WEIGHT = 100
MAX_NODE_NAME = 253


class InvalidPreference(ValueError):
    """A `kvip.io/preferred-nodes` value that cannot be read; the message says where."""


@dataclass(frozen=True)
class PreferenceTerm:
    weight: int
    selector: NodeSelector


@dataclass(frozen=True)
class Preference:
    terms: tuple[PreferenceTerm, ...]

    @property
    def top(self) -> int:
        """The score of a node matching every term."""
        return sum(t.weight for t in self.terms)

    def score(self, node: NodeView | None) -> int:
        """Sum of the weights of the terms `node` matches; an unseen node matches none (fail closed)."""
        return 0 if node is None else sum(t.weight for t in self.terms if t.selector.matches(node.labels))


@dataclass(frozen=True)
class Rank:
    """This node's standing for one Lease: its score and the best score any node could have."""

    score: int
    top: int


@functools.lru_cache(maxsize=1024)  # read for every eligible Service on every pass; parsing is pure
def parse_preference(text: str) -> Preference:
    if len(text) > MAX_PREFERENCE_CHARS:
        raise InvalidPreference(f"has {len(text)} characters, more than the limit of {MAX_PREFERENCE_CHARS}")
    parts = [p.strip() for p in text.split(";")]
    if parts and not parts[-1]:
        parts.pop()  # one trailing ';' is harmless
    if not parts:
        raise InvalidPreference("names no term (expected WEIGHT:SELECTOR; ...)")
    if len(parts) > MAX_TERMS:
        raise InvalidPreference(f"has {len(parts)} terms, more than the limit of {MAX_TERMS}")
    terms = []
    for number, part in enumerate(parts, 1):
        weight, colon, selector = part.partition(":")
        if not colon:
            raise InvalidPreference(f"term {number} {shown(part)}: expected WEIGHT:SELECTOR")
        if not weight.strip().isascii() or not weight.strip().isdigit() or not 1 <= int(weight) <= MAX_WEIGHT:
            raise InvalidPreference(f"term {number}: weight {shown(weight.strip())} is not an integer 1-{MAX_WEIGHT}")
        try:
            parsed = parse_selector(selector.strip())
        except InvalidSelector as why:
            raise InvalidPreference(f"term {number}: {why}") from None
        if not parsed.requirements:
            raise InvalidPreference(f"term {number}: the selector is empty (it would match every node)")
        terms.append(PreferenceTerm(int(weight), parsed))
    return Preference(tuple(terms))


def preference_refusal(service: ServiceView, mode: ElectionMode, on_demand: bool) -> BadInput | None:
    """Why this Service's `kvip.io/preferred-nodes` is ignored, as one problem (decide() reports it with the
    Service's others): a value that cannot be read, or a Service with no per-service Lease to prefer a
    holder of. It never keeps the Service from being advertised."""
    text = service.annotations.get(PREFERRED_NODES_ANNOTATION)
    if text is None or (isinstance(text, str) and not text.strip()):
        return None
    if not isinstance(text, str):
        return BadInput(service.key, "InvalidAnnotation", f"{PREFERRED_NODES_ANNOTATION} is not text; ignored")
    try:
        parse_preference(text)
    except InvalidPreference as why:
        return BadInput(service.key, "InvalidAnnotation", f"{PREFERRED_NODES_ANNOTATION}: {why}; preference ignored")
    if not per_service_elected(service, mode, on_demand):
        return BadInput(service.key, "UnsupportedAnnotation", f"{PREFERRED_NODES_ANNOTATION} needs per-service "
                        "election (svc_election=true or kube-vip.io/enableServiceElection); ignored (the global "
                        "Lease's preference is the agents' kvip_preferred_nodes)")
    return None


def lease_ranks(plan: ElectionPlan, services: Mapping[ServiceKey, ServiceView], eligible: Collection[ServiceKey],
                node: NodeView | None, global_preference: Preference | None = None) -> dict[LeaseKey, Rank]:
    """This node's rank for the Lease of every per-service-elected Service it is eligible for and that has a
    readable preference (an unreadable one is ignored: `preference_refusal` reports it). A shared Lease
    (`kube-vip.io/leaseName`) follows the preference of its first Service (by namespace/name) that has one.
    `global_preference` (the agent's kvip_preferred_nodes) ranks the global services Lease, if there is one."""
    ranks: dict[LeaseKey, Rank] = {}
    if global_preference is not None and plan.mode is ElectionMode.GLOBAL and plan.global_lease is not None:
        ranks[plan.global_lease] = Rank(global_preference.score(node), global_preference.top)
    for key in sorted(k for k in eligible if k in services):
        service = services[key]
        text = service.annotations.get(PREFERRED_NODES_ANNOTATION)
        if not isinstance(text, str) or not text.strip() or not per_service_elected(
                service, plan.mode, plan.per_service_on_demand):
            continue
        try:
            lease, preference = lease_of(service), parse_preference(text)
        except (InvalidLeaseName, InvalidPreference):
            continue  # reported by decide()
        ranks.setdefault(lease, Rank(preference.score(node), preference.top))
    return ranks


# -- the Lease's annotations --------------------------------------------------------------------------


def _score(value: str | None) -> int:
    """A score read from a Lease annotation: 0 when absent or unreadable (a kube-vip holder writes none)."""
    if value is None or not value.isascii() or not value.isdigit() or len(value) > 6:
        return 0
    return int(value)


def holder_score(record: LeaseRecord) -> int:
    return _score(record.annotations.get(HOLDER_SCORE_ANNOTATION))


def request_of(record: LeaseRecord) -> tuple[str, int] | None:
    """The pending handover request on the Lease: (node asking, its score), or None."""
    node = record.annotations.get(HANDOVER_TO_ANNOTATION)
    if not node or len(node) > MAX_NODE_NAME:
        return None
    return node, _score(record.annotations.get(HANDOVER_SCORE_ANNOTATION))


def without_request(annotations: Mapping[str, str]) -> dict[str, str]:
    return {k: v for k, v in annotations.items() if k not in REQUEST_ANNOTATIONS}


def holder_annotations(annotations: Mapping[str, str], rank: Rank | None) -> dict[str, str]:
    """What the holder writes with every create, take-over or renewal: its score, and no request (a
    request it would grant is handed over instead of renewed, so one still there is refused or stale)."""
    kept = {k: v for k, v in without_request(annotations).items() if k != HOLDER_SCORE_ANNOTATION}
    return kept if rank is None else {**kept, HOLDER_SCORE_ANNOTATION: str(rank.score)}


def request_annotations(annotations: Mapping[str, str], identity: str, rank: Rank) -> dict[str, str]:
    return {**annotations, HANDOVER_TO_ANNOTATION: identity, HANDOVER_SCORE_ANNOTATION: str(rank.score)}


def handed_over_annotations(annotations: Mapping[str, str], score: int) -> dict[str, str]:
    """The handover write: the request is answered, and the new holder's score is the one it asked with."""
    return {**without_request(annotations), HOLDER_SCORE_ANNOTATION: str(score)}


# -- the rules ------------------------------------------------------------------------------------------


def deferred(step: Step, record: LeaseRecord, rank: Rank | None, timing: LeaseTiming, now: float) -> Step:
    """Hold back taking a free Lease by (1 - score/top) of a retry period (two for a new Lease, whose spread
    already reaches two), so that, of the nodes contending, the best-scoring one acts first."""
    if rank is None or rank.top <= 0 or step not in (Step.CREATE, Step.ACQUIRE):
        return step
    share = 1.0 - min(rank.score, rank.top) / rank.top
    if step is Step.CREATE:
        free_since, wait = record.changed_at, share * 2 * timing.retry_period
    else:
        free_since = record.changed_at + (0.0 if record.holder is None else expires_after(record, timing))
        wait = share * timing.retry_period
    return step if now - free_since >= wait else Step.WAIT


def should_request(record: LeaseRecord, rank: Rank | None, *, identity: str, ready_since: float | None,
                   holddown: float, timing: LeaseTiming, now: float) -> bool:
    """Ask for a Lease another node holds: we outscore its holder, have been ready for the whole hold-down,
    and no request as good as ours is already waiting."""
    if rank is None or rank.score <= 0 or ready_since is None or now - ready_since < holddown:
        return False
    if not record.exists or record.holder is None or record.holder == identity:
        return False
    if now - record.changed_at >= expires_after(record, timing):
        return False  # expired: taken the ordinary way
    if rank.score <= holder_score(record):
        return False
    pending = request_of(record)
    return pending is None or (pending[0] != identity and pending[1] < rank.score)


def handover_target(record: LeaseRecord, rank: Rank | None, identity: str) -> str | None:
    """The node we (the holder) hand the Lease to: one whose request outscores us."""
    pending = request_of(record)
    if not record.exists or record.holder != identity or pending is None or pending[0] == identity:
        return None
    return pending[0] if pending[1] > (0 if rank is None else rank.score) else None


class Outcome(enum.Enum):
    WAITING = "waiting"
    GRANTED = "granted"  # the Lease names us: renew it at once
    REFUSED = "refused"  # cleared, outbid, or no answer within the patience: wait a hold-down again


def request_outcome(record: LeaseRecord, *, identity: str, sent_at: float, patience: float, now: float) -> Outcome:
    if record.exists and record.holder == identity:
        return Outcome.GRANTED
    pending = request_of(record)
    if not record.exists or pending is None or pending[0] != identity or now - sent_at >= patience:
        return Outcome.REFUSED
    return Outcome.WAITING


def request_patience(timing: LeaseTiming) -> float:
    """How long a request waits for its answer: the holder reads the Lease every retry period, then
    withdraws its advertisement and writes; three periods cover both with room for one failed read."""
    return 3 * timing.retry_period
