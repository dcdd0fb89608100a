"""Monte Carlo of portfolio outcomes: a systematic factor plus loan-level randomness.

Each path k:

1. draws a scenario s by its weight (so the distribution covers the scenario mix);
2. draws a systematic factor Z_k ~ N(0, 1) (the state of the economy over the workout);
3. moves every collateral value by the scenario's change and a common market move:
   ``1 + Δ_k = (1 + Δ_s) · exp(σ_V Z_k − σ_V² / 2)``;
4. decides which loans recover, one-factor Gaussian (Vasicek) style: loan i recovers when
   ``√ρ Z_k + √(1 − ρ) ε_ik > Φ⁻¹(1 − p_i)``, so each loan recovers with its own calibrated
   probability p_i and recoveries move together through Z_k;
5. scales each loan's expected curve by R⁺_i if it recovers and R⁻_i if not, with
   ``p_i R⁺_i + (1 − p_i) R⁻_i = 1`` (each loan's expected curve is preserved) and
   ``R⁺_i = min(max(1, θ / r_i), 1 / p_i)``, r_i being the loan's expected collections within
   the recovery horizon over its exposure (a recovering loan collects at least the threshold θ
   on average, where its mean allows);
6. applies the scenario's collections multiplier to borrower payments, the collateral response
   at Δ_k to sale proceeds, the scenario's delay, and the costs.

Memory grows with loans × chunk of paths (a chunk of paths at a time), never with
loans × paths × months: per chunk, four matrix products (paths × loans) @ (loans × months).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
from scipy.stats import norm

from npl_engine.scenarios import ScenarioSet
from npl_engine.valuation._cashflows import costs_of, shift
from npl_engine.valuation._finance import annual_irr, discount_factors
from npl_engine.valuation._portfolio import Portfolio, collateral_weights

__all__ = ["MonteCarloResult", "MonteCarloSettings", "simulate_paths"]

FloatArray = npt.NDArray[np.float64]
PERCENTILES: tuple[int, ...] = (5, 25, 50, 75, 95)


@dataclass(frozen=True, slots=True)
class MonteCarloSettings:
    """Settings of the portfolio Monte Carlo.

    Parameters
    ----------
    n_paths
        Number of simulated paths.
    seed
        Seed of every draw: same seed, same paths.
    asset_correlation
        ρ, the share of each loan's recovery variance that is systematic (Basel uses 0.12 to
        0.24 for defaults; recoveries of defaulted loans move together somewhat less).
    collateral_volatility
        σ_V, the standard deviation of the common log move of collateral values over the
        workout.
    chunk_paths
        Paths simulated at once (memory ∝ loans × chunk_paths).
    """

    n_paths: int = 1000
    seed: int = 0
    asset_correlation: float = 0.10
    collateral_volatility: float = 0.10
    chunk_paths: int = 50

    def __post_init__(self) -> None:
        if self.n_paths < 1:
            msg = f"the number of simulations must be at least 1, got {self.n_paths}"
            raise ValueError(msg)
        if not 0.0 <= self.asset_correlation < 1.0:
            msg = f"asset_correlation must be in [0, 1), got {self.asset_correlation}"
            raise ValueError(msg)
        if self.collateral_volatility < 0:
            msg = f"collateral_volatility must be >= 0, got {self.collateral_volatility}"
            raise ValueError(msg)


@dataclass(frozen=True, slots=True)
class MonteCarloResult:
    """Simulated paths.

    Parameters
    ----------
    scenario
        Index of each path's scenario, shape (paths,).
    factor
        Systematic factor Z of each path.
    net
        Net collections per path and month, shape (paths, H).
    price
        Present value of each path's net collections at the target IRR.
    irr_at_price
        Annual IRR of each path at the given price (NaN without a price).
    gross
        Gross collections per path and month, shape (paths, H) (the base of the servicer's
        fee, which tranche triggers may defer).
    """

    scenario: npt.NDArray[np.int64]
    factor: FloatArray
    net: FloatArray
    price: FloatArray
    irr_at_price: FloatArray
    settings: MonteCarloSettings
    gross: FloatArray | None = None

    def percentiles(self) -> dict[str, dict[str, float | None]]:
        """P5, P25, P50, P75 and P95 of net collections, price and IRR at the price."""
        out: dict[str, dict[str, float | None]] = {}
        for name, values in (
            ("net_collections", self.net.sum(axis=1)),
            ("price", self.price),
            ("irr_at_price", self.irr_at_price),
        ):
            finite = values[np.isfinite(values)]
            out[name] = {
                f"p{q}": (float(np.percentile(finite, q)) if finite.size else None)
                for q in PERCENTILES
            }
        return out

    def to_dict(self, scenario_names: tuple[str, ...]) -> dict[str, Any]:
        """JSON-ready summary."""
        counts = np.bincount(self.scenario, minlength=len(scenario_names))
        return {
            "n_paths": int(self.scenario.size),
            "seed": self.settings.seed,
            "asset_correlation": self.settings.asset_correlation,
            "collateral_volatility": self.settings.collateral_volatility,
            "paths_per_scenario": dict(zip(scenario_names, counts.tolist(), strict=True)),
            "mean_price": float(self.price.mean()),
            "percentiles": self.percentiles(),
        }


def _multipliers(portfolio: Portfolio, threshold: float) -> tuple[FloatArray, FloatArray]:
    """R⁺ and R⁻ per loan (see the module docstring)."""
    p = np.clip(portfolio.p_recover, 1e-9, 1.0)
    total = portfolio.borrower.sum(axis=1) + portfolio.collateral.sum(axis=1)
    early_rate = portfolio.recovery_horizon_share * total / np.maximum(portfolio.exposure, 1e-12)
    up = np.minimum(np.maximum(1.0, threshold / np.maximum(early_rate, 1e-12)), 1.0 / p)
    down = np.where(p < 1.0, (1.0 - p * up) / np.maximum(1.0 - p, 1e-12), 1.0)
    return up, np.maximum(down, 0.0)


def simulate_paths(
    portfolio: Portfolio,
    scenarios: ScenarioSet,
    settings: MonteCarloSettings,
    *,
    recovery_threshold: float,
    target_irr: float | None = None,
    price: float | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> MonteCarloResult:
    """Simulate ``settings.n_paths`` portfolio outcomes.

    Parameters
    ----------
    portfolio
        Scored loans.
    scenarios
        Pricing assumptions and weighted scenarios (a path draws one by weight).
    settings
        Paths, seed, correlation and collateral volatility.
    recovery_threshold
        The recovery definition's threshold θ (share of exposure).
    target_irr
        Discount rate for each path's price (default: the scenario file's).
    price
        Price paid: adds each path's IRR.
    progress
        Called with (paths done, paths in all) after each chunk.
    """
    pricing = scenarios.pricing
    rate = pricing.target_irr if target_irr is None else target_irr
    h = pricing.horizon_months
    if h > portfolio.horizon_months:
        msg = f"horizon {h} exceeds the {portfolio.horizon_months} months the model predicts"
        raise ValueError(msg)
    rng = np.random.default_rng(settings.seed)
    n = portfolio.n_loans
    up, down = _multipliers(portfolio, recovery_threshold)
    cutoff = norm.ppf(1.0 - np.clip(portfolio.p_recover, 1e-12, 1.0 - 1e-12))
    legal = portfolio.in_legal_stage.astype(np.float64)
    b, c = portfolio.borrower[:, :h], portfolio.collateral[:, :h]
    b_legal, c_legal = b * legal[:, None], c * legal[:, None]
    weights = np.array([s.weight for s in scenarios.scenarios])
    discount = discount_factors(h, rate)
    rho, sigma = settings.asset_correlation, settings.collateral_volatility

    scenario_of = rng.choice(weights.size, size=settings.n_paths, p=weights / weights.sum())
    factor = rng.standard_normal(settings.n_paths)
    net = np.zeros((settings.n_paths, h))
    gross = np.zeros((settings.n_paths, h))
    for start in range(0, settings.n_paths, settings.chunk_paths):
        stop = min(start + settings.chunk_paths, settings.n_paths)
        z = factor[start:stop]
        latent = np.sqrt(rho) * z[:, None] + np.sqrt(1.0 - rho) * rng.standard_normal((z.size, n))
        mult = np.where(latent > cutoff[None, :], up[None, :], down[None, :])
        chunk_scen = [scenarios.scenarios[i] for i in scenario_of[start:stop]]
        change = np.array([s.collateral_value_change for s in chunk_scen])
        moved = (1.0 + change) * np.exp(sigma * z - 0.5 * sigma**2) - 1.0
        factor_c = (
            collateral_weights(portfolio.collateral_grid, moved) @ portfolio.collateral_response.T
        )
        mult_c = mult * factor_c
        flows = (mult @ b, mult @ b_legal, mult_c @ c, mult_c @ c_legal)
        for j, s in enumerate(chunk_scen):
            m = s.collections_multiplier
            fb, fbl, fc, fcl = (shift(x[j], s.delay_months, h) for x in flows)
            fb, fbl = m * fb, m * fbl
            costs = costs_of(fb, fc, legal_borrower=fbl, legal_collateral=fcl, n_loans=n,
                             pricing=pricing)  # fmt: skip
            gross[start + j] = fb + fc
            net[start + j] = gross[start + j] - costs
        if progress is not None:
            progress(stop, settings.n_paths)
    pv = net @ discount
    irr = np.array([annual_irr(price, row) for row in net]) if price else np.full(pv.size, np.nan)
    return MonteCarloResult(
        scenario=scenario_of.astype(np.int64),
        factor=factor,
        net=net,
        price=pv,
        irr_at_price=irr,
        settings=settings,
        gross=gross,
    )
