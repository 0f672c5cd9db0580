"""The lab's own reading of `birdc show route [table T] all`: what a BIRD router holds, path by path.

Deliberately not the agent's parser (kvip.dataplane.bird.control): the lab checks what the agent
announced, so a bug in the agent's parser must not hide itself by also misreading the router.
Shape of the text (BIRD 2.0):

    Table master4:
    10.96.0.50/32        unicast [n2 10:45:01.728] * (100) [i]
    	via 10.99.2.2 on eth0
    	BGP.local_pref: 150
                         unicast [n1 10:45:02.733] (100) [AS65101i]
    	BGP.community: (65000,7) (65101,100)
    	BGP.large_community: (65101, 1, 2)

A line starting with a prefix opens a route and its first path; an indented line opens another
path of the same route; tab-indented lines are attributes of the current path.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field

_PATH = re.compile(r"^(?P<prefix>\S+/\d+)?\s+(?P<kind>[a-z]+)\s+\[(?P<protocol>\S+)[^\]]*\](?P<rest>.*)$")
_TUPLE = re.compile(r"\(([^()]*)\)")


class BirdRouteParseError(ValueError):
    """`show route` text that does not have the shape above."""


@dataclass(frozen=True)
class RouterPath:
    """One path a BIRD router holds for a prefix, with the BGP attributes the lab checks."""

    prefix: str
    protocol: str  # the BIRD protocol (session) that brought it
    primary: bool  # BIRD's best path for the prefix (marked "*")
    next_hop: str | None = None
    local_pref: int | None = None
    as_path: str = ""
    communities: frozenset[str] = field(default_factory=frozenset)  # "65000:7"
    large_communities: frozenset[str] = field(default_factory=frozenset)  # "65101:1:2"


def _tuples(text: str) -> frozenset[str]:
    return frozenset(":".join(part.strip() for part in inner.split(",")) for inner in _TUPLE.findall(text))


def parse_show_route(text: str | Iterable[str]) -> list[RouterPath]:
    """Every path in `birdc show route ... all` output, in BIRD's order. Raises BirdRouteParseError
    on a path line before any prefix or an attribute line before any path."""
    lines = text.splitlines() if isinstance(text, str) else list(text)
    paths: list[RouterPath] = []
    current: dict[str, object] | None = None
    prefix: str | None = None

    def close() -> None:
        if current is not None:
            paths.append(RouterPath(**current))  # type: ignore[arg-type]

    for number, line in enumerate(lines, 1):
        if not line.strip() or line.startswith(("BIRD ", "Table ")):
            continue
        if line.startswith("\t"):
            if current is None:
                raise BirdRouteParseError(f"line {number}: attribute before any route: {line!r}")
            attribute = line.strip()
            if attribute.startswith("via "):  # before any split on ":": IPv6 addresses hold colons
                current.setdefault("next_hop", attribute.split()[1])
                continue
            name, _, value = attribute.partition(":")
            value = value.strip()
            if name == "BGP.next_hop":
                current["next_hop"] = value.split()[0]
            elif name == "BGP.local_pref":
                current["local_pref"] = int(value)
            elif name == "BGP.as_path":
                current["as_path"] = value
            elif name == "BGP.community":
                current["communities"] = _tuples(value)
            elif name == "BGP.large_community":
                current["large_communities"] = _tuples(value)
            continue
        match = _PATH.match(line)
        if match is None:
            raise BirdRouteParseError(f"line {number}: not a route line: {line!r}")
        prefix = match["prefix"] or prefix
        if prefix is None:
            raise BirdRouteParseError(f"line {number}: a path before any prefix: {line!r}")
        close()
        current = {"prefix": prefix, "protocol": match["protocol"], "primary": "*" in match["rest"].split()}
    close()
    return paths
