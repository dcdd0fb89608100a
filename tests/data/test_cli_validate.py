"""`npl validate`: a summary and exit 0 for valid data; every problem and exit 2 otherwise."""

from __future__ import annotations

from pathlib import Path

import polars as pl
import pytest
from click.testing import CliRunner, Result

from data.builders import make_loans, write_book, write_tape
from data.cases import RULE_CASES, RuleCase
from npl_engine.cli import main


def _validate(*args: str) -> Result:
    return CliRunner().invoke(main, ["validate", *args])


def test_valid_book_prints_summary(tmp_path: Path) -> None:
    """A valid book exits 0 and shows loans, GBV, segments, cut-off, payments and actions."""
    folder = write_book(tmp_path / "book")
    result = _validate(str(folder))
    assert result.exit_code == 0, result.output
    out = result.stdout
    assert "kind: book (assumed" in out
    assert "is a valid book" in out
    for text in (
        "327,000.00",  # GBV
        "residential_mortgage",
        "sme_unsecured",
        "2,006.00",  # payments total
        "106.00",  # actions cost
        "2023-12-31",  # cut-off
        "2024-02-09",  # as_of_date
    ):
        assert text in out


def test_valid_tape_is_assumed_a_tape(tmp_path: Path) -> None:
    """A folder with loans only is validated as a tape, and says so."""
    result = _validate(str(write_tape(tmp_path / "tape", fmt="csv")))
    assert result.exit_code == 0, result.output
    assert "kind: tape (assumed" in result.stdout


def test_explicit_kind_is_not_announced(tmp_path: Path) -> None:
    """With --kind given, no assumption is printed; a book folder also passes as a tape."""
    result = _validate(str(write_book(tmp_path / "book")), "--kind", "tape")
    assert result.exit_code == 0, result.output
    assert "assumed" not in result.stdout
    assert "is a valid tape" in result.stdout


def test_as_of_option_is_used(tmp_path: Path) -> None:
    """--as-of sets the as_of_date shown in the summary."""
    result = _validate(str(write_book(tmp_path / "book")), "--as-of", "2024-12-31")
    assert result.exit_code == 0, result.output
    assert "2024-12-31" in result.stdout


def test_bad_as_of_format_exits_2(tmp_path: Path) -> None:
    """An --as-of that is not YYYY-MM-DD is a usage error (exit 2), not a traceback."""
    result = _validate(str(write_book(tmp_path / "book")), "--as-of", "31/12/2024")
    assert result.exit_code == 2
    assert "Traceback" not in result.output


@pytest.mark.parametrize("case", RULE_CASES, ids=lambda c: c.id)
def test_each_rule_exits_2_with_table_column_and_example(case: RuleCase, tmp_path: Path) -> None:
    """A dataset breaking a rule exits 2 and prints table.column, the rule and an example."""
    folder = case.make(tmp_path / "ds")
    args = [str(folder)]
    if case.kind:
        args += ["--kind", case.kind]
    if case.as_of:
        args += ["--as-of", case.as_of.isoformat()]
    result = _validate(*args)
    assert result.exit_code == 2, result.output
    assert result.exception is None or isinstance(result.exception, SystemExit)
    err = result.stderr
    where = case.table if case.column is None else f"{case.table}.{case.column}"
    assert f"{where}: " in err
    assert case.fragment in err
    if case.example is not None:
        assert case.example in err


def test_every_problem_is_printed(tmp_path: Path) -> None:
    """Several problems are all printed, each with its row count and examples."""
    loans = make_loans(
        segment=["auto", "boat", "auto", "auto"], interest_rate=[-0.1, -0.2, 0.1, 0.1]
    )
    result = _validate(str(write_book(tmp_path / "b", loans=loans)))
    assert result.exit_code == 2
    assert "2 problem(s)" in result.stderr
    assert "loans.segment: has unknown value(s) 'boat'" in result.stderr
    assert "loans.interest_rate: must be ≥ 0 (2 rows; e.g. L1, L2)" in result.stderr


def test_missing_dataset_argument_is_a_usage_error() -> None:
    """Calling validate without a folder exits 2 with usage help."""
    result = _validate()
    assert result.exit_code == 2
    assert "Usage" in result.output


def test_absent_columns_with_a_default_are_noted(tmp_path: Path) -> None:
    """A tape without the three columns with a default passes with one note for each."""
    loans = make_loans().drop("accrued_interest", "collateral_value")
    folder = write_tape(tmp_path / "tape", loans=loans)
    result = _validate(str(folder))
    assert result.exit_code == 0, result.output
    notes = [line for line in result.stderr.splitlines() if line.startswith("note:")]
    assert notes == [
        f"note: {folder}: loans has no accrued_interest column: taken as 0 for every loan "
        "(exposure = outstanding_principal)",
        f"note: {folder}: loans has no collateral_value column: taken as 0 for every loan "
        "(no collateral proceeds in any valuation)",
        f"note: {folder}: loans has no senior_liens column: taken as 0 for every loan "
        "(no claims rank ahead of the loan on its collateral)",
    ]
    full = make_loans().with_columns(senior_liens=pl.lit(0.0))
    assert "note:" not in _validate(str(write_tape(tmp_path / "full", loans=full))).stderr
