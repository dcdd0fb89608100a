"""Validation: every contract rule is found, named and exemplified; nothing stops the search."""

from __future__ import annotations

from datetime import date
from pathlib import Path

import polars as pl
import pytest

from data.builders import CUTOFF, make_actions, make_loans, make_payments, write_book
from data.cases import RULE_CASES, RuleCase
from npl_engine.data import read_dataset, validate_dataset
from npl_engine.errors import ContractError, Problem


def _matching(problems: list[Problem], case: RuleCase) -> list[Problem]:
    return [
        p
        for p in problems
        if p.table == case.table and p.column == case.column and case.fragment in p.rule
    ]


@pytest.mark.parametrize("case", RULE_CASES, ids=lambda c: c.id)
def test_each_rule_is_reported_with_table_column_and_example(
    case: RuleCase, tmp_path: Path
) -> None:
    """A dataset breaking one rule raises ContractError naming its table, column and a row."""
    folder = case.make(tmp_path / "ds")
    with pytest.raises(ContractError) as info:
        read_dataset(folder, kind=case.kind, as_of=case.as_of)  # type: ignore[arg-type]
    found = _matching(info.value.problems, case)
    assert found, f"no problem for {case.id}; got:\n{info.value}"
    problem = found[0]
    if case.example is not None:
        assert case.example in problem.examples
        assert problem.n_rows >= 1
    message = str(info.value)
    where = case.table if case.column is None else f"{case.table}.{case.column}"
    assert where in message
    if case.example is not None:
        assert case.example in message


@pytest.mark.parametrize("case", RULE_CASES, ids=lambda c: c.id)
def test_validate_dataset_returns_the_same_problems(case: RuleCase, tmp_path: Path) -> None:
    """validate_dataset returns the problems read_dataset raises, without raising."""
    folder = case.make(tmp_path / "ds")
    problems = validate_dataset(folder, kind=case.kind, as_of=case.as_of)  # type: ignore[arg-type]
    assert _matching(problems, case)


def test_valid_book_has_no_problems(book: Path) -> None:
    """A valid book gives an empty problem list."""
    assert validate_dataset(book) == []


def test_all_problems_are_collected(tmp_path: Path) -> None:
    """Problems in several columns and tables are all reported, not just the first."""
    loans = make_loans(
        segment=["auto", "boat", "auto", "auto"],
        outstanding_principal=[1.0, -1.0, 1.0, 1.0],
        collateral_value=[1.0, 9.0, 1.0, 0.0],
    )
    actions = make_actions(["L1", "L99"], cost=[-4.0, 4.0, 90.0])
    payments = make_payments(["L1", "L2"], source=["borrower", "bank"])
    folder = write_book(tmp_path / "b", loans=loans, actions=actions, payments=payments)
    problems = validate_dataset(folder)
    where = {(p.table, p.column) for p in problems}
    assert where >= {
        ("loans", "segment"),
        ("loans", "outstanding_principal"),
        ("loans", "collateral_value"),
        ("actions", "cost"),
        ("actions", "loan_id"),
        ("payments", "source"),
    }


def test_problems_are_ordered_by_table_then_contract_column(tmp_path: Path) -> None:
    """Problems come loans first, then actions, then payments, columns in contract order."""
    loans = make_loans(region=[None, "n", "n", "n"], segment=["x", "auto", "auto", "auto"])
    payments = make_payments(["L1", "L2"], amount=[0.0, 1.0])
    folder = write_book(tmp_path / "b", loans=loans, payments=payments)
    problems = validate_dataset(folder)
    assert [(p.table, p.column) for p in problems] == [
        ("loans", "segment"),
        ("loans", "region"),
        ("payments", "amount"),
    ]


def test_examples_are_capped_at_five_and_counts_are_exact(tmp_path: Path) -> None:
    """A rule broken on 8 rows reports n_rows=8 and the first five loan_ids."""
    loans = make_loans(8, interest_rate=[-0.01] * 8)
    problems = validate_dataset(write_book(tmp_path / "b", loans=loans))
    (problem,) = problems
    assert problem.n_rows == 8
    assert problem.examples == ("L1", "L2", "L3", "L4", "L5")


def test_row_numbers_stand_in_for_missing_loan_ids(tmp_path: Path) -> None:
    """Rows with no loan_id are cited as 1-based row numbers of the file."""
    ids = [f"L{i}" for i in range(1, 21)]
    ids[16] = None  # row 17
    loans = make_loans(20, loan_id=ids)
    problems = validate_dataset(write_book(tmp_path / "b", loans=loans, fmt="csv"))
    assert [p.examples for p in problems] == [("row 17",)]


