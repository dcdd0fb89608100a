"""Targets from a book: recovery and cumulative collections, censoring respected.

A loan's window starts at its cut-off date; month t after cut-off and the months a book has
observed are those of :mod:`npl_engine.data.months` (calendar months after a month-end
cut-off). Targets a loan has not been observed long enough for are
null (excluded from the model that needs them), never zero.
"""

from __future__ import annotations

import polars as pl

from npl_engine.data import Dataset, month_after_cutoff, months_observed
from npl_engine.errors import NplError
from npl_engine.scoring._definition import RecoveryDefinition

__all__ = ["build_targets"]


def build_targets(
    dataset: Dataset, definition: RecoveryDefinition, knots: tuple[int, ...]
) -> pl.DataFrame:
    """Per-loan targets of a book.

    Parameters
    ----------
    dataset
        A validated book (``payments`` required).
    definition
        Recovery definition.
    knots
        Months at which cumulative collections are measured.

    Returns
    -------
    pl.DataFrame
        ``loan_id``, ``exposure``, ``months_observed``, ``recovered`` (Boolean; null when the
        recovery horizon is not fully observed), and for each knot k ``borrower_k`` and
        ``collateral_k``: collections by month k over exposure (null when month k is not
        observed). Guarantor payments count with the borrower part: the collateral part is
        what collateral sales bring.
    """
    if dataset.payments is None or dataset.as_of_date is None:
        msg = "training needs a book: the dataset has no payments table (or no as_of_date)"
        raise NplError(msg)
    loans = dataset.loans.select(
        "loan_id",
        "cutoff_date",
        exposure=pl.col("outstanding_principal") + pl.col("accrued_interest"),
    ).with_columns(
        months_observed=months_observed(pl.col("cutoff_date"), pl.lit(dataset.as_of_date))
    )
    last = max(*knots, definition.horizon_months)
    pays = (
        dataset.payments.join(loans.select("loan_id", "cutoff_date"), on="loan_id")
        .with_columns(month=month_after_cutoff(pl.col("payment_date"), pl.col("cutoff_date")))
        .filter(pl.col("month") <= last)
        .with_columns(sale=pl.col("source") == "collateral_sale")
    )
    sums = [
        pl.col("amount").filter((pl.col("month") <= k) & ~pl.col("sale")).sum().alias(f"b{k}")
        for k in knots
    ] + [
        pl.col("amount").filter((pl.col("month") <= k) & pl.col("sale")).sum().alias(f"c{k}")
        for k in knots
    ]
    within = pl.col("amount").filter(pl.col("month") <= definition.horizon_months).sum()
    per_loan = pays.group_by("loan_id").agg(*sums, within.alias("within_horizon"))
    frame = loans.join(per_loan, on="loan_id", how="left", maintain_order="left").fill_null(0.0)
    observed = pl.col("months_observed")
    exposure = pl.col("exposure")
    return frame.select(
        "loan_id",
        "exposure",
        "months_observed",
        recovered=pl.when(observed >= definition.horizon_months).then(
            pl.col("within_horizon") >= definition.threshold * exposure
        ),
        **{f"borrower_{k}": pl.when(observed >= k).then(pl.col(f"b{k}") / exposure) for k in knots},
        **{
            f"collateral_{k}": pl.when(observed >= k).then(pl.col(f"c{k}") / exposure)
            for k in knots
        },
    ).collect()
