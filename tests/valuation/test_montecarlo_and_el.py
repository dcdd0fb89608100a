"""Monte Carlo paths and expected loss: known values, unbiasedness and determinism."""

from __future__ import annotations

import datetime as dt

import numpy as np
import polars as pl
import pytest

from npl_engine.valuation import (
    MonteCarloSettings,
    portfolio_expected_loss,
    present_value,
    risk_attributes,
    simulate_paths,
    value_portfolio,
)
from valuation.builders import base, make_portfolio, scenario_set

H = 12


def _portfolio(n: int = 400) -> object:
    rng = np.random.default_rng(0)
    borrower = rng.uniform(0, 30, (n, H))
    collateral = np.zeros((n, H))
    collateral[:, 6] = rng.uniform(0, 400, n)
    return make_portfolio(borrower, collateral, p_recover=rng.uniform(0.1, 0.9, n))


def test_paths_average_to_the_expected_price() -> None:
    """Without collateral volatility, the mean path price is the weighted price (4 SE)."""
    pf = _portfolio()
    sc = scenario_set(base("up", 0.6), base("down", 0.4, collateral_value_change=-0.3))
    expected = value_portfolio(pf, sc).weighted.price  # type: ignore[arg-type]
    mc = simulate_paths(
        pf,  # type: ignore[arg-type]
        sc,
        MonteCarloSettings(n_paths=4000, seed=1, collateral_volatility=0.0),
        recovery_threshold=0.5,
    )
    se = mc.price.std() / np.sqrt(mc.price.size)
    assert abs(mc.price.mean() - expected) < 4 * se
    assert mc.net.shape == (4000, H)


def test_correlation_widens_the_distribution() -> None:
    """A systematic factor makes portfolio outcomes more dispersed than independent loans."""
    pf = _portfolio()
    sc = scenario_set()
    spread = [
        simulate_paths(
            pf,  # type: ignore[arg-type]
            sc,
            MonteCarloSettings(n_paths=800, seed=2, asset_correlation=rho),
            recovery_threshold=0.5,
        ).price.std()
        for rho in (0.0, 0.3)
    ]
    assert spread[1] > 1.5 * spread[0]


def test_paths_are_reproducible_and_percentiles_ordered() -> None:
    """Same seed, same paths; P5 ≤ P25 ≤ P50 ≤ P75 ≤ P95; IRRs where a price is given."""
    pf = _portfolio(100)
    sc = scenario_set()
    run = [
        simulate_paths(
            pf,  # type: ignore[arg-type]
            sc,
            MonteCarloSettings(n_paths=200, seed=5, chunk_paths=7),
            recovery_threshold=0.5,
            price=10_000.0,
        )
        for _ in range(2)
    ]
    np.testing.assert_array_equal(run[0].net, run[1].net)
    q = run[0].percentiles()
    for name in ("net_collections", "price", "irr_at_price"):
        values = [q[name][k] for k in ("p5", "p25", "p50", "p75", "p95")]
        assert values == sorted(values)
    assert np.isfinite(run[0].irr_at_price).all()


def test_expected_loss_of_one_loan_is_hand_computed() -> None:
    """EAD 1000 collecting 600 at month 12 at a 5 % rate: LGD = 1 - 600 / 1.05 / 1000.

    Working: PV = 600 / 1.05 = 571.4286; LGD = 0.428571; EL = 428.57. A second scenario (weight
    0.5) loses half the cash: PV 285.71, LGD 0.714286; weighted LGD = 0.571429.
    """
    borrower = np.zeros((1, H))
    borrower[0, 11] = 600.0
    pf = make_portfolio(borrower, interest_rate=np.array([0.05]))
    sc = scenario_set(base("a", 0.5), base("b", 0.5, collections_multiplier=0.5))
    el = portfolio_expected_loss(pf, sc)
    row = el.loans.row(0, named=True)
    assert row["lgd_a"] == pytest.approx(1 - 600 / 1.05 / 1000, rel=1e-12)
    assert row["lgd_b"] == pytest.approx(1 - 300 / 1.05 / 1000, rel=1e-12)
    assert row["el"] == pytest.approx(1000 - 450 / 1.05, rel=1e-12)
    total = el.by_segment.filter(segment="total").row(0, named=True)
    assert total["el_rate"] == pytest.approx(row["lgd"])


