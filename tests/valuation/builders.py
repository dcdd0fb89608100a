"""Hand-made portfolios whose curves are known exactly."""

from __future__ import annotations

import numpy as np
import polars as pl

from npl_engine.scenarios import PricingAssumptions, Scenario, ScenarioSet
from npl_engine.valuation import Portfolio


def make_portfolio(
    borrower: np.ndarray,
    collateral: np.ndarray | None = None,
    *,
    exposure: np.ndarray | None = None,
    interest_rate: np.ndarray | None = None,
    legal: np.ndarray | None = None,
    response_slope: float = 1.0,
    p_recover: np.ndarray | None = None,
) -> Portfolio:
    """A portfolio from explicit monthly curves (n, H).

    The collateral response is linear: a value change c scales sale proceeds by
    max(1 + response_slope × c, 0).
    """
    borrower = np.atleast_2d(np.asarray(borrower, dtype=float))
    n = borrower.shape[0]
    collateral = np.zeros_like(borrower) if collateral is None else np.atleast_2d(collateral)
    grid = np.array([-0.6, -0.3, 0.0, 0.3])
    response = np.tile(np.maximum(1.0 + response_slope * grid, 0.0), (n, 1))
    return Portfolio(
        loan_id=pl.Series([f"L{i}" for i in range(n)]),
        segment=pl.Series(["residential_mortgage"] * n),
        legal_stage=pl.Series(["none"] * n),
        exposure=np.full(n, 1000.0) if exposure is None else np.asarray(exposure, dtype=float),
        interest_rate=np.full(n, 0.05) if interest_rate is None else np.asarray(interest_rate),
        in_legal_stage=np.zeros(n, bool) if legal is None else np.asarray(legal, dtype=bool),
        p_recover=np.full(n, 0.4) if p_recover is None else np.asarray(p_recover, dtype=float),
        borrower=borrower,
        collateral=collateral.astype(float),
        recovery_horizon_share=np.full(n, 0.5),
        collateral_grid=grid,
        collateral_response=response,
    )


def scenario_set(
    *scenarios: Scenario,
    target_irr: float = 0.12,
    horizon_months: int = 12,
    servicing_fee: float = 0.0,
    **costs: float,
) -> ScenarioSet:
    """A scenario set; with no scenarios, one unshocked scenario of weight 1."""
    pricing = PricingAssumptions(
        target_irr=target_irr,
        servicing_fee=servicing_fee,
        horizon_months=horizon_months,
        **costs,
    )
    if not scenarios:
        scenarios = (base(),)
    return ScenarioSet.model_validate({"pricing": pricing, "scenario": list(scenarios)})


def base(name: str = "base", weight: float = 1.0, **shocks: float | int) -> Scenario:
    """A scenario, unshocked unless told otherwise."""
    values: dict[str, float | int | str] = {
        "name": name,
        "weight": weight,
        "collateral_value_change": 0.0,
        "collections_multiplier": 1.0,
        "delay_months": 0,
    }
    values.update(shocks)
    return Scenario.model_validate(values)
