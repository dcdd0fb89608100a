"""Expected loss of defaulted loans: workout LGD from discounted net collections, IFRS 9 style."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import polars as pl

from npl_engine.scenarios import ScenarioSet
from npl_engine.valuation._cashflows import loan_cash_flows
from npl_engine.valuation._finance import present_value
from npl_engine.valuation._portfolio import Portfolio

__all__ = ["ExpectedLoss", "expected_loss"]

_CHUNK = 100_000


@dataclass(frozen=True, slots=True)
class ExpectedLoss:
    """Per-loan and summarised expected loss.

    Parameters
    ----------
    loans
        One row per loan: ``loan_id``, ``segment``, ``legal_stage``, ``ead``, ``lgd_<scenario>``
        per scenario, ``lgd`` (scenario-weighted) and ``el`` = lgd × ead.
    by_segment, by_legal_stage
        Sums of ``ead`` and ``el`` and their ratio ``el_rate`` (the coverage a risk officer
        books), one row per group, plus a ``total`` row.
    """

    loans: pl.DataFrame
    by_segment: pl.DataFrame
    by_legal_stage: pl.DataFrame


def _summary(loans: pl.DataFrame, by: str) -> pl.DataFrame:
    groups = (
        loans.group_by(by)
        .agg(pl.len().alias("loans"), pl.col("ead").sum(), pl.col("el").sum())
        .sort(by)
    )
    total = loans.select(
        pl.lit("total").alias(by), pl.len().alias("loans"), pl.col("ead").sum(), pl.col("el").sum()
    )
    return pl.concat([groups, total]).with_columns(el_rate=pl.col("el") / pl.col("ead"))


def expected_loss(portfolio: Portfolio, scenarios: ScenarioSet) -> ExpectedLoss:
    """Expected loss per loan, scenario-weighted, and summaries.

    Parameters
    ----------
    portfolio
        Scored defaulted loans.
    scenarios
        Scenarios and weights (IFRS 9: an unbiased, probability-weighted amount) and the
        pricing assumptions whose costs are deducted from collections.

    Notes
    -----
    For each loan and scenario: LGD = 1 − PV(net collections) / EAD, net collections being the
    scenario's per-loan cash flows after costs (:func:`~npl_engine.valuation.loan_cash_flows`),
    discounted at the loan's **contractual** interest rate (the effective-interest-rate
    convention of IFRS 9, B5.5.44), EAD = outstanding principal + accrued interest. LGD is
    bounded to [0, 1]: collections worth more than the exposure are not a negative loss, and
    costs beyond the exposure are not charged twice. These loans are in default (PD = 1), so
    EL = LGD × EAD; the reported LGD is the weight-averaged one.
    """
    names = [s.name for s in scenarios.scenarios]
    lgd = np.zeros((portfolio.n_loans, len(names)))
    ead = portfolio.exposure
    for start in range(0, portfolio.n_loans, _CHUNK):
        rows = np.arange(start, min(start + _CHUNK, portfolio.n_loans))
        part = portfolio.take(rows)
        for j, scenario in enumerate(scenarios.scenarios):
            pv = present_value(
                loan_cash_flows(part, scenario, scenarios.pricing), part.interest_rate
            )
            lgd[rows, j] = np.clip(1.0 - pv / np.maximum(part.exposure, 1e-12), 0.0, 1.0)
    weights = np.array([s.weight for s in scenarios.scenarios])
    weighted = lgd @ weights
    loans = pl.DataFrame(
        {
            "loan_id": portfolio.loan_id,
            "segment": portfolio.segment,
            "legal_stage": portfolio.legal_stage,
            "ead": ead,
            **{f"lgd_{name}": lgd[:, j] for j, name in enumerate(names)},
            "lgd": weighted,
            "el": weighted * ead,
        }
    )
    return ExpectedLoss(
        loans=loans,
        by_segment=_summary(loans, "segment"),
        by_legal_stage=_summary(loans, "legal_stage"),
    )
