"""A scored portfolio, as the valuation needs it: per-loan monthly curves and their drivers."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
import polars as pl

from npl_engine.scenarios import LEGAL_COST_STAGES, ScenarioSet
from npl_engine.scoring import RecoveryModel, Scores

__all__ = ["DEFAULT_COLLATERAL_GRID", "Portfolio", "build_portfolio", "collateral_grid_for"]

FloatArray = npt.NDArray[np.float64]
BoolArray = npt.NDArray[np.bool_]

#: Collateral value changes at which the model's collateral response is measured for a Monte
#: Carlo (paths fall anywhere in between and are interpolated linearly).
DEFAULT_COLLATERAL_GRID: tuple[float, ...] = (-0.6, -0.45, -0.3, -0.2, -0.1, 0.0, 0.1, 0.2, 0.35)


@dataclass(frozen=True, slots=True)
class Portfolio:
    """Per-loan expected monthly collections and what the valuation scales them by.

    Parameters
    ----------
    loan_id, segment, legal_stage
        Identifiers and groupings (strings), one per loan.
    exposure
        Outstanding principal + accrued interest at cut-off (EAD).
    interest_rate
        Contractual annual rate (the expected-loss discount rate).
    in_legal_stage
        Whether the loan's legal stage incurs legal costs (proceedings and later).
    p_recover
        Calibrated probability of recovery.
    borrower, collateral
        Expected collections per month 1..H, shape (n, H), currency, undiscounted.
    recovery_horizon_share
        Share of each loan's expected collections that falls within the recovery horizon.
    collateral_grid, collateral_response
        Relative collateral value changes (g,) and, per loan, the model's expected collateral
        total at each change relative to the unshocked one (n, g); 1 at change 0, 0 for loans
        with no collateral.
    """

    loan_id: pl.Series
    segment: pl.Series
    legal_stage: pl.Series
    exposure: FloatArray
    interest_rate: FloatArray
    in_legal_stage: BoolArray
    p_recover: FloatArray
    borrower: FloatArray
    collateral: FloatArray
    recovery_horizon_share: FloatArray
    collateral_grid: FloatArray
    collateral_response: FloatArray

    @property
    def n_loans(self) -> int:
        """Number of loans."""
        return int(self.exposure.size)

    @property
    def horizon_months(self) -> int:
        """Months of the curves."""
        return int(self.borrower.shape[1])

    @property
    def gbv(self) -> float:
        """Gross book value: the sum of exposures."""
        return float(self.exposure.sum())

    def collateral_factor(self, change: float) -> FloatArray:
        """Per-loan multiplier of the collateral curve for a relative value change (n,)."""
        weights = collateral_weights(self.collateral_grid, np.array([change]))[0]
        out: FloatArray = self.collateral_response @ weights
        return out

    @classmethod
    def concat(cls, pieces: Sequence[Portfolio]) -> Portfolio:
        """The loans of ``pieces`` (disjoint, on one collateral grid) as one portfolio, in order.

        What :func:`build_portfolio` gives on the whole tape, when each piece was built from a
        chunk or a partition of it: every per-loan array is per loan, so the rows are equal.
        """
        return cls(
            loan_id=pl.concat([p.loan_id for p in pieces]),
            segment=pl.concat([p.segment for p in pieces]),
            legal_stage=pl.concat([p.legal_stage for p in pieces]),
            exposure=np.concatenate([p.exposure for p in pieces]),
            interest_rate=np.concatenate([p.interest_rate for p in pieces]),
            in_legal_stage=np.concatenate([p.in_legal_stage for p in pieces]),
            p_recover=np.concatenate([p.p_recover for p in pieces]),
            borrower=np.concatenate([p.borrower for p in pieces]),
            collateral=np.concatenate([p.collateral for p in pieces]),
            recovery_horizon_share=np.concatenate([p.recovery_horizon_share for p in pieces]),
            collateral_grid=pieces[0].collateral_grid,
            collateral_response=np.concatenate([p.collateral_response for p in pieces]),
        )

    def take(self, rows: npt.NDArray[np.int64]) -> Portfolio:
        """The sub-portfolio of the loans at positions ``rows``."""
        index = pl.Series(rows)
        return Portfolio(
            loan_id=self.loan_id.gather(index),
            segment=self.segment.gather(index),
            legal_stage=self.legal_stage.gather(index),
            exposure=self.exposure[rows],
            interest_rate=self.interest_rate[rows],
            in_legal_stage=self.in_legal_stage[rows],
            p_recover=self.p_recover[rows],
            borrower=self.borrower[rows],
            collateral=self.collateral[rows],
            recovery_horizon_share=self.recovery_horizon_share[rows],
            collateral_grid=self.collateral_grid,
            collateral_response=self.collateral_response[rows],
        )


def collateral_grid_for(scenarios: ScenarioSet, *, monte_carlo: bool) -> tuple[float, ...]:
    """The collateral value changes a valuation needs the model's response at.

    The scenarios' own changes (exact, no interpolation); with a Monte Carlo, also
    :data:`DEFAULT_COLLATERAL_GRID`, since paths move collateral values anywhere around them.
    Each change costs one pass of the collateral model over the secured loans, so a plain
    valuation measures no more than it uses.

    >>> from npl_engine.scenarios import PricingAssumptions, Scenario, ScenarioSet
    >>> down = Scenario(name="down", weight=0.4, collateral_value_change=-0.2,
    ...                 collections_multiplier=0.9, delay_months=3)
    >>> up = down.model_copy(update={"name": "up", "weight": 0.6, "collateral_value_change": 0.1})
    >>> pricing = PricingAssumptions(target_irr=0.12, servicing_fee=0.08, horizon_months=60)
    >>> collateral_grid_for(ScenarioSet(pricing=pricing, scenarios=[down, up]), monte_carlo=False)
    (-0.2, 0.0, 0.1)
    """
    changes = {0.0, *(s.collateral_value_change for s in scenarios.scenarios)}
    if monte_carlo:
        changes |= set(DEFAULT_COLLATERAL_GRID)
    return tuple(sorted(changes))


def collateral_weights(grid: FloatArray, changes: FloatArray) -> FloatArray:
    """Linear-interpolation weights (len(changes), len(grid)) of each change on the grid.

    Changes outside the grid are extrapolated linearly from its two end points, floored so a
    collateral value never goes below zero (change ≥ -1). A one-point grid (only the unshocked
    value) gives every change the response measured there.
    """
    g = np.asarray(grid, dtype=np.float64)
    if g.size == 1:
        return np.ones((np.size(changes), 1))
    c = np.clip(np.asarray(changes, dtype=np.float64), -1.0, None)
    j = np.clip(np.searchsorted(g, c) - 1, 0, g.size - 2)
    w = (c - g[j]) / (g[j + 1] - g[j])
    out = np.zeros((c.size, g.size))
    rows = np.arange(c.size)
    out[rows, j] = 1.0 - w
    out[rows, j + 1] = w
    return out


def build_portfolio(
    model: RecoveryModel,
    loans: pl.DataFrame,
    *,
    scores: Scores | None = None,
    collateral_grid: tuple[float, ...] = DEFAULT_COLLATERAL_GRID,
) -> Portfolio:
    """Score ``loans`` with ``model`` and measure its collateral response on ``collateral_grid``.

    Parameters
    ----------
    model
        A fitted recovery model.
    loans
        Validated contract ``loans``.
    scores
        ``model.score(loans)`` if already computed (it is computed otherwise).
    collateral_grid
        Relative collateral value changes to measure (0 is added if missing); see
        :func:`collateral_grid_for`. Each non-zero change costs one pass of the collateral
        model over the secured loans; the response at 0 comes from the scores.
    """
    grid = np.array(sorted({0.0, *collateral_grid}))
    scored = model.score(loans.lazy()) if scores is None else scores
    h = int(scored.curves["month"].max())  # type: ignore[arg-type]
    n = scored.scores.height
    borrower = scored.curves["expected_borrower"].to_numpy().reshape(n, h)
    collateral = scored.curves["expected_collateral"].to_numpy().reshape(n, h)
    base = scored.scores["expected_collateral"].to_numpy()
    totals = np.empty((n, grid.size))
    totals[:, grid == 0.0] = base[:, None]
    shocked = grid != 0.0
    if shocked.any():
        totals[:, shocked] = model.collateral_totals(loans, grid[shocked].tolist())
    response = np.divide(totals, base[:, None], out=np.zeros_like(totals), where=base[:, None] > 0)
    recovery_months = min(model.definition.horizon_months, h)
    total = borrower.sum(axis=1) + collateral.sum(axis=1)
    early = borrower[:, :recovery_months].sum(axis=1) + collateral[:, :recovery_months].sum(axis=1)
    stage = loans["legal_stage"].cast(pl.String)
    return Portfolio(
        loan_id=loans["loan_id"],
        segment=loans["segment"].cast(pl.String),
        legal_stage=stage,
        exposure=scored.scores["exposure"].to_numpy(),
        interest_rate=loans["interest_rate"].to_numpy().astype(np.float64),
        in_legal_stage=stage.is_in(list(LEGAL_COST_STAGES)).to_numpy(),
        p_recover=scored.scores["p_recover"].to_numpy(),
        borrower=borrower,
        collateral=collateral,
        recovery_horizon_share=np.divide(early, total, out=np.zeros_like(total), where=total > 0),
        collateral_grid=grid,
        collateral_response=response,
    )
