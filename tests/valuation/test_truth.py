"""Valuation against the simulator's truth on a held-out tape (slow: trains on 100,000 loans)."""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest

from npl_engine.data.simulator import Simulation, SimulationSettings, simulate, true_outcomes
from npl_engine.scoring import RecoveryModel
from npl_engine.valuation import Portfolio, build_portfolio, discount_factors, value_portfolio
from valuation.builders import base, scenario_set

pytestmark = pytest.mark.slow

H = 60


@pytest.fixture(scope="module")
def setting() -> tuple[Simulation, Portfolio]:
    """A model trained on a 100,000-loan book and a 20,000-loan tape from another seed."""
    sim = simulate(SimulationSettings(n_loans=100_000, seed=21))
    book = sim.dataset()
    model = RecoveryModel(baselines=False).fit(book)
    tape = simulate(SimulationSettings(n_loans=20_000, seed=22, kind="tape"))
    return tape, build_portfolio(model, tape.loans)


def _true_pv(tape: Simulation, change: float = 0.0) -> tuple[float, np.ndarray]:
    _, curves = true_outcomes(tape.loans, tape.truth, collateral_value_change=change)
    monthly = (curves.group_by("month").agg(pl.col("expected_collections").sum()).sort("month"))[
        "expected_collections"
    ].to_numpy()
    return float(monthly @ discount_factors(H, 0.12)), monthly


def test_base_price_matches_the_true_present_value(setting: tuple[Simulation, Portfolio]) -> None:
    """With no fees or costs, the price at 12 % is within ±3 % of the PV of the true curve."""
    tape, portfolio = setting
    price = value_portfolio(portfolio, scenario_set(horizon_months=H)).weighted.price
    true_pv, _ = _true_pv(tape)
    assert price / true_pv == pytest.approx(1.0, abs=0.03)


def test_collateral_fall_moves_the_price_as_the_truth_does(
    setting: tuple[Simulation, Portfolio],
) -> None:
    """A 20 % collateral fall changes the price within ±20 % of the true change."""
    tape, portfolio = setting
    sc = scenario_set(base("base", 0.5), base("fall", 0.5, collateral_value_change=-0.2),
                      horizon_months=H)  # fmt: skip
    v = value_portfolio(portfolio, sc)
    model_change = v.scenarios[1].price - v.scenarios[0].price
    true_change = _true_pv(tape, -0.2)[0] - _true_pv(tape)[0]
    assert true_change < 0
    assert model_change / true_change == pytest.approx(1.0, abs=0.20)


def test_irr_at_the_true_price_is_the_target(setting: tuple[Simulation, Portfolio]) -> None:
    """Paying the true PV at 12 %, the engine's IRR is within 0.5 percentage points of 12 %."""
    tape, portfolio = setting
    true_pv, _ = _true_pv(tape)
    v = value_portfolio(portfolio, scenario_set(horizon_months=H), price=true_pv)
    assert v.weighted.irr_at_price == pytest.approx(0.12, abs=0.005)
