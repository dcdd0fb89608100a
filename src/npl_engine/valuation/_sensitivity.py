"""A buyer's bid grid and price sensitivities: price per target IRR, and a tornado of shocks."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

import polars as pl
from pydantic import ValidationError

from npl_engine.scenarios import PricingAssumptions, ScenarioSet
from npl_engine.valuation._cashflows import PortfolioSums, ScenarioCashFlows, scenario_cash_flows
from npl_engine.valuation._finance import discount_factors
from npl_engine.valuation._portfolio import Portfolio
from npl_engine.valuation._pricing import WEIGHTED, mix_flows, weighted_flows

__all__ = ["SensitivitySettings", "irr_grid", "price_grid", "sensitivities"]

MAX_GRID_POINTS = 201
"""Most target IRRs one bid grid may hold."""


def irr_grid(start: float, stop: float, step: float) -> tuple[float, ...]:
    """Target IRRs from ``start`` to ``stop`` inclusive in steps of ``step``.

    Values are rounded to 10 decimals, so ``irr_grid(0.08, 0.20, 0.01)`` holds exactly 0.12,
    not 0.12000000000000001.

    Raises
    ------
    ValueError
        If ``step`` is not positive, ``stop < start``, a rate is not above -1, or the grid
        would hold more than :data:`MAX_GRID_POINTS` rates.

    >>> irr_grid(0.08, 0.12, 0.01)
    (0.08, 0.09, 0.1, 0.11, 0.12)
    """
    if not step > 0 or not stop >= start or not start > -1:
        msg = f"an IRR grid needs start > -1, stop >= start and step > 0, got {start}:{stop}:{step}"
        raise ValueError(msg)
    n = math.floor((stop - start) / step + 1e-9) + 1
    if n > MAX_GRID_POINTS:
        msg = f"an IRR grid of {n} rates is too long (at most {MAX_GRID_POINTS})"
        raise ValueError(msg)
    return tuple(round(start + i * step, 10) for i in range(n))


def price_grid(
    portfolio: Portfolio | PortfolioSums, scenarios: ScenarioSet, target_irrs: Sequence[float]
) -> pl.DataFrame:
    """Price and price / GBV of every scenario and weighted, at each target IRR.

    Parameters
    ----------
    portfolio
        Scored loans, or their sums (:func:`~npl_engine.valuation.portfolio_sums`).
    scenarios
        Pricing assumptions (their ``target_irr`` is replaced by each grid rate) and scenarios.
    target_irrs
        Annual discount rates, each > -1.

    Returns
    -------
    polars.DataFrame
        ``target_irr``, ``scenario`` (file order, then ``weighted``), ``price``,
        ``price_pct_gbv``; one row per rate and scenario, rates in the given order.

    Notes
    -----
    The cash flows are those of :func:`~npl_engine.valuation.value_portfolio`, computed once;
    each price is their present value at the rate, so a grid point equals the valuation at
    ``target_irr=r`` exactly. Net collections are positive, so price falls as the rate rises.
    """
    if any(not r > -1 for r in target_irrs):
        msg = f"every target IRR must be above -1, got {list(target_irrs)}"
        raise ValueError(msg)
    pricing = scenarios.pricing
    flows, mix = weighted_flows(portfolio, scenarios, pricing)
    named = [*flows.items(), (WEIGHTED, mix)]
    gbv = portfolio.gbv
    rows: list[tuple[float, str, float, float | None]] = []
    for r in target_irrs:
        discount = discount_factors(pricing.horizon_months, r)
        for name, f in named:
            price = float(f.net @ discount)
            # As value_portfolio divides, so that a grid point equals the valuation exactly.
            rows.append((float(r), name, price, price / gbv if gbv > 0 else None))
    return pl.DataFrame(
        rows,
        schema={"target_irr": pl.Float64, "scenario": pl.String, "price": pl.Float64,
                "price_pct_gbv": pl.Float64},
        orient="row",
    )  # fmt: skip


@dataclass(frozen=True, slots=True)
class SensitivitySettings:
    """Sizes of the shocks of a price tornado (each applied down and up).

    Parameters
    ----------
    collections
        Relative change of every gross collection (borrower and collateral): 0.10 = ±10 %.
    delay_months
        Months every collection moves later (and earlier), on top of each scenario's delay.
    collateral
        Relative change of collateral values, compounded with each scenario's own change:
        0.20 turns a scenario's -15 % into -32 % and +2 %.
    servicing_fee
        Change of the servicing fee, in fee points: 0.01 = ±1 pp of gross collections.
    discount_rate
        Change of the target IRR: 0.02 = ±2 pp.
    """

    collections: float = 0.10
    delay_months: int = 6
    collateral: float = 0.20
    servicing_fee: float = 0.01
    discount_rate: float = 0.02

    def __post_init__(self) -> None:
        sizes = asdict(self)
        bad = [k for k, v in sizes.items() if not v > 0]
        if bad or not self.collections < 1 or not self.collateral < 1:
            msg = f"sensitivity sizes must be positive (and below 1 for shares), got {sizes}"
            raise ValueError(msg)

    def collateral_changes(self, scenarios: ScenarioSet) -> tuple[float, ...]:
        """The collateral value changes the collateral shocks need the model's response at."""
        changes = {
            self.shocked_collateral(s.collateral_value_change, sign)
            for s in scenarios.scenarios
            for sign in (-1, 1)
        }
        return tuple(sorted(changes))

    def shocked_collateral(self, change: float, sign: int) -> float:
        """A scenario's collateral value ``change`` compounded with the shock (sign ±1)."""
        return round((1 + change) * (1 + sign * self.collateral) - 1, 12)


