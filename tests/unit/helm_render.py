"""A deliberately small Helm template renderer for the tests (no helm binary may be installed here).

Supports exactly what deploy/helm/kvip uses, and fails loudly on anything else:
`{{ .Values.a.b }}`, `{{ .Release.Namespace }}` inline, and on their own lines
`{{- if .Values.x }}`, `{{- if eq|ne .Values.x "literal" }}`, `{{- else }}`, `{{- end }}`.
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


def _condition(expression: str, scope: dict[str, Any]) -> bool:
    if m := re.fullmatch(r'(eq|ne) (\.[A-Za-z.]+) "([^"]*)"', expression):
        return (str(_lookup(m.group(2), scope)) == m.group(3)) == (m.group(1) == "eq")
    if m := re.fullmatch(r"(\.[A-Za-z.]+)", expression):
        return bool(_lookup(m.group(1), scope))
    raise UnsupportedTemplate(expression)


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
