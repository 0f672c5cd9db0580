"""Which nodes may advertise a Service: label selectors in kubectl's `-l` syntax — pure, no I/O.

Two selectors, both optional, must both match this node's labels: `kvip_node_selector` (every Service)
and the Service's `kvip.io/node-selector` annotation. Syntax and meaning are Kubernetes' own
(k8s.io/apimachinery labels.Parse), so an operator can check a selector with
`kubectl get nodes -l '<selector>'` before using it:

    a=b  a==b  a!=b  a in (x,y)  a notin (x)  a  !a  a>1  a<9      (comma = and; '' selects every node)

including its corners: `a!=b` and `a notin (...)` match a node without `a`; `a in ()` means the value ''.
Keys and values are checked as the API checks label keys and values. One divergence: a NUL character is
refused (Go's lexer reads it as the end of the text; a shell cannot pass one to kubectl anyway).

A node whose Node object the agent has not seen has no known labels and is outside every selector
(fail closed: the operator asked for *these* nodes, and this one cannot show it is one of them).
"""

from __future__ import annotations

import enum
import functools
import re
from collections.abc import Mapping
from dataclasses import dataclass

from kvip.core.model import BadInput, NodeView, ServiceView, shown

NODE_SELECTOR_ANNOTATION = "kvip.io/node-selector"
# A selector naming a dozen long keys with value lists fits in well under 1 KiB; past 4 KiB it is a mistake
# or an attack, refused before it is lexed.
MAX_SELECTOR_CHARS = 4096

_NAME = re.compile(r"([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]")
_SUBDOMAIN = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*")
_INT64 = re.compile(r"[+-]?[0-9]+")
_SPECIAL = frozenset("=!(),><")
_WHITESPACE = frozenset(" \t\r\n")
_SYMBOLS = ("==", "!=", "=", "!", "(", ")", ",", ">", "<")  # longest first: the lexer takes the longest


class InvalidSelector(ValueError):
    """A selector kubectl would refuse (or one over MAX_SELECTOR_CHARS); the message says where."""


class Operator(enum.Enum):
    EXISTS = "exists"
    DOES_NOT_EXIST = "!"
    IN = "in"  # also `=` and `==`, one value
    NOT_IN = "notin"  # also `!=`, one value
    GREATER_THAN = ">"
    LESS_THAN = "<"


@dataclass(frozen=True)
class Requirement:
    key: str
    operator: Operator
    values: frozenset[str] = frozenset()

    def matches(self, labels: Mapping[str, str]) -> bool:
        value = labels.get(self.key)
        if self.operator is Operator.EXISTS:
            return value is not None
        if self.operator is Operator.DOES_NOT_EXIST:
            return value is None
        if self.operator is Operator.IN:
            return value is not None and value in self.values
        if self.operator is Operator.NOT_IN:
            return value is None or value not in self.values
        have, (bound,) = _int64(value), tuple(self.values)
        if have is None:
            return False  # absent, or not an integer: no order to compare (as Kubernetes)
        limit = int(bound)
        return have > limit if self.operator is Operator.GREATER_THAN else have < limit


@dataclass(frozen=True)
class NodeSelector:
    requirements: tuple[Requirement, ...]
    text: str = ""  # as written, for messages

    def matches(self, labels: Mapping[str, str]) -> bool:
        return all(r.matches(labels) for r in self.requirements)


def _int64(text: str | None) -> int | None:
    """Go's strconv.ParseInt(text, 10, 64): optional sign, ASCII digits, in range; None otherwise."""
    if text is None or not _INT64.fullmatch(text):
        return None
    number = int(text)
    return number if -(2**63) <= number < 2**63 else None


def _lex(text: str) -> list[str | None]:
    """Tokens: a symbol, an identifier (any run of other non-blank characters), None at the end. Keywords
    (`in`, `notin`) stay identifiers here; only the operator position reads them as keywords."""
    tokens: list[str | None] = []
    i = 0
    while i < len(text):
        if text[i] in _WHITESPACE:
            i += 1
        elif text[i] in _SPECIAL:
            symbol = next(s for s in _SYMBOLS if text.startswith(s, i))
            tokens.append(symbol)
            i += len(symbol)
        else:
            start = i
            while i < len(text) and text[i] not in _SPECIAL and text[i] not in _WHITESPACE:
                i += 1
            tokens.append(text[start:i])
    tokens.append(None)
    return tokens


def _identifier(token: str | None) -> bool:
    return token is not None and token not in _SYMBOLS


def _check_key(key: str) -> None:
    prefix, slash, name = key.rpartition("/")
    if slash and (not prefix or "/" in prefix):
        raise InvalidSelector(f"key {shown(key)} must be NAME or PREFIX/NAME")
    if slash and (len(prefix) > 253 or not _SUBDOMAIN.fullmatch(prefix)):
        raise InvalidSelector(f"key {shown(key)}: the prefix must be a DNS subdomain (lower case, at most 253)")
    if len(name) > 63 or not _NAME.fullmatch(name):
        raise InvalidSelector(f"key {shown(key)}: the name must be 1-63 of A-Z a-z 0-9 - _ . and start and end "
                              "alphanumeric")


def _check_value(key: str, value: str) -> None:
    if value and (len(value) > 63 or not _NAME.fullmatch(value)):
        raise InvalidSelector(f"value {shown(value)} of {shown(key)}: at most 63 of A-Z a-z 0-9 - _ . and start and "
                              "end alphanumeric")


