"""docs/data-contract.md restates the contract: its column tables match contract.py."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from npl_engine.data.contract import TABLES, TableSpec

DOC = Path(__file__).resolve().parents[2] / "docs" / "data-contract.md"


def _doc_rows(table: str) -> list[list[str]]:
    """Rows of the column table under the heading ``## `table` ``."""
    text = DOC.read_text(encoding="utf-8")
    section = re.search(rf"^## `{table}`\n(.*?)(?=^## )", text, flags=re.M | re.S)
    assert section is not None, f"no section for {table}"
    lines = [ln for ln in section.group(1).splitlines() if ln.startswith("| ")]
    return [[cell.strip() for cell in ln.strip("|").split("|")] for ln in lines[1:]]


@pytest.mark.parametrize("spec", TABLES.values(), ids=lambda s: s.name)
def test_doc_tables_match_the_contract(spec: TableSpec) -> None:
    """Each doc table lists the contract's columns in order, with type, required and default."""
    rows = _doc_rows(spec.name)
    assert [r[0] for r in rows] == list(spec.names)
    for row, col in zip(rows, spec.columns, strict=True):
        name, kind, required, default, meaning = row
        assert kind == col.kind, name
        assert required == ("yes" if col.required else "no"), name
        assert default == ("" if col.default is None else f"{col.default:g}"), name
        for value in col.values:
            assert value in meaning, (name, value)
