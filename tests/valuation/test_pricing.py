"""Pricing: hand-computed prices, scenario mechanics and invariants (Hypothesis)."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from npl_engine.valuation import loan_cash_flows, scenario_cash_flows, value_portfolio
from valuation.builders import base, make_portfolio, scenario_set

H = 12
curves = arrays(np.float64, (3, H), elements=st.floats(0.0, 1e4))


def test_price_of_known_curves_is_hand_computed() -> None:
    """Two loans paying 100 and 50 in month 12 at 12 % with an 8 % fee: 0.92 × 150 / 1.12.

    Working: gross 150 in month 12; fee 0.08 × 150 = 12; net 138; PV = 138 / 1.12 = 123.2143.
    """
    borrower = np.zeros((2, H))
    borrower[0, 11], borrower[1, 11] = 100.0, 50.0
    v = value_portfolio(make_portfolio(borrower), scenario_set(servicing_fee=0.08))
    assert v.weighted.price == pytest.approx(138 / 1.12, rel=1e-12)
    assert v.scenarios[0].gross_collections == pytest.approx(150.0)
    assert v.scenarios[0].net_collections == pytest.approx(138.0)
    assert v.weighted.price_pct_gbv == pytest.approx(138 / 1.12 / 2000.0)


def test_costs_follow_the_documented_rules() -> None:
    """Fee on gross, legal share on legal loans, sale cost on sale cash, fixed cost per loan.

    Working (month 1, loan A legal with borrower 100, loan B collateral 200): fee 0.1 × 300 = 30;
    legal 0.05 × 100 = 5; sale cost 0.02 × 200 = 4; fixed 120 / 12 × 2 loans = 20; total 59.
    """
    borrower = np.zeros((2, H))
    collateral = np.zeros((2, H))
    borrower[0, 0], collateral[1, 0] = 100.0, 200.0
    pf = make_portfolio(borrower, collateral, legal=np.array([True, False]))
    sc = scenario_set(
        servicing_fee=0.1, legal_cost_share=0.05, collateral_sale_cost=0.02,
        cost_per_loan_per_year=120.0,
    )  # fmt: skip
    flows = scenario_cash_flows(pf, sc.scenarios[0], sc.pricing)
    assert flows.costs[0] == pytest.approx(59.0)
    assert flows.costs[1] == pytest.approx(20.0)
    per_loan = loan_cash_flows(pf, sc.scenarios[0], sc.pricing)
    np.testing.assert_allclose(per_loan.sum(axis=0), flows.net, rtol=1e-12)


def test_irr_at_the_computed_price_is_the_target() -> None:
    """Paying the price computed at 12 % earns exactly 12 %; MOIC is net / price."""
    borrower = np.tile(np.linspace(10, 100, H), (3, 1))
    pf = make_portfolio(borrower)
    price = value_portfolio(pf, scenario_set()).weighted.price
    v = value_portfolio(pf, scenario_set(), price=price)
    assert v.weighted.irr_at_price == pytest.approx(0.12, rel=1e-9)
    assert v.weighted.moic == pytest.approx(borrower.sum() / price)


def test_weighted_price_is_the_weight_average_and_cash_flows_are_written() -> None:
    """The weighted price is Σ weight × price; cashflows hold each scenario and the mix."""
    borrower = np.tile(np.linspace(10, 100, H), (3, 1))
    sc = scenario_set(base("a", 0.25), base("b", 0.75, delay_months=3, collections_multiplier=0.5))
    v = value_portfolio(make_portfolio(borrower), sc)
    a, b = v.scenarios
    assert v.weighted.price == pytest.approx(0.25 * a.price + 0.75 * b.price, rel=1e-12)
    assert set(v.cash_flows["scenario"].unique()) == {"a", "b", "weighted"}
    pv = v.cash_flows.filter(scenario="weighted")["present_value"].sum()
    assert pv == pytest.approx(v.weighted.price, rel=1e-12)


def test_delay_loses_what_passes_the_horizon() -> None:
    """A 3-month delay moves month-10 cash to month 13: beyond a 12-month horizon, lost."""
    borrower = np.zeros((1, H))
    borrower[0, 9] = 100.0
    borrower[0, 2] = 50.0
    sc = scenario_set(base(delay_months=3))
    flows = scenario_cash_flows(make_portfolio(borrower), sc.scenarios[0], sc.pricing)
    assert flows.gross.sum() == pytest.approx(50.0)
    assert flows.gross[5] == pytest.approx(50.0)


def test_horizon_beyond_the_model_is_refused() -> None:
    """Valuing 24 months with 12-month curves is an error naming both horizons."""
    with pytest.raises(ValueError, match=r"24.*12"):
        value_portfolio(make_portfolio(np.ones((1, H))), scenario_set(horizon_months=24))


@given(b=curves, c=curves, r1=st.floats(-0.5, 1.0), r2=st.floats(-0.5, 1.0))
def test_price_falls_as_the_target_irr_rises(
    b: np.ndarray, c: np.ndarray, r1: float, r2: float
) -> None:
    """A higher discount rate never gives a higher price."""
    pf = make_portfolio(b, c)
    low, high = sorted((r1, r2))
    p_low = value_portfolio(pf, scenario_set(target_irr=low)).weighted.price
    p_high = value_portfolio(pf, scenario_set(target_irr=high)).weighted.price
    assert p_high <= p_low * (1 + 1e-12) + 1e-9


@given(b=curves, c=curves, fee=st.floats(0.0, 0.5))
def test_unshocked_scenario_equals_the_plain_curves(
    b: np.ndarray, c: np.ndarray, fee: float
) -> None:
    """A scenario with no shocks values exactly the model's curves, net of the fee."""
    sc = scenario_set(servicing_fee=fee)
    v = value_portfolio(make_portfolio(b, c), sc)
    expected = ((b + c).sum(axis=0) * (1 - fee) / 1.12 ** (np.arange(1, H + 1) / 12)).sum()
    assert v.weighted.price == pytest.approx(expected, rel=1e-9, abs=1e-6)


