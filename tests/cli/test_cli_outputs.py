"""Commands that write one file write the format its suffix names, or refuse it first."""

from __future__ import annotations

import json
import zipfile
from datetime import date
from pathlib import Path

import polars as pl
import pytest
from click.testing import CliRunner
from polars.testing import assert_frame_equal

from npl_engine.cli import main
from npl_engine.cli._base import TABLE_SUFFIXES, write_table
from npl_engine.errors import NplError


@pytest.mark.parametrize("command", [["audit", "export"], ["counterfactual"], ["report"]])
def test_a_folder_is_not_a_file_to_write(tmp_path: Path, command: list[str]) -> None:
    """Exit code 2 and click's message naming --out; nothing is written into the folder."""
    folder = tmp_path / "existing"
    folder.mkdir()
    result = CliRunner().invoke(main, [*command, "--out", str(folder)])
    assert result.exit_code == 2, result.output
    assert "Invalid value for '--out'" in result.output
    assert "is a directory" in result.output
    assert list(folder.iterdir()) == []


def test_policy_with_one_budget_refuses_a_folder_for_its_plan(tmp_path: Path) -> None:
    """`npl policy --budget` writes one file: an existing folder (no suffix) is refused, exit 2.

    (With --budgets, --out is a folder; so click cannot refuse folders for this option.)
    """
    folder = tmp_path / "existing"
    folder.mkdir()
    result = CliRunner().invoke(
        main,
        ["policy", "--effects", str(tmp_path), "--data", str(tmp_path), "--budget", "1",
         "--out", str(folder), "--no-audit"],
    )  # fmt: skip
    assert result.exit_code == 2, result.output
    assert "names no format" in result.output
    assert list(folder.iterdir()) == []


@pytest.mark.parametrize(
    ("command", "out"),
    [
        (["policy", "--budget", "1"], "plan.txt"),
        (["counterfactual", "--loan-id", "L1"], "cf.xls"),
        (["audit", "export"], "decisions.csv"),
        (["report", "--scenarios", "s.toml"], "report.pdf"),
        (["policy", "--budget", "1"], "plan"),
    ],
)
def test_a_suffix_naming_no_format_is_refused_first(
    tmp_path: Path, command: list[str], out: str
) -> None:
    """An --out FILE whose suffix the command cannot write: exit 2 before any work, no file."""
    missing = str(tmp_path / "missing")  # the inputs do not exist: the suffix is checked first
    inputs = {
        "policy": ["--effects", missing, "--data", missing],
        "counterfactual": ["--model", missing, "--effects", missing, "--data", missing],
        "audit": ["--audit-db", str(tmp_path / "none.duckdb")],
        "report": ["--model", missing, "--data", missing],
    }[command[0]]
    result = CliRunner().invoke(main, [*command, *inputs, "--out", str(tmp_path / out)])
    assert result.exit_code == 2, result.output
    assert result.stderr.startswith(f"error: --out {tmp_path / out}: "), result.stderr
    assert "names no format this command writes; give a file ending in" in result.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == []


def test_write_table_writes_the_format_its_suffix_names(tmp_path: Path) -> None:
    """Parquet, CSV, JSON and Excel files of one table, each read back as that format."""
    frame = pl.DataFrame(
        {
            "loan_id": ["L1", "L2"],
            "action": ["call", None],
            "cost": [12.5, 0.0],
            "day": [date(2026, 3, 31), date(2026, 4, 30)],
        }
    )
    for suffix in TABLE_SUFFIXES:
        write_table(frame, tmp_path / f"t{suffix}")
    assert_frame_equal(pl.read_parquet(tmp_path / "t.parquet"), frame)
    assert_frame_equal(pl.read_csv(tmp_path / "t.csv", schema=frame.schema), frame)
    rows = json.loads((tmp_path / "t.json").read_text())
    assert rows[0] == {"loan_id": "L1", "action": "call", "cost": 12.5, "day": "2026-03-31"}
    with zipfile.ZipFile(tmp_path / "t.xlsx") as book:
        assert "xl/worksheets/sheet1.xml" in book.namelist()
        strings = book.read("xl/sharedStrings.xml").decode()
    assert "L2" in strings
    assert "call" in strings
    assert sorted(p.name for p in tmp_path.iterdir()) == [f"t{s}" for s in sorted(TABLE_SUFFIXES)]


def test_a_failure_before_publishing_leaves_no_file(tmp_path: Path) -> None:
    """If the step before publishing fails, neither the file nor its temporary copy is left."""
    out = tmp_path / "plan.csv"

    def fail() -> None:
        raise NplError("no record")

    with pytest.raises(NplError, match="no record"):
        write_table(pl.DataFrame({"a": [1]}), out, before_publish=fail)
    assert list(tmp_path.iterdir()) == []


def test_a_table_too_long_for_excel_is_refused(tmp_path: Path) -> None:
    """More rows than an Excel sheet holds: a clear error naming the limit, no file."""
    frame = pl.DataFrame({"a": range(1_048_576)})
    with pytest.raises(NplError, match=r"1,048,576 rows do not fit in an Excel sheet"):
        write_table(frame, tmp_path / "big.xlsx")
    assert list(tmp_path.iterdir()) == []
