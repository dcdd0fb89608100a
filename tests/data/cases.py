"""One broken dataset per contract rule, shared by the validation and CLI tests.

Each case writes a dataset that breaks exactly one rule and names the problem it must raise:
its table, its column, words of its rule and one example row.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import date
from pathlib import Path

import polars as pl

from data.builders import (
    CUTOFF,
    make_actions,
    make_loans,
    make_payments,
    write_book,
    write_tape,
)
from npl_engine.data import write_dataset


@dataclass(frozen=True)
class RuleCase:
    """A dataset breaking one rule and the problem expected for it."""

    id: str
    make: Callable[[Path], Path]
    table: str
    column: str | None
    fragment: str
    example: str | None
    kind: str | None = None
    as_of: date | None = None


def _loans(fmt: str = "parquet", **columns: object) -> Callable[[Path], Path]:
    """Write a book whose loans have ``columns`` replaced."""
    return lambda folder: write_book(folder, loans=make_loans(**columns), fmt=fmt)


def _wrong_delimiter(folder: Path) -> Path:
    write_book(folder)
    (folder / "loans.parquet").unlink()
    make_loans().write_csv(folder / "loans.csv", separator=";")
    return folder


def _both_formats(folder: Path) -> Path:
    write_book(folder)
    make_loans().write_csv(folder / "loans.csv")
    return folder


def _no_loans(folder: Path) -> Path:
    ids = ["L1", "L2"]
    write_dataset(
        folder, loans=make_loans(), actions=make_actions(ids), payments=make_payments(ids)
    )
    (folder / "loans.parquet").unlink()
    return folder


def _no_payments(folder: Path) -> Path:
    write_dataset(folder, loans=make_loans(), actions=make_actions(["L1"]))
    return folder


def _missing_column(folder: Path) -> Path:
    return write_book(folder, loans=make_loans().drop("region"))


def _ragged_csv(folder: Path) -> Path:
    write_book(folder, fmt="csv")
    with (folder / "payments.csv").open("a") as f:
        f.write("L1,2024-03-01,10.0,borrower,extra,fields\n")
    return folder


def _duplicate_header(folder: Path) -> Path:
    write_book(folder, fmt="csv")
    text = (folder / "payments.csv").read_text().splitlines()
    # Repeat the third field (amount) as a fifth: the header then reads "..., source, amount".
    text = [line + "," + line.split(",")[2] for line in text]
    (folder / "payments.csv").write_text("\n".join(text) + "\n")
    return folder


def _empty_loans(folder: Path) -> Path:
    write_dataset(folder, loans=make_loans().clear())
    return folder


def _unknown_action_loan(folder: Path) -> Path:
    loans = make_loans()
    return write_book(folder, loans=loans, actions=make_actions(["L1", "L2", "L77"]))


def _unknown_payment_loan(folder: Path) -> Path:
    loans = make_loans()
    return write_book(folder, loans=loans, payments=make_payments(["L1", "L88"]))


def _payment_on_cutoff(folder: Path) -> Path:
    payments = make_payments(["L1", "L2"], payment_date=[CUTOFF, date(2024, 1, 5)])
    return write_book(folder, payments=payments)


def _discount_on_letter(folder: Path) -> Path:
    actions = make_actions(["L1", "L2"], settlement_discount=[None, 0.2, 0.3])
    return write_book(folder, actions=actions)


def _cutoff_after_as_of(folder: Path) -> Path:
    loans = make_loans(cutoff_date=[CUTOFF, CUTOFF, CUTOFF, date(2024, 6, 30)])
    ids = ["L1", "L2", "L3"]
    return write_book(folder, loans=loans, actions=make_actions(ids), payments=make_payments(ids))


def _two_cutoffs(folder: Path) -> Path:
    loans = make_loans(cutoff_date=[CUTOFF, CUTOFF, CUTOFF, date(2023, 6, 30)])
    return write_tape(folder, loans=loans)


def _date_as_int(folder: Path) -> Path:
    loans = make_loans().with_columns(
        default_date=pl.col("default_date").dt.strftime("%Y%m%d").cast(pl.Int64)
    )
    return write_book(folder, loans=loans)


DATES_TEXT = ["2023-06-01", "31/12/2020", "2023-06-03", "2023-06-04"]

RULE_CASES: list[RuleCase] = [
    RuleCase("missing folder", lambda f: f / "nowhere", "dataset", None, "does not exist", None),
    RuleCase("missing loans file", _no_loans, "loans", None, "file is missing", None),
    RuleCase("book without payments", _no_payments, "payments", None, "file is missing", None),
    RuleCase("csv and parquet", _both_formats, "loans", None, "keep only one", None),
    RuleCase("wrong delimiter", _wrong_delimiter, "loans", None, "not comma separated", None),
    RuleCase("ragged csv", _ragged_csv, "payments", None, "cannot read payments.csv", None),
    RuleCase("duplicate header", _duplicate_header, "payments", "amount", "more than once", None),
    RuleCase("empty loans", _empty_loans, "loans", None, "has no rows", None),
    RuleCase("missing column", _missing_column, "loans", "region", "column is missing", None),
    RuleCase(
        "unparseable date",
        _loans("csv", default_date=DATES_TEXT),
        "loans",
        "default_date",
        "'31/12/2020'",
        "L2",
    ),
    RuleCase(
        "text in number",
        _loans("csv", outstanding_principal=["1.5", "2.5", "abc", "1e3"]),
        "loans",
        "outstanding_principal",
        "cannot be read as a finite number",
        "L3",
    ),
    RuleCase(
        "decimal comma",
        _loans("csv", interest_rate=["0.05", "0.05", "0.05", "0,05"]),
        "loans",
        "interest_rate",
        "'0,05'",
        "L4",
    ),
    RuleCase(
        "infinite number",
        _loans(accrued_interest=[0.0, float("inf"), 1.0, 2.0]),
        "loans",
        "accrued_interest",
        "finite number",
        "L2",
    ),
    RuleCase(
        "fractional int",
        _loans("csv", days_past_due=["3", "3.5", "4.0", "5"]),
        "loans",
        "days_past_due",
        "whole number",
        "L2",
    ),
    RuleCase("wrong stored type", _date_as_int, "loans", "default_date", "stores it as", "L1"),
    RuleCase(
        "required null",
        _loans(borrower_id=["B1", "B1", None, "B2"]),
        "loans",
        "borrower_id",
        "must not be empty",
        "L3",
    ),
    RuleCase(
        "required NaN",
        _loans(outstanding_principal=[1.0, 2.0, 3.0, float("nan")]),
        "loans",
        "outstanding_principal",
        "must not be empty",
        "L4",
    ),
    RuleCase(
        "null loan_id",
        _loans(loan_id=["L1", None, "L3", "L4"]),
        "loans",
        "loan_id",
        "must not be empty",
        "row 2",
    ),
    RuleCase(
        "unknown enum",
        _loans(segment=["auto", "mortgage", "auto", "auto"]),
        "loans",
        "segment",
        "'mortgage'; allowed: residential_mortgage",
        "L2",
    ),
    RuleCase(
        "negative amount",
        _loans(outstanding_principal=[1.0, -5.0, 3.0, 4.0]),
        "loans",
        "outstanding_principal",
        "must be ≥ 0",
        "L2",
    ),
    RuleCase(
        "zero original principal",
        _loans(original_principal=[1.0, 2.0, 0.0, 4.0]),
        "loans",
        "original_principal",
        "must be > 0",
        "L3",
    ),
    RuleCase(
        "share above one",
        _loans(on_time_payment_rate=[0.5, 0.5, 0.5, 1.5]),
        "loans",
        "on_time_payment_rate",
        "between 0 and 1",
        "L4",
    ),
    RuleCase(
        "credit score out of range",
        _loans(credit_score=[900, 600, 600, 600]),
        "loans",
        "credit_score",
        "between 300 and 850",
        "L1",
    ),
    RuleCase(
        "duplicate loan_id",
        _loans(loan_id=["L1", "L2", "L2", "L4"]),
        "loans",
        "loan_id",
        "must be unique",
        "L2",
    ),
    RuleCase(
        "origination after default",
        _loans(
            origination_date=[
                date(2023, 1, 1),
                date(2023, 11, 1),
                date(2019, 1, 1),
                date(2019, 1, 1),
            ]
        ),
        "loans",
        "origination_date",
        "on or before default_date",
        "L2",
    ),
    RuleCase(
        "default after cutoff",
        _loans(default_date=[date(2023, 1, 1), date(2024, 1, 1), CUTOFF, CUTOFF]),
        "loans",
        "default_date",
        "on or before cutoff_date",
        "L2",
    ),
    RuleCase(
        "collateral value without collateral",
        _loans(collateral_value=[1.0, 5_000.0, 2.0, 0.0]),
        "loans",
        "collateral_value",
        "0 when collateral_type is none",
        "L2",
    ),
    RuleCase(
        "tape with two cutoffs",
        _two_cutoffs,
        "loans",
        "cutoff_date",
        "one common date",
        "L4",
        kind="tape",
    ),
    RuleCase(
        "action for unknown loan",
        _unknown_action_loan,
        "actions",
        "loan_id",
        "must exist in loans",
        "L77",
    ),
    RuleCase(
        "payment for unknown loan",
        _unknown_payment_loan,
        "payments",
        "loan_id",
        "must exist in loans",
        "L88",
    ),
    RuleCase(
        "payment on cutoff",
        _payment_on_cutoff,
        "payments",
        "payment_date",
        "after the loan's cutoff_date",
        "L1",
    ),
    RuleCase(
        "discount on a letter",
        _discount_on_letter,
        "actions",
        "settlement_discount",
        "unless action_type is settlement_offer",
        "L2",
    ),
    RuleCase(
        "payment after as_of",
        write_book,
        "payments",
        "payment_date",
        "after as_of_date 2024-01-15",
        "L1",
        as_of=date(2024, 1, 15),
    ),
    RuleCase(
        "action after as_of",
        write_book,
        "actions",
        "action_date",
        "after as_of_date 2024-01-15",
        "L1",
        as_of=date(2024, 1, 15),
    ),
    RuleCase(
        "cutoff after as_of",
        _cutoff_after_as_of,
        "loans",
        "cutoff_date",
        "after as_of_date 2024-02-09",
        "L4",
    ),
]
