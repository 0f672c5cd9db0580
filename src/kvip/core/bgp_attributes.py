"""BGP path attributes from per-service annotations — pure, no I/O.

MetalLB and Cilium put communities and local-pref on BGPAdvertisement objects; kube-vip has none.
kvip reads them from annotations on the Service, so the attributes travel with the thing they
describe and need no CRD:

    kvip.io/bgp-communities:       "65000:100, no-export"     (RFC 1997; well-known names allowed)
    kvip.io/bgp-large-communities: "65000:1:2"                (RFC 8092)
    kvip.io/bgp-local-pref:        "200"                      (iBGP peers only, as BGP defines)

A malformed entry is dropped with a `BadInput` naming it; the rest of the service's attributes and
its VIPs still count; an annotation listing more than `MAX_COMMUNITIES` entries is ignored whole.
When services share a VIP, communities are the union; conflicting local-prefs resolve to the lowest
(the choice that attracts the least traffic) and are reported on each owner.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping

from kvip.core.model import BadInput, RouteAttributes, ServiceKey, ServiceView, shown
from kvip.core.vips import memoized_per_view

COMMUNITIES_ANNOTATION = "kvip.io/bgp-communities"
LARGE_COMMUNITIES_ANNOTATION = "kvip.io/bgp-large-communities"
LOCAL_PREF_ANNOTATION = "kvip.io/bgp-local-pref"

GRACEFUL_SHUTDOWN = "65535:0"  # RFC 8326
DRAIN_LOCAL_PREF = 0

WELL_KNOWN = {
    "graceful-shutdown": GRACEFUL_SHUTDOWN,
    "accept-own": "65535:1",
    "blackhole": "65535:666",
    "no-export": "65535:65281",
    "no-advertise": "65535:65282",
    "no-export-subconfed": "65535:65283",
    "no-peer": "65535:65284",
}

_U16 = 2**16 - 1
_U32 = 2**32 - 1
MAX_COMMUNITIES = 32  # per annotation: each one is a line of BIRD filter on every node
_NUMBER = re.compile(r"[0-9]{1,10}")  # ASCII only: "²".isdigit() is true but int("²") raises


def _number(text: str, limit: int) -> int | None:
    """An ASCII decimal 0..limit, or None (never int() on unchecked text: non-ASCII digits and
    4,300+ digit values make it raise)."""
    if _NUMBER.fullmatch(text) is None:
        return None
    value = int(text)
    return value if value <= limit else None


def _entries(text: str) -> list[str]:
    return [part for part in re.split(r"[,\s]+", text.strip()) if part]


def parse_community(raw: str) -> str:
    """'65000:100' or a well-known name → '65000:100'; ValueError with a reason otherwise."""
    named = WELL_KNOWN.get(raw.lower())
    if named is not None:
        return named
    parts = raw.split(":")
    numbers = [_number(p, _U16) for p in parts]
    if len(parts) != 2 or None in numbers:
        raise ValueError(f"{shown(raw)} is not a community (ASN:VALUE, each 0-65535, or a well-known name)")
    return ":".join(str(n) for n in numbers)


def parse_large_community(raw: str) -> str:
    parts = raw.split(":")
    numbers = [_number(p, _U32) for p in parts]
    if len(parts) != 3 or None in numbers:
        raise ValueError(f"{shown(raw)} is not a large community (GLOBAL:LOCAL1:LOCAL2, each 0-4294967295)")
    return ":".join(str(n) for n in numbers)


def _parse_list(service: ServiceView, annotation: str, parse: Callable[[str], str],
                problems: list[BadInput]) -> frozenset[str]:
    text = service.annotations.get(annotation, "")
    entries = _entries(text) if isinstance(text, str) else []
    if len(entries) > MAX_COMMUNITIES:
        problems.append(BadInput(service.key, "InvalidAnnotation",
                                 f"{annotation} lists {len(entries)} entries, more than the limit of "
                                 f"{MAX_COMMUNITIES}; all ignored"))
        return frozenset()
    found: set[str] = set()
    for raw in entries:
        try:
            found.add(parse(raw))
        except ValueError as exc:
            problems.append(BadInput(service.key, "InvalidAnnotation", f"{annotation}: {exc}; ignored"))
    return frozenset(found)


@memoized_per_view
def service_attributes(service: ServiceView) -> tuple[RouteAttributes, tuple[BadInput, ...]]:
    """The attributes one service asks for, and what was wrong with its annotations."""
    problems: list[BadInput] = []
    communities = _parse_list(service, COMMUNITIES_ANNOTATION, parse_community, problems)
    large = _parse_list(service, LARGE_COMMUNITIES_ANNOTATION, parse_large_community, problems)
    local_pref: int | None = None
    text = service.annotations.get(LOCAL_PREF_ANNOTATION, "")
    raw = text.strip() if isinstance(text, str) else ""
    if raw:
        local_pref = _number(raw, _U32)
        if local_pref is None:
            problems.append(BadInput(service.key, "InvalidAnnotation",
                                     f"{LOCAL_PREF_ANNOTATION}: {shown(raw)} is not a number 0-4294967295; ignored"))
    return RouteAttributes(communities, large, local_pref), tuple(problems)


def merged_attributes(
    services: Mapping[ServiceKey, ServiceView], owners: Iterable[ServiceKey], vip: object
) -> tuple[RouteAttributes, tuple[BadInput, ...]]:
    """One VIP's attributes from all of its owners (shared VIPs); conflicts reported, never fatal."""
    keys = sorted(owners)
    try:
        parts = [(key, service_attributes(services[key])[0]) for key in keys]
    except Exception as exc:  # defence in depth: never an exception out of decide(); the VIP keeps its route
        message = f"cannot compute the BGP attributes of VIP {vip}: {type(exc).__name__}; announced without them"
        return RouteAttributes(), tuple(BadInput(key, "InternalError", message) for key in keys)
    communities = frozenset().union(*(a.communities for _, a in parts))
    large = frozenset().union(*(a.large_communities for _, a in parts))
    prefs = {a.local_pref for _, a in parts if a.local_pref is not None}
    problems: tuple[BadInput, ...] = ()
    if len(prefs) > 1:
        chosen = min(prefs)
        message = (f"VIP {vip} is shared by services asking for different {LOCAL_PREF_ANNOTATION} "
                   f"{sorted(prefs)}; announcing the lowest, {chosen}")
        problems = tuple(BadInput(key, "BGPAttributeConflict", message) for key in keys)
    return RouteAttributes(communities, large, min(prefs) if prefs else None), problems


def drained(attributes: RouteAttributes) -> RouteAttributes:
    """RFC 8326 graceful shutdown: the GRACEFUL_SHUTDOWN community and local-pref 0 (for iBGP peers)."""
    return RouteAttributes(attributes.communities | {GRACEFUL_SHUTDOWN}, attributes.large_communities,
                           DRAIN_LOCAL_PREF)
