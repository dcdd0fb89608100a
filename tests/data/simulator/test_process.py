"""The workout process: exact expectations against hand-worked values and Monte Carlo."""

from __future__ import annotations

import math

import numpy as np
import pytest

from npl_engine.data.simulator._process import (
    WORKOUT_MONTHS,
    WorkoutParams,
    draw,
    expected_monthly,
    realised_cumulative,
    recovery_probability,
)


def _params(n: int = 1, **overrides: object) -> WorkoutParams:
    """One-loan parameters: exposure 1000, a 10-month plan of 70, no trickle, unsecured."""
    base: dict[str, object] = {
        "exposure": np.full(n, 1000.0),
        "p_regime": np.tile([1.0, 0.0, 0.0], (n, 1)),
        "plan_start_hazard": np.full(n, 0.1),
        "plan_months": np.full(n, 10, dtype=np.int64),
        "instalment": np.full(n, 70.0),
        "plan_break": np.full(n, 0.05),
        "settle_hazard": np.full(n, 0.05),
        "settle_share": np.full(n, 0.6),
        "trickle_base": np.zeros(n),
        "trickle_period": np.ones(n, dtype=np.int64),
        "secured": np.zeros(n, dtype=bool),
        "sale_lag": np.full(n, 5, dtype=np.int64),
        "sale_hazard": np.full(n, 0.1),
        "sale_price": np.zeros((n, 3)),
    }
    base.update(overrides)
    return WorkoutParams(**base)  # type: ignore[arg-type]


def test_plan_recovery_probability_matches_hand_computation() -> None:
    """A plan needing 8 of 70 to reach 500 recovers iff it starts by month 17 and survives 7 breaks.

    P = (1 - 0.9**17) * 0.95**7: the plan must start in months 1..17 (so 8 instalments fit in
    24 months) and not break after any of the first 7 instalments.
    """
    p = recovery_probability(_params(), horizon_months=24, threshold=0.5)
    assert p[0] == pytest.approx((1 - 0.9**17) * 0.95**7, rel=1e-12)


def test_settlement_recovery_probability_matches_hand_computation() -> None:
    """A settler paying 60 % recovers iff the lump comes within 24 months: 1 - 0.95**24."""
    params = _params(p_regime=np.array([[0.0, 1.0, 0.0]]))
    p = recovery_probability(params, horizon_months=24, threshold=0.5)
    assert p[0] == pytest.approx(1 - 0.95**24, rel=1e-12)
    # A 60 % lump never reaches a 70 % threshold.
    assert recovery_probability(params, horizon_months=24, threshold=0.7)[0] == 0.0


def test_sale_recovery_probability_matches_hand_computation() -> None:
    """A sale after a 5-month lag recovers when its price clears the threshold: luck-weighted.

    Prices 400 / 500 / 600 against a threshold of 500: the two upper outcomes (p = 0.75) count,
    and the sale happens by month 24 with probability 1 - 0.9**(24 - 5).
    """
    params = _params(
        p_regime=np.array([[0.0, 0.0, 1.0]]),
        secured=np.array([True]),
        sale_price=np.array([[400.0, 500.0, 600.0]]),
    )
    p = recovery_probability(params, horizon_months=24, threshold=0.5)
    assert p[0] == pytest.approx(0.75 * (1 - 0.9**19), rel=1e-12)


def test_expected_sale_proceeds_are_capped_at_what_is_owed() -> None:
    """Proceeds are capped at the exposure: total = P(sale by 60) × E[min(price, 1000)]."""
    params = _params(
        p_regime=np.array([[0.0, 0.0, 1.0]]),
        secured=np.array([True]),
        sale_price=np.array([[800.0, 1000.0, 1200.0]]),
    )
    borrower, collateral = expected_monthly(params)
    expected = (1 - 0.9 ** (WORKOUT_MONTHS - 5)) * (0.25 * 800 + 0.5 * 1000 + 0.25 * 1000)
    assert borrower.sum() == 0.0
    assert collateral.sum() == pytest.approx(expected, rel=1e-12)
    assert collateral[0, :5].sum() == 0.0, "nothing is sold during the legal lag"


def test_expected_plan_collections_match_closed_form() -> None:
    """Plan collections sum the survival of each instalment over start months (no truncation)."""
    params = _params(plan_months=np.array([10]))
    borrower, _ = expected_monthly(params)
    total = sum(
        0.1 * 0.9 ** (j - 1) * 70.0 * sum(0.95**i for i in range(min(10, WORKOUT_MONTHS - j + 1)))
        for j in range(1, WORKOUT_MONTHS + 1)
    )
    assert borrower.sum() == pytest.approx(total, rel=1e-12)


def test_expectations_match_monte_carlo_draws() -> None:
    """Averages of 200,000 draws of a mixed loan match the exact curve and recovery probability."""
    n = 200_000
    params = _params(
        n,
        p_regime=np.tile([0.3, 0.3, 0.4], (n, 1)),
        trickle_base=np.full(n, 3.0),
        trickle_period=np.full(n, 2, dtype=np.int64),
        secured=np.ones(n, dtype=bool),
        sale_price=np.tile([300.0, 450.0, 700.0], (n, 1)),
    )
    draws = draw(params, np.random.default_rng(7))
    by_24, by_60 = realised_cumulative(params, draws, (24, 60))
    borrower, collateral = expected_monthly(params)
    exact_60 = borrower[0].sum() + collateral[0].sum()
    exact_24 = borrower[0, :24].sum() + collateral[0, :24].sum()
    se_60 = by_60.std() / math.sqrt(n)
    se_24 = by_24.std() / math.sqrt(n)
    assert abs(by_60.mean() - exact_60) < 4 * se_60
    assert abs(by_24.mean() - exact_24) < 4 * se_24
    p = recovery_probability(params, horizon_months=24, threshold=0.5)[0]
    realised = (by_24 >= 500.0).mean()
    assert abs(realised - p) < 4 * math.sqrt(p * (1 - p) / n)
