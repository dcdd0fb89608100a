"""Small valid contract tables for tests, built by hand (not by the simulator).

Every builder returns a frame that passes the contract; keyword arguments replace whole columns
(a list or Series per column), so a test breaks exactly the rule it is about.
"""

from __future__ import annotations

from datetime import date, timedelta
from pathlib import Path
from typing import Any

import polars as pl

from npl_engine.data import write_dataset
from npl_engine.data.contract import SEGMENTS

CUTOFF = date(2023, 12, 31)


def make_loans(n: int = 4, *, cutoff: date = CUTOFF, **columns: Any) -> pl.DataFrame:
    """Return ``n`` valid loans L1..Ln sharing one cut-off date, with ``columns`` replaced."""
    secured = [i % 2 == 0 for i in range(n)]
    data: dict[str, Any] = {
        "loan_id": [f"L{i + 1}" for i in range(n)],
        "borrower_id": [f"B{i // 2 + 1}" for i in range(n)],
        "segment": [SEGMENTS[i % len(SEGMENTS)] for i in range(n)],
        "cutoff_date": [cutoff] * n,
        "origination_date": [cutoff - timedelta(days=1800 + 30 * i) for i in range(n)],
        "default_date": [cutoff - timedelta(days=200 + i) for i in range(n)],
        "original_principal": [100_000.0 + 1_000 * i for i in range(n)],
        "outstanding_principal": [80_000.0 + 500 * i for i in range(n)],
        "accrued_interest": [1_000.0] * n,
        "interest_rate": [0.05] * n,
        "days_past_due": [200 + i for i in range(n)],
        "last_payment_date": [cutoff - timedelta(days=230)] * n,
        "collateral_type": ["residential" if s else "none" for s in secured],
        "collateral_value": [150_000.0 if s else 0.0 for s in secured],
        "legal_stage": ["pre_legal"] * n,
        "borrower_type": ["individual"] * n,
        "region": ["north"] * n,
        "age": [45 + i for i in range(n)],
        "credit_score": [600 + 10 * i for i in range(n)],
    }
    data.update(columns)
    return pl.DataFrame(data)


def make_actions(loan_ids: list[str], *, cutoff: date = CUTOFF, **columns: Any) -> pl.DataFrame:
    """Return one valid letter per loan, and a settlement offer on the first loan."""
    ids = [*loan_ids, loan_ids[0]]
    data: dict[str, Any] = {
        "loan_id": ids,
        "action_date": [cutoff + timedelta(days=10)] * len(loan_ids)
        + [cutoff + timedelta(days=40)],
        "action_type": ["letter"] * len(loan_ids) + ["settlement_offer"],
        "cost": [4.0] * len(loan_ids) + [90.0],
        "settlement_discount": [None] * len(loan_ids) + [0.3],
    }
    data.update(columns)
    return pl.DataFrame(data, schema_overrides={"settlement_discount": pl.Float64})


def make_payments(loan_ids: list[str], *, cutoff: date = CUTOFF, **columns: Any) -> pl.DataFrame:
    """Return one valid borrower payment per loan, 30 days after the cut-off."""
    data: dict[str, Any] = {
        "loan_id": list(loan_ids),
        "payment_date": [cutoff + timedelta(days=30)] * len(loan_ids),
        "amount": [500.0 + i for i in range(len(loan_ids))],
        "source": ["borrower"] * len(loan_ids),
    }
    data.update(columns)
    return pl.DataFrame(data)


def write_book(
    folder: Path,
    *,
    loans: pl.DataFrame | None = None,
    actions: pl.DataFrame | None = None,
    payments: pl.DataFrame | None = None,
    fmt: str = "parquet",
) -> Path:
    """Write a book (valid defaults for any table not given) and return its folder."""
    loans = make_loans() if loans is None else loans
    ids = loans["loan_id"].drop_nulls().cast(pl.String).to_list()
    write_dataset(
        folder,
        loans=loans,
        actions=make_actions(ids) if actions is None else actions,
        payments=make_payments(ids) if payments is None else payments,
        fmt=fmt,
    )
    return folder


def write_tape(folder: Path, *, loans: pl.DataFrame | None = None, fmt: str = "parquet") -> Path:
    """Write a tape (loans only; valid loans unless given) and return its folder."""
    write_dataset(folder, loans=make_loans() if loans is None else loans, fmt=fmt)
    return folder
