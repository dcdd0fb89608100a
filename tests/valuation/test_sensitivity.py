"""Bid grid and price sensitivities on hand-made portfolios with known curves."""

from __future__ import annotations

import numpy as np
import pytest

from npl_engine.valuation import (
    SensitivitySettings,
    irr_grid,
    price_grid,
    sensitivities,
    value_portfolio,
)
from npl_engine.valuation._cashflows import shift
from valuation.builders import base, make_portfolio, scenario_set


def _book() -> tuple[object, object]:
    """Two loans over 24 months (borrower and collateral), two weighted scenarios with costs."""
    rng = np.random.default_rng(4)
    borrower = rng.uniform(0, 50, size=(2, 30))
    collateral = np.zeros((2, 30))
    collateral[0, 10] = 600.0
    collateral[1, 20] = 300.0
    portfolio = make_portfolio(borrower, collateral, legal=np.array([True, False]))
    scenarios = scenario_set(
        base("base", 0.6),
        base("down", 0.4, collateral_value_change=-0.15, collections_multiplier=0.8,
             delay_months=3),
        horizon_months=24, servicing_fee=0.08, legal_cost_share=0.03,
        collateral_sale_cost=0.05, cost_per_loan_per_year=12.0,
    )  # fmt: skip
    return portfolio, scenarios


def test_irr_grid_includes_its_stop_and_rounds() -> None:
    """0.08:0.20:0.01 gives 13 rates, exactly 0.12 in the middle; bad grids are refused."""
    grid = irr_grid(0.08, 0.20, 0.01)
    assert len(grid) == 13
    assert grid[4] == 0.12
    assert grid[-1] == 0.2
    for bad in ((0.1, 0.05, 0.01), (0.1, 0.2, 0.0), (-1.0, 0.1, 0.1), (0.0, 10.0, 0.001)):
        with pytest.raises(ValueError, match="grid"):
            irr_grid(*bad)


def test_each_grid_point_is_the_valuation_at_that_rate_and_price_falls() -> None:
    """Every grid price equals value_portfolio(target_irr=r) bit for bit; it falls with r."""
    portfolio, scenarios = _book()
    rates = irr_grid(0.0, 0.30, 0.05)
    grid = price_grid(portfolio, scenarios, rates)
    assert grid.height == len(rates) * 3
    for r in rates:
        v = value_portfolio(portfolio, scenarios, target_irr=r)
        at = grid.filter(grid["target_irr"] == r)
        expected = [s.price for s in v.scenarios] + [v.weighted.price]
        assert at["scenario"].to_list() == ["base", "down", "weighted"]
        assert at["price"].to_list() == expected
        assert at["price_pct_gbv"].to_list() == [p / portfolio.gbv for p in expected]
    for name in ("base", "down", "weighted"):
        prices = grid.filter(grid["scenario"] == name)["price"].to_numpy()
        assert (np.diff(prices) < 0).all()


def test_shift_earlier_collects_what_falls_before_month_one_in_month_one() -> None:
    """Flows [1, 2, 3, 4, 5] moved 2 months earlier over 3 months: [1+2+3, 4, 5]."""
    flows = np.array([1.0, 2.0, 3.0, 4.0, 5.0])
    assert shift(flows, -2, 3).tolist() == [6.0, 4.0, 5.0]
    assert shift(flows, -4, 3).tolist() == [15.0, 0.0, 0.0]
    assert shift(flows, 2, 3).tolist() == [0.0, 0.0, 1.0]


def test_sensitivities_have_the_signs_a_buyer_expects() -> None:
    """More collections, faster, better collateral, lower fees or rates: a higher price."""
    portfolio, scenarios = _book()
    tornado = sensitivities(portfolio, scenarios)
    base_price = value_portfolio(portfolio, scenarios).weighted.price
    change = {(r["driver"], r["direction"]): r["change"] for r in tornado.iter_rows(named=True)}
    assert set(change) == {
        (d, s) for d in ("collections", "delay", "collateral", "servicing_fee", "discount_rate")
        for s in ("down", "up")
    }  # fmt: skip
    for driver in ("collections", "collateral"):
        assert change[(driver, "down")] < 0 < change[(driver, "up")]
    for driver in ("delay", "servicing_fee", "discount_rate"):
        assert change[(driver, "down")] > 0 > change[(driver, "up")]
    row = tornado.row(0, named=True)
    assert row["price"] == pytest.approx(base_price + row["change"])
    assert row["change_pct"] == pytest.approx(row["change"] / base_price)


def test_collections_and_fee_shocks_match_hand_worked_prices() -> None:
    """One loan, 100 a month for 12 months, 8 % fee, 0 % rate: price = Σ net exactly.

    Collections +10 %: 12 × 110 × 0.92 = 1,214.4 against 1,104 (change +110.4).
    Fee +1 pp: 12 × 100 × 0.91 = 1,092 (change -12). Delay +6: 6 months fall past the
    12-month horizon, 6 × 100 × 0.92 = 552 (change -552). Delay -6: months 1..7 arrive in
    month 1 and months 8..12 after, but a 12-month curve has nothing beyond: unchanged.
    """
    portfolio = make_portfolio(np.full((1, 12), 100.0))
    scenarios = scenario_set(target_irr=0.0, horizon_months=12, servicing_fee=0.08)
    tornado = sensitivities(portfolio, scenarios, settings=SensitivitySettings())
    change = {(r["driver"], r["direction"]): r["change"] for r in tornado.iter_rows(named=True)}
    assert change[("collections", "up")] == pytest.approx(110.4)
    assert change[("collections", "down")] == pytest.approx(-110.4)
    assert change[("servicing_fee", "up")] == pytest.approx(-12.0)
    assert change[("delay", "up")] == pytest.approx(-552.0)
    assert change[("delay", "down")] == pytest.approx(0.0)
    assert change[("collateral", "up")] == 0.0  # no collateral


def test_collateral_changes_cover_every_shocked_scenario() -> None:
    """A -15 % scenario shocked ±20 % needs the response at -32 % and +2 %."""
    _, scenarios = _book()
    assert SensitivitySettings().collateral_changes(scenarios) == (-0.32, -0.2, 0.02, 0.2)
