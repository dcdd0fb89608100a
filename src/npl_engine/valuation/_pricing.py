"""Price a portfolio under weighted scenarios: present values, IRR and MOIC at a price."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
import polars as pl

from npl_engine.scenarios import PricingAssumptions, ScenarioSet
from npl_engine.valuation._cashflows import PortfolioSums, ScenarioCashFlows, scenario_cash_flows
from npl_engine.valuation._finance import annual_irr, discount_factors, moic
from npl_engine.valuation._portfolio import Portfolio

__all__ = [
    "WEIGHTED",
    "ScenarioValue",
    "ScenarioValues",
    "mix_flows",
    "value_portfolio",
    "weighted_flows",
]

WEIGHTED = "weighted"
"""Name of the weight-averaged row of a valuation (and of its cash flows)."""

FloatArray = npt.NDArray[np.float64]


@dataclass(frozen=True, slots=True)
class ScenarioValue:
    """The value of the portfolio under one scenario (or the weighted mix)."""

    name: str
    weight: float
    gross_collections: float
    costs: float
    net_collections: float
    price: float
    price_pct_gbv: float
    irr_at_price: float | None = None
    moic: float | None = None

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dictionary (NaN becomes None)."""
        return {
            k: (None if isinstance(v, float) and math.isnan(v) else v)
            for k, v in (
                ("name", self.name),
                ("weight", self.weight),
                ("gross_collections", self.gross_collections),
                ("costs", self.costs),
                ("net_collections", self.net_collections),
                ("price", self.price),
                ("price_pct_gbv", self.price_pct_gbv),
                ("irr_at_price", self.irr_at_price),
                ("moic", self.moic),
            )
        }


@dataclass(frozen=True, slots=True)
class ScenarioValues:
    """A portfolio's price under each scenario and weighted (what :func:`value_portfolio` gives).

    The whole valuation of a tape (bid grid, sensitivities, Monte Carlo, tranches) is a
    :class:`~npl_engine.valuation.Valuation`, which holds one of these.

    Parameters
    ----------
    gbv, n_loans
        Gross book value and loan count.
    target_irr, horizon_months
        The discount rate and horizon used.
    scenarios
        One :class:`ScenarioValue` per scenario.
    weighted
        The weight-averaged value: prices, collections and costs are weighted means; the IRR
        and MOIC at ``price`` are those of the weighted (expected) net cash flows.
    price
        The price the IRR and MOIC were computed at, if any.
    cash_flows
        One row per scenario (and ``weighted``) and month: ``scenario``, ``month``, ``gross``,
        ``borrower``, ``collateral``, ``costs``, ``net``, ``discount_factor``,
        ``present_value``.
    """

    gbv: float
    n_loans: int
    target_irr: float
    horizon_months: int
    scenarios: tuple[ScenarioValue, ...]
    weighted: ScenarioValue
    price: float | None
    cash_flows: pl.DataFrame

    def to_dict(self) -> dict[str, Any]:
        """The prices of ``valuation.json`` (its first entries)."""
        out: dict[str, Any] = {
            "gbv": self.gbv,
            "n_loans": self.n_loans,
            "target_irr": self.target_irr,
            "horizon_months": self.horizon_months,
            "price": self.price,
            "scenarios": [s.to_dict() for s in self.scenarios],
            "weighted": self.weighted.to_dict(),
        }
        if self.price is not None:
            out["irr_at_price"] = self.weighted.irr_at_price
            out["moic"] = self.weighted.moic
        return out


def _value(
    name: str,
    weight: float,
    *,
    flows: ScenarioCashFlows,
    discount: FloatArray,
    gbv: float,
    price: float | None,
) -> ScenarioValue:
    pv = float(flows.net @ discount)
    return ScenarioValue(
        name=name,
        weight=weight,
        gross_collections=float(flows.gross.sum()),
        costs=float(flows.costs.sum()),
        net_collections=float(flows.net.sum()),
        price=pv,
        price_pct_gbv=pv / gbv if gbv > 0 else math.nan,
        irr_at_price=None if price is None else annual_irr(price, flows.net),
        moic=None if price is None else moic(price, flows.net),
    )