def test_lgd_is_bounded_and_discounted_at_each_loans_rate() -> None:
    """Cash above the exposure gives LGD 0, not negative; higher rates give higher LGD."""
    borrower = np.zeros((3, H))
    borrower[:, 11] = [2000.0, 500.0, 500.0]
    pf = make_portfolio(borrower, interest_rate=np.array([0.05, 0.02, 0.20]))
    lgd = portfolio_expected_loss(pf, scenario_set()).loans["lgd"].to_numpy()
    assert lgd[0] == 0.0
    assert lgd[1] < lgd[2]
    assert lgd[1] == pytest.approx(1 - float(present_value(borrower[1], 0.02)) / 1000)


def test_expected_loss_per_scenario_weights_to_the_weighted_figure() -> None:
    """Each scenario's EL, weighted by the file's weights, equals the weighted EL (1e-9)."""
    pf = _portfolio()
    sc = scenario_set(base("up", 0.6), base("down", 0.4, collections_multiplier=0.7))
    el = portfolio_expected_loss(pf, sc)  # type: ignore[arg-type]
    rows = {r["scenario"]: r for r in el.by_scenario.iter_rows(named=True)}
    assert rows["weighted"]["el"] == pytest.approx(
        0.6 * rows["up"]["el"] + 0.4 * rows["down"]["el"], rel=1e-9
    )
    assert rows["weighted"]["el"] == pytest.approx(el.loans["el"].sum(), rel=1e-9)
    assert rows["down"]["el"] > rows["up"]["el"]
    segment_total = el.by_segment.filter(segment="total").row(0, named=True)
    assert segment_total["el_down"] == pytest.approx(rows["down"]["el"], rel=1e-9)


def test_basel_workout_lgd_discounts_every_loan_at_the_stated_rate() -> None:
    """At a stated 8 %, 600 collected in month 12 on EAD 1000 gives LGD 1 - 600 / 1.08 / 1000."""
    borrower = np.zeros((2, H))
    borrower[:, 11] = 600.0
    pf = make_portfolio(borrower, interest_rate=np.array([0.01, 0.20]))
    el = portfolio_expected_loss(pf, scenario_set(), discount_rate=0.08)
    assert el.loans["lgd"].to_list() == pytest.approx([1 - 600 / 1.08 / 1000] * 2, rel=1e-12)
    assert el.discount_basis == "basel_workout"
    assert el.summary()["discounting"] == {"basis": "basel_workout", "rate": 0.08}


def test_risk_attributes_band_months_since_default() -> None:
    """Vintage is the default year; 0, 11, 12, 40 and 61 months fall in their bands."""
    cutoff = dt.date(2026, 9, 30)
    days = [0, 11 * 30.4375 + 3, 12 * 30.4375 + 3, 40 * 30.4375 + 3, 61 * 30.4375 + 3]
    loans = pl.DataFrame(
        {
            "loan_id": [f"L{i}" for i in range(5)],
            "region": ["Lazio"] * 5,
            "cutoff_date": [cutoff] * 5,
            "default_date": [cutoff - dt.timedelta(days=int(d)) for d in days],
        }
    )
    out = risk_attributes(loans)
    assert out["months_since_default"].to_list() == [0, 11, 12, 40, 61]
    assert out["months_since_default_band"].to_list() == ["0-6", "6-12", "12-24", "36-60", "60+"]
    assert out["default_vintage"].to_list() == [2026, 2025, 2025, 2023, 2021]
