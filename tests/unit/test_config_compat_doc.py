"""docs/migrating-from-kube-vip.md's compatibility table is generated from the option table and is current."""

from __future__ import annotations

from pathlib import Path

import kvip
from kvip.config.compat import (
    ANNOTATIONS,
    KUBE_VIP_VARIABLES,
    SUPPORTED,
    render,
    updated,
    variable_rows,
)
from kvip.config.kubevip import NOT_SUPPORTED_BY_NAME
from kvip.config.options import OPTIONS

DOC = Path(__file__).resolve().parents[2] / "docs" / "migrating-from-kube-vip.md"
SOURCE = Path(kvip.__file__).resolve().parent


def test_the_doc_holds_the_current_generated_table() -> None:
    doc = DOC.read_text()
    assert render() in doc, "stale: run `python -m kvip.config.compat docs/migrating-from-kube-vip.md`"
    assert updated(doc) == doc


def test_every_kube_vip_variable_has_a_row_with_a_status() -> None:
    rows = variable_rows()
    assert [name for name, _, _ in rows] == list(KUBE_VIP_VARIABLES)
    assert all(status and note for _, status, note in rows)


def test_no_variable_is_both_implemented_and_listed_as_not_supported() -> None:
    implemented = {name for option in OPTIONS for name in option.env}
    assert not implemented & set(NOT_SUPPORTED_BY_NAME), "the option table wins: drop the NOT_SUPPORTED row"


def test_every_annotation_said_to_be_supported_is_read_by_kvip() -> None:
    code = "\n".join(p.read_text() for p in SOURCE.rglob("*.py") if "lab" not in p.parts)
    for annotation, status, _ in ANNOTATIONS:
        if status == SUPPORTED:
            assert f'"{annotation}"' in code, annotation