def _scaled(flows: ScenarioCashFlows, scale: float, fixed: float) -> ScenarioCashFlows:
    """Collections × ``scale``; every cost but the fixed one per loan scales with them."""
    return ScenarioCashFlows(
        borrower=scale * flows.borrower,
        collateral=scale * flows.collateral,
        costs=scale * (flows.costs - fixed) + fixed,
    )


def sensitivities(
    portfolio: Portfolio | PortfolioSums,
    scenarios: ScenarioSet,
    *,
    target_irr: float | None = None,
    settings: SensitivitySettings | None = None,
) -> pl.DataFrame:
    """How the weighted price moves under each shock, down and up: the rows of a tornado.

    Parameters
    ----------
    portfolio
        Scored loans (with the collateral response measured at
        :meth:`SensitivitySettings.collateral_changes`, else it is interpolated), or their
        sums (:func:`~npl_engine.valuation.portfolio_sums`) measured at the scenarios' changes
        and those.
    scenarios
        Pricing assumptions and scenarios; every shock applies to every scenario, and the
        weighted price is compared with the unshocked weighted price.
    target_irr
        Overrides ``scenarios.pricing.target_irr``.
    settings
        Shock sizes (default :class:`SensitivitySettings`).

    Returns
    -------
    polars.DataFrame
        One row per driver and direction: ``driver`` (collections, delay, collateral,
        servicing_fee, discount_rate), ``shock`` (e.g. ``-10%``, ``+6 months``), ``direction``
        (``down`` or ``up``: the input falls or rises), ``price``, ``price_pct_gbv``,
        ``change`` (price less the base price) and ``change_pct`` (change / base price).

    Raises
    ------
    ValueError
        If a shocked servicing fee breaks the pricing rules (deductions of 1 or more) or a
        shocked rate is not above -1.

    Notes
    -----
    Collections: borrower and collateral collections × (1 ± c); variable costs follow them,
    the fixed cost per loan does not. Delay: each scenario's delay ± d months; collections
    brought before month 1 are collected in month 1. Collateral: each scenario's collateral
    value change compounded with ± c, through the model's collateral response. Servicing fee:
    ± pp, floored at 0. Discount rate: the target IRR ± pp. A buyer expects the price to rise
    with collections, collateral values, and to fall with delay, fees and the discount rate.
    """
    settings = settings or SensitivitySettings()
    pricing = scenarios.pricing
    if target_irr is not None:
        pricing = pricing.model_copy(update={"target_irr": target_irr})
    h = pricing.horizon_months
    weights = {s.name: s.weight for s in scenarios.scenarios}
    gbv = portfolio.gbv

    def price_of(flows: dict[str, ScenarioCashFlows], rate: float = pricing.target_irr) -> float:
        return float(mix_flows(flows, weights).net @ discount_factors(h, rate))

    def shocked(update: dict[str, Any]) -> PricingAssumptions:
        try:
            return PricingAssumptions.model_validate(pricing.model_dump() | update)
        except ValidationError as exc:
            msg = f"the shocked pricing assumptions {update} are invalid: {exc.errors()[0]['msg']}"
            raise ValueError(msg) from exc

    base, _ = weighted_flows(portfolio, scenarios, pricing)
    base_price = price_of(base)
    fixed = pricing.cost_per_loan_per_year / 12.0 * portfolio.n_loans
    c, d = settings.collections, settings.delay_months
    g, fee, dr = settings.collateral, settings.servicing_fee, settings.discount_rate
    rows: list[tuple[str, str, str, float]] = []
    for sign, direction in ((-1, "down"), (1, "up")):
        scale = 1 + sign * c
        rows.append(("collections", f"{sign * c:+.0%}", direction,
                     price_of({k: _scaled(f, scale, fixed) for k, f in base.items()})))  # fmt: skip
        delayed = {
            s.name: scenario_cash_flows(portfolio, s, pricing, delay_change_months=sign * d)
            for s in scenarios.scenarios
        }
        rows.append(("delay", f"{sign * d:+d} months", direction, price_of(delayed)))
        moved = {}
        for s in scenarios.scenarios:
            change = settings.shocked_collateral(s.collateral_value_change, sign)
            shock = s.model_copy(update={"collateral_value_change": change})
            moved[s.name] = scenario_cash_flows(portfolio, shock, pricing)
        rows.append(("collateral", f"{sign * g:+.0%}", direction, price_of(moved)))
        fees = shocked({"servicing_fee": max(pricing.servicing_fee + sign * fee, 0.0)})
        charged = {s.name: scenario_cash_flows(portfolio, s, fees) for s in scenarios.scenarios}
        rows.append(("servicing_fee", f"{sign * fee * 100:+g} pp", direction, price_of(charged)))
        rate = pricing.target_irr + sign * dr
        if not rate > -1:
            msg = f"the shocked target IRR {rate} is not above -1"
            raise ValueError(msg)
        rows.append(("discount_rate", f"{sign * dr * 100:+g} pp", direction, price_of(base, rate)))
    order = ["collections", "delay", "collateral", "servicing_fee", "discount_rate"]
    frame = pl.DataFrame(rows, schema=["driver", "shock", "direction", "price"], orient="row").sort(
        pl.col("driver").replace_strict(order, list(range(len(order)))), "direction"
    )
    return frame.with_columns(
        price_pct_gbv=pl.col("price") / gbv if gbv > 0 else pl.lit(None, pl.Float64),
        change=pl.col("price") - base_price,
        change_pct=(pl.col("price") - base_price) / base_price
        if base_price
        else pl.lit(None, pl.Float64),
    )
