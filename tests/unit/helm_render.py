"""A deliberately small Helm template renderer for the tests (no helm binary may be installed here).

Supports exactly what deploy/helm/kvip uses, and fails loudly on anything else:
`{{ .Values.a.b }}`, `{{ .Release.Namespace }}` inline, and on their own lines
`{{- if EXPR }}`, `{{- else }}`, `{{- end }}`, where EXPR is `.Values.x`, `"literal"`, or Go's
`eq`/`ne` (of a value and a string literal), `and`, `or`, `not` applied to such, parenthesised when nested.
Values merge into the chart's defaults key by key, at every depth, as Helm merges them.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import yaml

INLINE = re.compile(r"\{\{\s*(\.[A-Za-z.]+)\s*\}\}")
CONTROL = re.compile(r"^\s*\{\{-\s*(.*?)\s*\}\}\s*$")


class UnsupportedTemplate(ValueError):
    pass


def _lookup(path: str, scope: dict[str, Any]) -> Any:
    value: Any = scope
    for part in path.strip(".").split("."):
        value = value[part]
    return value


TOKEN = re.compile(r'\s*(\(|\)|"[^"]*"|\.[A-Za-z.]+|[a-z]+)')


def _tokens(expression: str) -> list[str]:
    tokens, at = [], 0
    while at < len(expression.rstrip()):
        m = TOKEN.match(expression, at)
        if not m:
            raise UnsupportedTemplate(expression)
        tokens.append(m.group(1))
        at = m.end()
    return tokens


def _evaluate(tokens: list[str], scope: dict[str, Any]) -> Any:
    """One argument or call off the front of `tokens` (consumed), evaluated as Go's templates do."""
    token = tokens.pop(0)
    if token == "(":
        value = _call(tokens, scope)
        if tokens.pop(0) != ")":
            raise UnsupportedTemplate("unbalanced parentheses")
        return value
    if token.startswith('"'):
        return token[1:-1]
    if token.startswith("."):
        return _lookup(token, scope)
    raise UnsupportedTemplate(token)


def _call(tokens: list[str], scope: dict[str, Any]) -> Any:
    if tokens[0] not in ("eq", "ne", "and", "or", "not"):
        return _evaluate(tokens, scope)
    name = tokens.pop(0)
    args = []
    while tokens and tokens[0] != ")":
        args.append(_evaluate(tokens, scope))
    if name in ("eq", "ne"):
        if len(args) != 2 or not isinstance(args[1], str):
            raise UnsupportedTemplate(f"{name} takes a value and a string literal here")
        return (str(args[0]) == args[1]) == (name == "eq")
    if name == "not":
        return not args[0]
    truths = [bool(a) for a in args]
    return all(truths) if name == "and" else any(truths)


def _condition(expression: str, scope: dict[str, Any]) -> bool:
    tokens = _tokens(expression)
    value = _call(tokens, scope)
    if tokens:
        raise UnsupportedTemplate(expression)
    return bool(value)


def _merged(defaults: dict[str, Any], values: dict[str, Any]) -> dict[str, Any]:
    out = dict(defaults)
    for key, value in values.items():
        out[key] = _merged(out[key], value) if isinstance(value, dict) and isinstance(out.get(key), dict) else value
    return out


def render(chart: Path, values: dict[str, Any], namespace: str) -> list[dict[str, Any]]:
    defaults = yaml.safe_load((chart / "values.yaml").read_text())
    merged = _merged(defaults, values)
    scope = {"Values": merged, "Release": {"Namespace": namespace}}
    objects: list[dict[str, Any]] = []
    for template in sorted((chart / "templates").glob("*.yaml")):
        out: list[str] = []
        stack: list[tuple[bool, bool]] = []  # (this branch taken, parent active)
        for line in template.read_text().splitlines():
            control = CONTROL.match(line)
            active = all(taken for taken, _ in stack)
            if control:
                statement = control.group(1)
                if statement.startswith("if "):
                    stack.append((active and _condition(statement[3:], scope), active))
                elif statement == "else":
                    taken, parent = stack.pop()
                    stack.append((parent and not taken, parent))
                elif statement == "end":
                    stack.pop()
                else:
                    raise UnsupportedTemplate(statement)
                continue
            if active:
                out.append(INLINE.sub(lambda m: str(_lookup(m.group(1), scope)), line))
        if stack:
            raise UnsupportedTemplate(f"unclosed if in {template.name}")
        objects.extend(o for o in yaml.safe_load_all("\n".join(out)) if o)
    return objects
