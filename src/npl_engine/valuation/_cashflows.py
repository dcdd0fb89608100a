"""Portfolio cash flows under a scenario: gross collections, costs and net, month by month."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from npl_engine.scenarios import PricingAssumptions, Scenario
from npl_engine.valuation._portfolio import Portfolio

__all__ = ["ScenarioCashFlows", "loan_cash_flows", "scenario_cash_flows", "shift"]

FloatArray = npt.NDArray[np.float64]


@dataclass(frozen=True, slots=True)
class ScenarioCashFlows:
    """Portfolio cash flows of one scenario, months 1..H (arrays of shape (H,))."""

    borrower: FloatArray
    collateral: FloatArray
    costs: FloatArray

    @property
    def gross(self) -> FloatArray:
        """Gross collections."""
        out: FloatArray = self.borrower + self.collateral
        return out

    @property
    def net(self) -> FloatArray:
        """Net collections: gross less costs."""
        out: FloatArray = self.gross - self.costs
        return out


def shift(flows: FloatArray, delay_months: int, horizon_months: int) -> FloatArray:
    """Move flows (last axis = months 1..H) later by ``delay_months``; cut at ``horizon_months``.

    What is pushed past the horizon is lost, as the contract's ``delay_months`` says. A negative
    delay moves flows earlier: what would fall before month 1 is collected in month 1 (nothing
    is collected before the cut-off date), and later months of the curve move into the horizon.
    """
    out = np.zeros((*flows.shape[:-1], horizon_months))
    if delay_months < 0:
        ahead = -delay_months
        out[..., 0] = flows[..., : ahead + 1].sum(axis=-1)
        rest = flows[..., ahead + 1 : ahead + horizon_months]
        out[..., 1 : 1 + rest.shape[-1]] = rest
        return out
    keep = min(max(horizon_months - delay_months, 0), flows.shape[-1])
    if keep > 0:
        out[..., delay_months : delay_months + keep] = flows[..., :keep]
    return out


def _check_horizon(portfolio: Portfolio, pricing: PricingAssumptions) -> None:
    if pricing.horizon_months > portfolio.horizon_months:
        msg = (
            f"the scenario file's horizon_months is {pricing.horizon_months}, but the model "
            f"predicts collections for {portfolio.horizon_months} months only; retrain with "
            f"`npl train --valuation-horizon {pricing.horizon_months}` or shorten the horizon"
        )
        raise ValueError(msg)


def costs_of(
    borrower: FloatArray,
    collateral: FloatArray,
    *,
    legal_borrower: FloatArray,
    legal_collateral: FloatArray,
    n_loans: float,
    pricing: PricingAssumptions,
) -> FloatArray:
    """Costs of a month's collections (arrays broadcast over months or paths).

    servicing_fee × gross + legal_cost_share × gross of loans in legal stages +
    collateral_sale_cost × collateral-sale proceeds + cost_per_loan_per_year / 12 × loans.
    """
    gross = borrower + collateral
    out: FloatArray = (
        pricing.servicing_fee * gross
        + pricing.legal_cost_share * (legal_borrower + legal_collateral)
        + pricing.collateral_sale_cost * collateral
        + pricing.cost_per_loan_per_year / 12.0 * n_loans
    )
    return out


def scenario_cash_flows(
    portfolio: Portfolio,
    scenario: Scenario,
    pricing: PricingAssumptions,
    *,
    delay_change_months: int = 0,
) -> ScenarioCashFlows:
    """Cash flows of the whole portfolio under ``scenario``, months 1..pricing.horizon_months.

    ``delay_change_months`` adds to the scenario's delay (a sensitivity); the total may be
    negative, which collects earlier (see :func:`shift`).

    Notes
    -----
    Per loan: collateral-sale collections are the model's curve times the loan's collateral
    response to ``collateral_value_change``; other collections are scaled by
    ``collections_multiplier``; everything moves ``delay_months`` later and what passes the
    horizon is lost. Costs are those of :func:`costs_of`; the fixed cost per loan runs for the
    whole horizon. A scenario with no shocks reproduces the unshocked curves exactly.
    """
    _check_horizon(portfolio, pricing)
    h = pricing.horizon_months
    factor = portfolio.collateral_factor(scenario.collateral_value_change)
    legal = portfolio.in_legal_stage.astype(np.float64)
    borrower = scenario.collections_multiplier * portfolio.borrower.sum(axis=0)
    collateral = factor @ portfolio.collateral
    legal_b = scenario.collections_multiplier * (legal @ portfolio.borrower)
    legal_c = (factor * legal) @ portfolio.collateral
    d = scenario.delay_months + delay_change_months
    borrower, collateral, legal_b, legal_c = (
        shift(x, d, h) for x in (borrower, collateral, legal_b, legal_c)
    )
    costs = costs_of(
        borrower,
        collateral,
        legal_borrower=legal_b,
        legal_collateral=legal_c,
        n_loans=portfolio.n_loans,
        pricing=pricing,
    )
    return ScenarioCashFlows(borrower=borrower, collateral=collateral, costs=costs)


def loan_cash_flows(
    portfolio: Portfolio, scenario: Scenario, pricing: PricingAssumptions
) -> FloatArray:
    """Per-loan net cash flows under ``scenario``: shape (n, pricing.horizon_months).

    The same rules as :func:`scenario_cash_flows`, loan by loan (their sum over loans equals the
    portfolio's net flows).
    """
    _check_horizon(portfolio, pricing)
    h = pricing.horizon_months
    factor = portfolio.collateral_factor(scenario.collateral_value_change)[:, None]
    legal = portfolio.in_legal_stage[:, None].astype(np.float64)
    borrower = shift(scenario.collections_multiplier * portfolio.borrower, scenario.delay_months, h)
    collateral = shift(factor * portfolio.collateral, scenario.delay_months, h)
    costs = costs_of(
        borrower,
        collateral,
        legal_borrower=legal * borrower,
        legal_collateral=legal * collateral,
        n_loans=1.0,
        pricing=pricing,
    )
    out: FloatArray = borrower + collateral - costs
    return out