class _Parser:
    def __init__(self, text: str) -> None:
        self.tokens = _lex(text)
        self.at = 0

    def peek(self) -> str | None:
        return self.tokens[self.at]

    def take(self) -> str | None:
        self.at += 1
        return self.tokens[self.at - 1]

    def fail(self, found: str | None, expected: str) -> InvalidSelector:
        return InvalidSelector(f"found {'end of text' if found is None else shown(found)}, expected {expected}")

    def selector(self) -> tuple[Requirement, ...]:
        found: list[Requirement] = []
        if self.peek() is None:
            return ()
        while True:
            if not (_identifier(self.peek()) or self.peek() == "!"):
                raise self.fail(self.peek(), "'!' or a key")
            found.append(self.requirement())
            token = self.take()
            if token is None:
                return tuple(found)
            if token != ",":
                raise self.fail(token, "',' or the end")

    def requirement(self) -> Requirement:
        negated = self.peek() == "!"
        if negated:
            self.take()
        key = self.take()
        if not _identifier(key):
            raise self.fail(key, "a key")
        assert key is not None
        _check_key(key)
        if negated or self.peek() in (None, ","):
            # `!key x`: the requirement is `!key`, and what follows is refused by the caller.
            return Requirement(key, Operator.DOES_NOT_EXIST if negated else Operator.EXISTS)
        token = self.take()
        if token in ("in", "notin"):
            values = self.value_set()
            operator = Operator.IN if token == "in" else Operator.NOT_IN
        elif token in ("=", "==", "!=", ">", "<"):
            values = self.exact_value()
            operator = {"=": Operator.IN, "==": Operator.IN, "!=": Operator.NOT_IN,
                        ">": Operator.GREATER_THAN, "<": Operator.LESS_THAN}[token]
        else:
            raise self.fail(token, "in, notin, =, ==, !=, > or <")
        for value in values:
            _check_value(key, value)
        if operator in (Operator.GREATER_THAN, Operator.LESS_THAN) and _int64(next(iter(values))) is None:
            raise InvalidSelector(f"{shown(key)} {token}: the value must be an integer")
        return Requirement(key, operator, values)

    def exact_value(self) -> frozenset[str]:
        if self.peek() in (None, ","):
            return frozenset({""})  # `a=` means the empty value
        token = self.take()
        if not _identifier(token):
            raise self.fail(token, "a value")
        assert token is not None
        return frozenset({token})

    def value_set(self) -> frozenset[str]:
        """`( v, ... )`, where an empty place is the value '' (`()`, `(a,)`, `(,a)`, `(a,,b)`) — with
        Kubernetes' corners kept: `(a,,)` and `(,,)` are refused, `(a,,,)` is not."""
        token = self.take()
        if token != "(":
            raise self.fail(token, "'('")
        if self.peek() == ")":
            self.take()
            return frozenset({""})
        if not (_identifier(self.peek()) or self.peek() == ","):
            raise self.fail(self.peek(), "a value, ',' or ')'")
        values: set[str] = set()
        while True:
            token = self.take()
            if _identifier(token):
                assert token is not None
                values.add(token)
                if self.peek() == ")":
                    self.take()
                    return frozenset(values)
                if self.peek() != ",":
                    raise self.fail(self.peek(), "',' or ')'")
            elif token == ",":
                if not values:
                    values.add("")
                if self.peek() == ")":
                    self.take()
                    return frozenset(values | {""})
                if self.peek() == ",":
                    self.take()
                    values.add("")
            else:
                raise self.fail(token, "a value or ','")


@functools.lru_cache(maxsize=1024)  # decide() reads every annotation on every pass; parsing is pure
def parse_selector(text: str) -> NodeSelector:
    """A selector from kubectl `-l` text; `InvalidSelector` says why kubectl would refuse it."""
    if len(text) > MAX_SELECTOR_CHARS:
        raise InvalidSelector(f"has {len(text)} characters, more than the limit of {MAX_SELECTOR_CHARS}")
    if "\0" in text:
        raise InvalidSelector("contains a NUL character")
    return NodeSelector(_Parser(text).selector(), text)


def node_selected(selector: NodeSelector | None, node: NodeView | None) -> bool:
    """Whether `node` is inside `selector` (None: no selector, every node is)."""
    return selector is None or (node is not None and selector.matches(node.labels))


def selection_refusal(service: ServiceView, selector: NodeSelector | None, node: NodeView | None
                      ) -> tuple[str, tuple[BadInput, ...]] | None:
    """Why this node may not advertise this Service by its labels (decision reason, problems), or None.
    A bad annotation refuses the Service on every node: advertising it everywhere would ignore what the
    operator meant to restrict."""
    text = service.annotations.get(NODE_SELECTOR_ANNOTATION)
    own: NodeSelector | None = None
    if isinstance(text, str):
        try:
            own = parse_selector(text)
        except InvalidSelector as why:
            return "invalid-node-selector", (BadInput(
                service.key, "InvalidAnnotation",
                f"{NODE_SELECTOR_ANNOTATION}={shown(text)}: {why}; not advertised by any node"),)
    if not node_selected(selector, node):
        return "node-not-selected", ()
    if not node_selected(own, node):
        return "node-not-selected-by-service", ()
    return None
