"""Portfolio cash flows under a scenario: gross collections, costs and net, month by month."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from npl_engine.scenarios import PricingAssumptions, Scenario
from npl_engine.valuation._portfolio import Portfolio

__all__ = [
    "PortfolioSums",
    "ScenarioCashFlows",
    "loan_cash_flows",
    "portfolio_sums",
    "scenario_cash_flows",
    "shift",
]

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


@dataclass(frozen=True, slots=True)
class PortfolioSums:
    """Sums over a portfolio's loans of the curves its scenario cash flows are made of.

    Every scenario's cash flows (:func:`scenario_cash_flows`), hence every price, bid-grid
    price and tornado price, is a function of these sums alone; and the sums of a portfolio
    split into parts are the sums of the parts' sums (``a + b``). This is how
    :func:`~npl_engine.valuation.value` values a tape in chunks of loans.

    Parameters
    ----------
    n_loans, gbv
        Loans summed and the sum of their exposures.
    borrower, legal_borrower
        Expected borrower collections per month 1..H, of every loan and of the loans in legal
        stages, shape (H,).
    collateral_changes
        The relative collateral value changes the collateral sums are measured at.
    collateral, legal_collateral
        Expected collateral-sale collections per month at each change, of every loan and of
        the loans in legal stages, shape (len(collateral_changes), H).
    """

    n_loans: int
    gbv: float
    borrower: FloatArray
    legal_borrower: FloatArray
    collateral_changes: tuple[float, ...]
    collateral: FloatArray
    legal_collateral: FloatArray

    @property
    def horizon_months(self) -> int:
        """Months of the curves."""
        return int(self.borrower.shape[-1])

    def __add__(self, other: PortfolioSums) -> PortfolioSums:
        """The sums of two disjoint sets of loans measured at the same changes."""
        if other.collateral_changes != self.collateral_changes:
            msg = (
                "cannot add portfolio sums measured at different collateral changes: "
                f"{self.collateral_changes} and {other.collateral_changes}"
            )
            raise ValueError(msg)
        return PortfolioSums(
            n_loans=self.n_loans + other.n_loans,
            gbv=self.gbv + other.gbv,
            borrower=self.borrower + other.borrower,
            legal_borrower=self.legal_borrower + other.legal_borrower,
            collateral_changes=self.collateral_changes,
            collateral=self.collateral + other.collateral,
            legal_collateral=self.legal_collateral + other.legal_collateral,
        )

    def collateral_at(self, change: float) -> tuple[FloatArray, FloatArray]:
        """Collateral-sale collections of every loan and of those in legal stages at ``change``.

        Raises
        ------
        ValueError
            If the sums were not measured at ``change``.
        """
        try:
            i = self.collateral_changes.index(change)
        except ValueError:
            msg = (
                f"these portfolio sums hold no collateral value change {change} (they hold "
                f"{list(self.collateral_changes)}); measure it with portfolio_sums"
            )
            raise ValueError(msg) from None
        return self.collateral[i], self.legal_collateral[i]


def portfolio_sums(portfolio: Portfolio, collateral_changes: Sequence[float]) -> PortfolioSums:
    """Sum ``portfolio``'s curves over its loans, the collateral at each of ``collateral_changes``.

    Each loan's collateral curve is scaled by its collateral response to the change
    (:meth:`~npl_engine.valuation.Portfolio.collateral_factor`) before the sum.
    """
    changes = tuple(dict.fromkeys(float(c) for c in collateral_changes))
    legal = portfolio.in_legal_stage.astype(np.float64)
    h = portfolio.horizon_months
    collateral = np.empty((len(changes), h))
    legal_collateral = np.empty((len(changes), h))
    # One vector-matrix product per change (a handful), as a single scenario's flows take it.
    for i, change in enumerate(changes):
        factor = portfolio.collateral_factor(change)
        collateral[i] = factor @ portfolio.collateral
        legal_collateral[i] = (factor * legal) @ portfolio.collateral
    return PortfolioSums(
        n_loans=portfolio.n_loans,
        gbv=portfolio.gbv,
        borrower=portfolio.borrower.sum(axis=0),
        legal_borrower=legal @ portfolio.borrower,
        collateral_changes=changes,
        collateral=collateral,
        legal_collateral=legal_collateral,
    )


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


def check_horizon(horizon_months: int, pricing: PricingAssumptions) -> None:
    """Refuse pricing over more months than the curves (of ``horizon_months``) hold."""
    if pricing.horizon_months > horizon_months:
        msg = (
            f"the scenario file's horizon_months is {pricing.horizon_months}, but the model "
            f"predicts collections for {horizon_months} months only; retrain with "
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
    portfolio: Portfolio | PortfolioSums,
    scenario: Scenario,
    pricing: PricingAssumptions,
    *,
    delay_change_months: int = 0,
) -> ScenarioCashFlows:
    """Cash flows of the whole portfolio under ``scenario``, months 1..pricing.horizon_months.

    ``portfolio`` is the scored loans or their sums (:func:`portfolio_sums`, measured at the
    scenario's collateral value change): both give the same flows. ``delay_change_months``
    adds to the scenario's delay (a sensitivity); the total may be negative, which collects
    earlier (see :func:`shift`).

    Notes
    -----
    Per loan: collateral-sale collections are the model's curve times the loan's collateral
    response to ``collateral_value_change``; other collections are scaled by
    ``collections_multiplier``; everything moves ``delay_months`` later and what passes the
    horizon is lost. Costs are those of :func:`costs_of`; the fixed cost per loan runs for the
    whole horizon. A scenario with no shocks reproduces the unshocked curves exactly.
    """
    sums = (
        portfolio
        if isinstance(portfolio, PortfolioSums)
        else portfolio_sums(portfolio, (scenario.collateral_value_change,))
    )
    check_horizon(sums.horizon_months, pricing)
    h = pricing.horizon_months
    m = scenario.collections_multiplier
    collateral, legal_c = sums.collateral_at(scenario.collateral_value_change)
    d = scenario.delay_months + delay_change_months
    borrower, collateral, legal_b, legal_c = (
        shift(x, d, h) for x in (m * sums.borrower, collateral, m * sums.legal_borrower, legal_c)
    )
    costs = costs_of(
        borrower,
        collateral,
        legal_borrower=legal_b,
        legal_collateral=legal_c,
        n_loans=sums.n_loans,
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
    check_horizon(portfolio.horizon_months, pricing)
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
