"""Business plan and backtest: hand-made portfolios and payments with known answers."""

from __future__ import annotations

from datetime import date
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from npl_engine.errors import NplError
from npl_engine.valuation import (
    Backtest,
    BusinessPlan,
    backtest,
    portfolio_business_plan,
    value_portfolio,
)
from valuation.builders import base, make_portfolio, scenario_set

CUTOFF = date(2026, 9, 30)


def _payments(rows: list[tuple[str, date, float, str]]) -> pl.DataFrame:
    return pl.DataFrame(
        rows, schema=["loan_id", "payment_date", "amount", "source"], orient="row"
    ).with_columns(pl.col("payment_date").cast(pl.Date))


def test_weighted_plan_is_the_valuations_weighted_cash_flow() -> None:
    """Summed over segments and channels, each month's weighted plan equals the valuation's.

    Two segments, legal costs on one loan, collateral sales, a fixed cost per loan and two
    shocked scenarios: every cost the valuation charges is in the plan, split by channel.
    """
    rng = np.random.default_rng(3)
    borrower, collateral = rng.uniform(0, 20, (4, 12)), rng.uniform(0, 50, (4, 12))
    portfolio = make_portfolio(borrower, collateral, legal=np.array([1, 0, 0, 1]))
    portfolio = type(portfolio)(
        **{f: getattr(portfolio, f) for f in portfolio.__slots__ if f != "segment"},
        segment=pl.Series(["auto", "auto", "sme_secured", "sme_secured"]),
    )
    scenarios = scenario_set(
        base("base", 0.6),
        base("down", 0.4, collateral_value_change=-0.3, collections_multiplier=0.8,
             delay_months=2),
        servicing_fee=0.08, legal_cost_share=0.05, collateral_sale_cost=0.03,
        cost_per_loan_per_year=12.0,
    )  # fmt: skip
    plan = portfolio_business_plan(portfolio, scenarios, cutoff_date=CUTOFF, period_months=1)
    valuation = value_portfolio(portfolio, scenarios)
    for name in ("base", "down", "weighted"):
        flows = valuation.cash_flows.filter(pl.col("scenario") == name)
        totals = plan.totals().filter(pl.col("scenario") == name)
        for column in ("gross", "costs", "net"):
            np.testing.assert_allclose(totals[column], flows[column], rtol=1e-12, atol=1e-9)
    fixed = plan.periods.filter(pl.col("channel") == "per_loan_costs")
    np.testing.assert_allclose(fixed["costs"], 2 * 12.0 / 12.0)
    assert (fixed["gross"] == 0).all()
    base_borrower = plan.periods.filter(
        (pl.col("scenario") == "base") & (pl.col("channel") == "borrower")
    )
    assert base_borrower["gross"].sum() == pytest.approx(borrower.sum(), rel=1e-12)


def test_quarters_and_the_plan_folder_round_trip(tmp_path: Path) -> None:
    """A 7-month horizon gives quarters 1-3, 4-6 and a short 7-7; save and load give it back."""
    portfolio = make_portfolio(np.full((2, 7), 10.0))
    plan = portfolio_business_plan(
        portfolio, scenario_set(horizon_months=7, target_irr=0.0), cutoff_date=CUTOFF
    )
    spans = plan.totals().filter(pl.col("scenario") == "weighted")
    assert spans.select("start_month", "end_month").rows() == [(1, 3), (4, 6), (7, 7)]
    assert spans["gross"].to_list() == [60.0, 60.0, 20.0]
    plan.save(tmp_path / "plan")
    assert sorted(p.name for p in (tmp_path / "plan").iterdir()) == [
        "loans.parquet", "plan.csv", "plan.json", "plan.parquet"
    ]  # fmt: skip
    again = BusinessPlan.load(tmp_path / "plan")
    assert again.periods.equals(plan.periods)
    assert again.pricing == plan.pricing
    assert again.cutoff_date == CUTOFF


