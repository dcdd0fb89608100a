"""Financial maths against hand-worked values and numpy-financial / pyxirr."""

from __future__ import annotations

import math

import numpy as np
import numpy_financial as npf
import pytest
import pyxirr
from hypothesis import given
from hypothesis import strategies as st

from npl_engine.valuation import (
    annual_irr,
    discount_factors,
    moic,
    present_value,
    weighted_average_life,
)


def test_discount_factor_of_a_year_is_one_over_one_plus_rate() -> None:
    """Month 12 at 12 % is discounted by 1 / 1.12, month 6 by 1 / sqrt(1.12)."""
    d = discount_factors(12, 0.12)
    assert d[11] == pytest.approx(1 / 1.12, rel=1e-15)
    assert d[5] == pytest.approx(1 / math.sqrt(1.12), rel=1e-15)


def test_present_value_matches_numpy_financial_at_the_equivalent_monthly_rate() -> None:
    """PV of 36 level payments of 100 at 10 % a year equals npf.pv at (1.10)**(1/12) - 1.

    Working: the contract discounts month t by (1 + r) ** (t / 12), i.e. by (1 + m) ** t with
    m = (1 + r) ** (1/12) - 1, so PV = -npf.pv(m, 36, 100) (payments at period ends).
    """
    m = 1.10 ** (1 / 12) - 1
    expected = -npf.pv(m, 36, 100.0)
    assert float(present_value(np.full(36, 100.0), 0.10)) == pytest.approx(expected, rel=1e-12)


def test_hand_worked_npv() -> None:
    """60 at month 6 and 60 at month 12 at 12 %: 60 / 1.12**0.5 + 60 / 1.12 = 110.267...

    Working: 1.12 ** 0.5 = 1.0583005244; 60 / 1.0583005244 = 56.6947; 60 / 1.12 = 53.5714;
    sum = 110.2661.
    """
    flows = np.zeros(12)
    flows[5] = flows[11] = 60.0
    expected = 60 / 1.12**0.5 + 60 / 1.12
    assert float(present_value(flows, 0.12)) == pytest.approx(expected, rel=1e-12)
    assert float(present_value(flows, 0.12)) == pytest.approx(110.2661, abs=1e-4)


def test_per_row_rates_discount_each_row_at_its_own_rate() -> None:
    """A (2, H) flow matrix with two rates gives each row's own present value."""
    flows = np.array([[0.0] * 11 + [105.0], [0.0] * 11 + [110.0]])
    pv = present_value(flows, np.array([0.05, 0.10]))
    np.testing.assert_allclose(pv, [100.0, 100.0], rtol=1e-12)


def test_irr_of_one_payment_a_year_later() -> None:
    """Paying 100 for 112 in twelve months is a 12 % annual IRR."""
    assert annual_irr(100.0, np.array([0.0] * 11 + [112.0])) == pytest.approx(0.12, rel=1e-12)


@given(
    flows=st.lists(st.floats(0.0, 1e6).map(lambda x: round(x, 2)), min_size=2, max_size=72).filter(
        lambda f: sum(f) > 1
    ),
    fraction=st.floats(0.2, 1.5),
)
def test_irr_agrees_with_numpy_financial_and_pyxirr(flows: list[float], fraction: float) -> None:
    """The annual IRR is npf.irr / pyxirr.irr of the monthly flows, annualised, to 1e-9."""
    cf = np.array(flows)
    price = fraction * cf.sum() / 1.5
    ours = annual_irr(price, cf)
    reference = pyxirr.irr(np.concatenate(([-price], cf)), silent=True)
    if reference is None or not math.isfinite(ours) or not -0.5 < reference < 1.0:
        return  # no IRR, or one too extreme to annualise (beyond ±50-100 % a month)
    assert ours == pytest.approx((1 + reference) ** 12 - 1, rel=1e-9, abs=1e-12)
    npf_monthly = npf.irr(np.concatenate(([-price], cf)))
    if math.isfinite(npf_monthly) and -0.5 < npf_monthly < 1.0:
        assert ours == pytest.approx((1 + npf_monthly) ** 12 - 1, rel=1e-6, abs=1e-9)


@given(st.lists(st.floats(1.0, 1e6), min_size=1, max_size=60), st.floats(0.0, 0.5))
def test_present_value_at_the_irr_is_the_price(flows: list[float], rate: float) -> None:
    """Discounting at the IRR of a price gives back that price."""
    cf = np.array(flows)
    price = float(present_value(cf, rate))
    assert annual_irr(price, cf) == pytest.approx(rate, rel=1e-7, abs=1e-9)


def test_irr_without_positive_flows_is_nan() -> None:
    """No cash back (or no price) has no IRR."""
    assert math.isnan(annual_irr(100.0, np.zeros(12)))
    assert math.isnan(annual_irr(0.0, np.ones(12)))


def test_moic_and_weighted_average_life() -> None:
    """MOIC is cash / price; WAL of 50 at month 12 and 50 at month 36 is 2 years."""
    assert moic(100.0, np.array([60.0, 90.0])) == pytest.approx(1.5)
    principal = np.zeros(36)
    principal[11] = principal[35] = 50.0
    assert weighted_average_life(principal) == pytest.approx(2.0)
