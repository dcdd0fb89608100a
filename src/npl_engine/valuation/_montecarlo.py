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

Every draw is keyed, so results do not depend on the order of the loans or on how they are
split: a path's scenario and factor come from a generator seeded with ``seed`` alone, and the
loan-level ε_ik from a counter-based hash of (``seed``, path k, ``loan_id``) (a SplitMix64
mix of a 64-bit FNV-1a hash of the loan id and a key spawned per path by
:class:`numpy.random.SeedSequence`, mapped to a normal by the inverse normal CDF). The four
products are sums over loans, so a portfolio split into parts gives the sum of its parts'
flows (:func:`path_flows`), and :func:`paths_from_flows` turns them into paths; this is how
``npl_engine.distributed`` runs a Monte Carlo over partitions of the loans.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numba
import numpy as np
import numpy.typing as npt
import polars as pl
import pyarrow as pa
import pyarrow.compute as pc
from scipy.special import ndtri
from scipy.stats import norm

from npl_engine.scenarios import ScenarioSet
from npl_engine.valuation._cashflows import costs_of, shift
from npl_engine.valuation._finance import annual_irr, discount_factors
from npl_engine.valuation._portfolio import Portfolio, collateral_weights

__all__ = [
    "MonteCarloResult",
    "MonteCarloSettings",
    "PathDraws",
    "draw_paths",
    "loan_keys",
    "path_flows",
    "paths_from_flows",
    "simulate_paths",
]

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


@numba.njit(cache=True)
def _fnv1a(offsets: npt.NDArray[np.int64], data: npt.NDArray[np.uint8]) -> npt.NDArray[np.uint64]:
    """64-bit FNV-1a hash of each string (bytes ``data[offsets[i]:offsets[i + 1]]``)."""
    n = offsets.size - 1
    out = np.empty(n, dtype=np.uint64)
    prime = np.uint64(1099511628211)
    for i in range(n):
        h = np.uint64(14695981039346656037)
        for j in range(offsets[i], offsets[i + 1]):
            h = (h ^ np.uint64(data[j])) * prime
        out[i] = h
    return out