@given(b=curves, c=curves, delay=st.integers(0, 15))
def test_a_delay_never_raises_the_price(b: np.ndarray, c: np.ndarray, delay: int) -> None:
    """Collections later (or lost past the horizon) are never worth more."""
    pf = make_portfolio(b, c)
    now = value_portfolio(pf, scenario_set()).weighted.price
    later = value_portfolio(pf, scenario_set(base(delay_months=delay))).weighted.price
    assert later <= now * (1 + 1e-12) + 1e-9


@given(b=curves, c=curves, fall=st.floats(0.0, 0.99))
def test_a_collateral_fall_never_raises_the_price(
    b: np.ndarray, c: np.ndarray, fall: float
) -> None:
    """Lower collateral values never give a higher price."""
    pf = make_portfolio(b, c)
    now = value_portfolio(pf, scenario_set()).weighted.price
    shocked = value_portfolio(pf, scenario_set(base(collateral_value_change=-fall))).weighted.price
    assert shocked <= now * (1 + 1e-12) + 1e-9


def test_zero_collections_are_worth_zero() -> None:
    """No cash, no value (and no IRR at any price)."""
    v = value_portfolio(make_portfolio(np.zeros((4, H))), scenario_set(), price=10.0)
    assert v.weighted.price == 0.0
    assert v.weighted.irr_at_price != v.weighted.irr_at_price  # NaN


@settings(max_examples=25)
@given(b=curves, c=curves, seed=st.integers(0, 2**16))
def test_a_shuffled_tape_gives_the_same_totals(b: np.ndarray, c: np.ndarray, seed: int) -> None:
    """Loan order does not matter."""
    order = np.random.default_rng(seed).permutation(b.shape[0])
    one = value_portfolio(make_portfolio(b, c), scenario_set())
    two = value_portfolio(make_portfolio(b[order], c[order]), scenario_set())
    assert two.weighted.price == pytest.approx(one.weighted.price, rel=1e-12, abs=1e-9)