def mix_flows(
    flows: Mapping[str, ScenarioCashFlows], weights: Mapping[str, float]
) -> ScenarioCashFlows:
    """The weight-averaged (expected) cash flows of several scenarios."""
    h = next(iter(flows.values())).borrower.shape[-1]
    return ScenarioCashFlows(
        borrower=sum((weights[k] * f.borrower for k, f in flows.items()), np.zeros(h)),
        collateral=sum((weights[k] * f.collateral for k, f in flows.items()), np.zeros(h)),
        costs=sum((weights[k] * f.costs for k, f in flows.items()), np.zeros(h)),
    )


def weighted_flows(
    portfolio: Portfolio | PortfolioSums, scenarios: ScenarioSet, pricing: PricingAssumptions
) -> tuple[dict[str, ScenarioCashFlows], ScenarioCashFlows]:
    """Cash flows of every scenario (by name, in file order) and their weighted mix.

    Every price of a valuation, a bid grid or a sensitivity is ``flows.net @ discount`` of
    one of these, so the same inputs give the same figures bit for bit.
    """
    flows = {s.name: scenario_cash_flows(portfolio, s, pricing) for s in scenarios.scenarios}
    weights = {s.name: s.weight for s in scenarios.scenarios}
    return flows, mix_flows(flows, weights)


def value_portfolio(
    portfolio: Portfolio | PortfolioSums,
    scenarios: ScenarioSet,
    *,
    target_irr: float | None = None,
    price: float | None = None,
) -> ScenarioValues:
    """Value ``portfolio`` under every scenario of ``scenarios`` and weighted.

    Parameters
    ----------
    portfolio
        Scored loans (:func:`~npl_engine.valuation.build_portfolio`), or their sums measured
        at the scenarios' collateral value changes
        (:func:`~npl_engine.valuation.portfolio_sums`): the same prices.
    scenarios
        Pricing assumptions and weighted scenarios.
    target_irr
        Overrides ``scenarios.pricing.target_irr`` when given.
    price
        A price paid at the cut-off date: adds the annual IRR and the MOIC at that price.

    Returns
    -------
    ScenarioValues

    Notes
    -----
    Price = present value of net collections at the target IRR: month t is discounted by
    ``(1 + target_irr) ** (t / 12)``, cash falling at the end of each month (see
    :mod:`npl_engine.valuation._finance`).
    """
    pricing = scenarios.pricing
    if target_irr is not None:
        pricing = pricing.model_copy(update={"target_irr": target_irr})
    if price is not None and price <= 0:
        msg = f"a price must be positive, got {price}"
        raise ValueError(msg)
    h = pricing.horizon_months
    discount = discount_factors(h, pricing.target_irr)
    gbv = portfolio.gbv
    flows, mix = weighted_flows(portfolio, scenarios, pricing)
    values = tuple(
        _value(s.name, s.weight, flows=flows[s.name], discount=discount, gbv=gbv, price=price)
        for s in scenarios.scenarios
    )
    weighted = _value(WEIGHTED, 1.0, flows=mix, discount=discount, gbv=gbv, price=price)
    months = np.arange(1, h + 1)
    frames = [
        pl.DataFrame(
            {
                "scenario": name,
                "month": months,
                "gross": f.gross,
                "borrower": f.borrower,
                "collateral": f.collateral,
                "costs": f.costs,
                "net": f.net,
                "discount_factor": discount,
                "present_value": f.net * discount,
            }
        )
        for name, f in (*flows.items(), (WEIGHTED, mix))
    ]
    return ScenarioValues(
        gbv=gbv,
        n_loans=portfolio.n_loans,
        target_irr=pricing.target_irr,
        horizon_months=h,
        scenarios=values,
        weighted=weighted,
        price=price,
        cash_flows=pl.concat(frames),
    )