@numba.njit(cache=True)
def _splitmix64(x: np.uint64) -> np.uint64:
    """SplitMix64's finaliser: a bijection of 64-bit integers that mixes every bit."""
    x = x + np.uint64(0x9E3779B97F4A7C15)
    x = (x ^ (x >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    x = (x ^ (x >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return x ^ (x >> np.uint64(31))


@numba.njit(cache=True)
def _uniforms(
    loans: npt.NDArray[np.uint64], paths: npt.NDArray[np.uint64]
) -> npt.NDArray[np.float64]:
    """Uniforms in (0, 1), shape (paths, loans): one per (path key, loan key), 53 bits each."""
    out = np.empty((paths.size, loans.size))
    scale = 2.0**-53
    for k in range(paths.size):
        for i in range(loans.size):
            x = _splitmix64(_splitmix64(loans[i]) ^ paths[k])
            out[k, i] = (float(x >> np.uint64(11)) + 0.5) * scale
    return out


def loan_keys(loan_id: pl.Series) -> npt.NDArray[np.uint64]:
    """A stable 64-bit key per loan: the FNV-1a hash of its ``loan_id`` (UTF-8 bytes).

    The same id gives the same key in every process, version and partition; the Monte Carlo
    keys each loan's draws on it and ``npl_engine.distributed`` partitions loans by it.

    >>> loan_keys(pl.Series(["a"])).tolist()  # FNV-1a 64 of b"a"
    [12638187200555641996]
    """
    arr = loan_id.cast(pl.String).rechunk().to_arrow()
    if isinstance(arr, pa.ChunkedArray):
        arr = arr.combine_chunks()
    arr = pc.cast(arr, pa.large_string())
    buffers = arr.buffers()
    offsets = np.frombuffer(buffers[1], dtype=np.int64)[arr.offset : arr.offset + len(arr) + 1]
    data = (
        np.frombuffer(buffers[2], dtype=np.uint8)
        if buffers[2] is not None
        else np.zeros(0, np.uint8)
    )
    return _fnv1a(np.ascontiguousarray(offsets), data)


@dataclass(frozen=True, slots=True)
class PathDraws:
    """What every path shares across loans: its scenario, its factor Z and its key.

    Parameters
    ----------
    scenario
        Index of each path's scenario, shape (paths,).
    factor
        Systematic factor Z of each path.
    key
        64-bit key of each path (spawned from the seed), which keys the loans' draws.
    """

    scenario: npt.NDArray[np.int64]
    factor: FloatArray
    key: npt.NDArray[np.uint64]


def draw_paths(scenarios: ScenarioSet, settings: MonteCarloSettings) -> PathDraws:
    """Draw each path's scenario (by weight), factor and key from ``settings.seed``."""
    rng = np.random.default_rng(settings.seed)
    weights = np.array([s.weight for s in scenarios.scenarios])
    scenario_of = rng.choice(weights.size, size=settings.n_paths, p=weights / weights.sum())
    factor = rng.standard_normal(settings.n_paths)
    key = np.array(
        [
            c.generate_state(1, np.uint64)[0]
            for c in np.random.SeedSequence(settings.seed).spawn(settings.n_paths)
        ],
        dtype=np.uint64,
    )
    return PathDraws(scenario=scenario_of.astype(np.int64), factor=factor, key=key)


def _horizon(portfolio: Portfolio, scenarios: ScenarioSet) -> int:
    h = scenarios.pricing.horizon_months
    if h > portfolio.horizon_months:
        msg = f"horizon {h} exceeds the {portfolio.horizon_months} months the model predicts"
        raise ValueError(msg)
    return h


def path_flows(
    portfolio: Portfolio,
    scenarios: ScenarioSet,
    settings: MonteCarloSettings,
    draws: PathDraws,
    *,
    recovery_threshold: float,
    progress: Callable[[int, int], None] | None = None,
) -> FloatArray:
    """Sums over the loans of each path's scaled curves, before the scenario's delay and costs.

    Returns
    -------
    numpy.ndarray
        Shape (4, paths, H): borrower, borrower of loans in legal stages, collateral sales,
        collateral sales of loans in legal stages. Sums over loans: the flows of a portfolio
        are the sum of the flows of any split of it into parts.
    """
    h = _horizon(portfolio, scenarios)
    up, down = _multipliers(portfolio, recovery_threshold)
    cutoff = norm.ppf(1.0 - np.clip(portfolio.p_recover, 1e-12, 1.0 - 1e-12))
    legal = portfolio.in_legal_stage.astype(np.float64)
    b, c = portfolio.borrower[:, :h], portfolio.collateral[:, :h]
    b_legal, c_legal = b * legal[:, None], c * legal[:, None]
    keys = loan_keys(portfolio.loan_id)
    rho, sigma = settings.asset_correlation, settings.collateral_volatility
    n_paths = draws.factor.size
    out = np.zeros((4, n_paths, h))
    for start in range(0, n_paths, settings.chunk_paths):
        stop = min(start + settings.chunk_paths, n_paths)
        z = draws.factor[start:stop]
        eps = ndtri(_uniforms(keys, draws.key[start:stop]))
        latent = np.sqrt(rho) * z[:, None] + np.sqrt(1.0 - rho) * eps
        mult = np.where(latent > cutoff[None, :], up[None, :], down[None, :])
        change = np.array(
            [scenarios.scenarios[i].collateral_value_change for i in draws.scenario[start:stop]]
        )
        moved = (1.0 + change) * np.exp(sigma * z - 0.5 * sigma**2) - 1.0
        factor_c = (
            collateral_weights(portfolio.collateral_grid, moved) @ portfolio.collateral_response.T
        )
        mult_c = mult * factor_c
        out[:, start:stop] = (mult @ b, mult @ b_legal, mult_c @ c, mult_c @ c_legal)
        if progress is not None:
            progress(stop, n_paths)
    return out


def paths_from_flows(
    flows: FloatArray,
    scenarios: ScenarioSet,
    settings: MonteCarloSettings,
    draws: PathDraws,
    *,
    n_loans: int,
    target_irr: float | None = None,
    price: float | None = None,
) -> MonteCarloResult:
    """Apply each path's scenario (multiplier, delay, costs) to summed :func:`path_flows`.

    ``n_loans`` is the number of loans the flows sum over (the fixed cost per loan).
    """
    pricing = scenarios.pricing
    rate = pricing.target_irr if target_irr is None else target_irr
    h = flows.shape[-1]
    net = np.zeros((draws.factor.size, h))
    gross = np.zeros((draws.factor.size, h))
    for j, i in enumerate(draws.scenario):
        s = scenarios.scenarios[i]
        m = s.collections_multiplier
        fb, fbl, fc, fcl = (shift(x[j], s.delay_months, h) for x in flows)
        fb, fbl = m * fb, m * fbl
        costs = costs_of(fb, fc, legal_borrower=fbl, legal_collateral=fcl, n_loans=n_loans,
                         pricing=pricing)  # fmt: skip
        gross[j] = fb + fc
        net[j] = gross[j] - costs
    pv = net @ discount_factors(h, rate)
    irr = np.array([annual_irr(price, row) for row in net]) if price else np.full(pv.size, np.nan)
    return MonteCarloResult(
        scenario=draws.scenario,
        factor=draws.factor,
        net=net,
        price=pv,
        irr_at_price=irr,
        settings=settings,
        gross=gross,
    )


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

    Notes
    -----
    :func:`draw_paths`, then :func:`path_flows` and :func:`paths_from_flows`; the same seed
    gives the same paths for the same loans in any order or split.
    """
    _horizon(portfolio, scenarios)
    draws = draw_paths(scenarios, settings)
    flows = path_flows(
        portfolio,
        scenarios,
        settings,
        draws,
        recovery_threshold=recovery_threshold,
        progress=progress,
    )
    return paths_from_flows(
        flows,
        scenarios,
        settings,
        draws,
        n_loans=portfolio.n_loans,
        target_irr=target_irr,
        price=price,
    )