def test_unknown_enum_values_are_listed_with_the_allowed_ones(tmp_path: Path) -> None:
    """The message quotes the unknown values (with how many more) and every allowed value."""
    stages = ["court", "bailiff", "auction", "x", "y"]
    loans = make_loans(5, legal_stage=stages)
    (problem,) = validate_dataset(write_book(tmp_path / "b", loans=loans))
    assert problem.rule == (
        "has unknown value(s) 'court', 'bailiff', 'x' and 1 more; allowed: none, pre_legal,"
        " proceedings, judgment, auction, insolvency"
    )
    assert problem.n_rows == 4


def test_nan_counts_as_missing_in_optional_number_columns(tmp_path: Path) -> None:
    """NaN in an optional number column (as pandas writes missing values) is not a problem."""
    loans = make_loans(monthly_income=[float("nan"), 1_000.0, None, 2_000.0])
    folder = write_book(tmp_path / "b", loans=loans)
    df = read_dataset(folder).loans.collect()
    assert df["monthly_income"].to_list() == [None, 1_000.0, None, 2_000.0]


def test_as_of_default_allows_loans_with_events_up_to_it(book: Path) -> None:
    """With no as_of_date given, the latest payment or action date is used and is valid."""
    assert read_dataset(book).as_of_date == date(2024, 2, 9)


def test_user_as_of_on_the_last_event_is_accepted(book: Path) -> None:
    """An as_of_date equal to the latest event date is valid and kept."""
    assert read_dataset(book, as_of=date(2024, 3, 1)).as_of_date == date(2024, 3, 1)


def test_tape_as_of_is_none_without_events(tape: Path) -> None:
    """A tape with no payments or actions has no as_of_date."""
    assert read_dataset(tape).as_of_date is None


def test_tape_does_not_need_actions_or_payments(tape: Path) -> None:
    """A tape is valid with a loans file only; a book is not."""
    assert validate_dataset(tape, kind="tape") == []
    problems = validate_dataset(tape, kind="book")
    assert {(p.table, p.column) for p in problems} == {("actions", None), ("payments", None)}


def test_book_may_have_several_cutoffs(tmp_path: Path) -> None:
    """Cut-off dates differ from loan to loan in a book; that is no problem."""
    loans = make_loans(cutoff_date=[CUTOFF, CUTOFF, date(2023, 11, 30), date(2023, 10, 31)])
    assert validate_dataset(write_book(tmp_path / "b", loans=loans)) == []


def test_settlement_discount_on_settlement_offer_is_valid(tmp_path: Path) -> None:
    """A discount on a settlement_offer row and nulls elsewhere pass."""
    actions = make_actions(["L1", "L2"], settlement_discount=[None, None, 1.0])
    assert validate_dataset(write_book(tmp_path / "b", actions=actions)) == []


def test_link_rules_are_skipped_when_loans_cannot_be_read(tmp_path: Path) -> None:
    """An unreadable loans file is reported once, not as a broken link on every payment."""
    folder = write_book(tmp_path / "b", fmt="csv")
    (folder / "loans.csv").write_text("loan_id;segment\nL1;auto\n")
    problems = validate_dataset(folder)
    assert [(p.table, p.column) for p in problems] == [("loans", None)]


def test_payments_keep_their_own_row_numbers_after_the_join(tmp_path: Path) -> None:
    """Row numbers cited for payments count rows of payments, not of the joined frame."""
    payments = make_payments(["L1", "L2", "L3"], loan_id=["L1", None, "L3"], amount=[1.0, 0.0, 1.0])
    problems = validate_dataset(write_book(tmp_path / "b", payments=payments))
    amount = [p for p in problems if p.column == "amount"]
    assert amount[0].examples == ("row 2",)


def test_integer_columns_accept_whole_floats(tmp_path: Path) -> None:
    """An age stored as floats 45.0 and NaN (as pandas writes nulls) reads as integers and null."""
    loans = make_loans(age=[45.0, float("nan"), 50.0, None])
    df = read_dataset(write_book(tmp_path / "b", loans=loans)).loans.collect()
    assert df["age"].to_list() == [45, None, 50, None]
    assert df.schema["age"] == pl.Int64