def test_backtest_hand_worked() -> None:
    """One loan planned at 10 a month, 10 % servicing fee; it pays 10, 10, 0, then 5 a month.

    Plan net per quarter 3 × 10 × 0.9 = 27. Realised net: Q1 (10 + 10) × 0.9 = 18, Q2
    3 × 5 × 0.9 = 13.5. Cumulative collection ratio Q1 18 / 27 = 0.667, Q2 31.5 / 54 = 0.583.
    At a 0 % discount rate the PV ratio is the same. A 10 % threshold flags both; the first
    breach is period 1. A payment after the data's as-of date
    does not count.
    """
    portfolio = make_portfolio(np.full((1, 6), 10.0))
    plan = portfolio_business_plan(
        portfolio,
        scenario_set(horizon_months=6, target_irr=0.0, servicing_fee=0.1),
        cutoff_date=CUTOFF,
    )
    pays = _payments(
        [
            ("L0", date(2026, 10, 15), 10.0, "borrower"),
            ("L0", date(2026, 11, 30), 10.0, "guarantor"),
            ("L0", date(2027, 1, 3), 5.0, "borrower"),
            ("L0", date(2027, 2, 28), 5.0, "collateral_sale"),
            ("L0", date(2027, 3, 31), 5.0, "borrower"),
            ("L0", date(2027, 4, 1), 99.0, "borrower"),
        ]
    )
    result = backtest(plan, pays, as_of=date(2027, 3, 31), threshold=0.10)
    total = result.total
    assert total["period"].to_list() == [1, 2]
    np.testing.assert_allclose(total["plan_net"], [27.0, 27.0])
    np.testing.assert_allclose(total["realised_net"], [18.0, 13.5])
    np.testing.assert_allclose(total["collection_ratio"], [18 / 27, 31.5 / 54])
    np.testing.assert_allclose(total["pv_ratio"], [18 / 27, 31.5 / 54])
    assert total["breach"].to_list() == [True, True]
    assert result.first_breach_period == 1
    assert result.payments_used == (5, 35.0)
    assert result.table["segment"].unique().sort().to_list() == ["all", "residential_mortgage"]


def test_backtest_on_plan_is_not_a_breach_and_discounting_weighs_late_cash() -> None:
    """Cash on plan gives ratios of 1; the same total one quarter late, a PV ratio below 1.

    Plan 10 a month for 6 months at 12 %: paying 30 in month 3 instead of 10 in months 1-3
    leaves the cumulative ratio at 1 at the end of Q1 but the PV ratio at
    30 d3 / (10 (d1 + d2 + d3)) < 1, d_t = 1.12 ** (-t / 12).
    """
    portfolio = make_portfolio(np.full((1, 6), 10.0))
    plan = portfolio_business_plan(
        portfolio, scenario_set(horizon_months=6, target_irr=0.12), cutoff_date=CUTOFF
    )
    pays = _payments([("L0", date(2026, 12, 20), 30.0, "borrower")])
    row = backtest(plan, pays, as_of=date(2026, 12, 31)).total.row(0, named=True)
    d = 1.12 ** (-np.arange(1, 4) / 12)
    assert row["collection_ratio"] == pytest.approx(1.0, rel=1e-12)
    assert row["pv_ratio"] == pytest.approx(3 * d[2] / d.sum(), rel=1e-12)
    assert not row["breach"]


def test_backtest_refuses_payments_of_loans_not_in_the_plan() -> None:
    """The error names the table, counts the payments and cites one loan_id."""
    plan = portfolio_business_plan(
        make_portfolio(np.full((1, 6), 10.0)), scenario_set(horizon_months=6), cutoff_date=CUTOFF
    )
    pays = _payments([("X9", date(2026, 10, 15), 10.0, "borrower")])
    with pytest.raises(NplError, match=r"payments: 1 payments .* loan_id 'X9'"):
        backtest(plan, pays, as_of=date(2027, 3, 31))


def test_backtest_of_a_payments_frame_needs_as_of() -> None:
    """A bare payments frame carries no extraction day: the error names the as_of keyword."""
    plan = portfolio_business_plan(
        make_portfolio(np.full((1, 6), 10.0)), scenario_set(horizon_months=6), cutoff_date=CUTOFF
    )
    with pytest.raises(NplError, match="as_of: give the day the payments were extracted"):
        backtest(plan, _payments([("L0", date(2026, 10, 15), 10.0, "borrower")]))


def test_backtest_before_the_first_period_ends_says_so() -> None:
    """Two observed months against quarterly periods: nothing to compare, a clear error."""
    plan = portfolio_business_plan(
        make_portfolio(np.full((1, 6), 10.0)), scenario_set(horizon_months=6), cutoff_date=CUTOFF
    )
    with pytest.raises(NplError, match="covers 2 whole months"):
        backtest(plan, _payments([]), as_of=date(2026, 11, 30))


def test_backtest_folder_round_trip(tmp_path: Path) -> None:
    """Saving and loading give the same table and settings."""
    plan = portfolio_business_plan(
        make_portfolio(np.full((1, 6), 10.0)), scenario_set(horizon_months=6), cutoff_date=CUTOFF
    )
    result = backtest(
        plan,
        _payments([("L0", date(2026, 10, 15), 10.0, "borrower")]),
        as_of=date(2027, 3, 31),
    )
    again = Backtest.load(result.save(tmp_path / "bt"))
    assert again.table.equals(result.table)
    assert (again.first_breach_period, again.months_observed) == (1, 6)
