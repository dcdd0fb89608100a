"""Financial maths, in one place: discounting, IRR, MOIC and weighted-average life.

Conventions (used everywhere in the engine):

- Cash flows fall at the **end** of month t = 1, 2, … after the cut-off date (month 0 is the
  cut-off, when a price is paid).
- A rate is a decimal per year; a cash flow in month t is discounted by ``(1 + r) ** (t / 12)``
  (monthly compounding equivalent to the annual rate, as the data contract says).
- An IRR is the annual rate r solving ``-price + Σ_t cf_t (1 + r) ** (-t / 12) = 0``; it is found
  as a monthly IRR (pyxirr, Rust) and annualised as ``(1 + m) ** 12 - 1``.
"""

from __future__ import annotations

import math

import numpy as np
import numpy.typing as npt
import pyxirr

__all__ = ["annual_irr", "discount_factors", "moic", "present_value", "weighted_average_life"]

FloatArray = npt.NDArray[np.float64]


def discount_factors(months: int, annual_rate: float | FloatArray) -> FloatArray:
    """Discount factors ``(1 + r) ** (-t / 12)`` for t = 1..months.

    Parameters
    ----------
    months
        Number of monthly periods.
    annual_rate
        A rate (shape ``()``) or one rate per row (shape ``(n,)``, e.g. each loan's contractual
        rate), decimals per year, each > -1.

    Returns
    -------
    FloatArray
        Shape ``(months,)`` for a scalar rate, ``(n, months)`` for one rate per row.

    Examples
    --------
    >>> float(discount_factors(12, 0.12)[-1])  # a year at 12 %
    0.8928571428571428
    """
    t = np.arange(1, months + 1) / 12.0
    rate = np.asarray(annual_rate, dtype=np.float64)
    if np.any(rate <= -1.0):
        msg = "an annual rate must be greater than -1 (-100 %)"
        raise ValueError(msg)
    out: FloatArray = (1.0 + rate[..., None]) ** (-t) if rate.ndim else (1.0 + rate) ** (-t)
    return out


def present_value(cash_flows: FloatArray, annual_rate: float | FloatArray) -> FloatArray:
    """Present value at month 0 of monthly cash flows (last axis = months 1..H).

    Examples
    --------
    >>> float(present_value(np.array([0.0] * 11 + [112.0]), 0.12))
    100.0
    """
    cf = np.asarray(cash_flows, dtype=np.float64)
    return np.asarray((cf * discount_factors(cf.shape[-1], annual_rate)).sum(axis=-1))


def annual_irr(price: float, cash_flows: FloatArray) -> float:
    """Annual IRR of paying ``price`` at month 0 and receiving ``cash_flows`` at months 1..H.

    Returns NaN when no IRR exists (no positive cash flow, or a non-positive price).

    Examples
    --------
    >>> round(annual_irr(100.0, np.array([0.0] * 11 + [112.0])), 9)
    0.12
    """
    cf = np.asarray(cash_flows, dtype=np.float64)
    if price <= 0 or not np.any(cf > 0):
        return math.nan
    monthly = pyxirr.irr(np.concatenate(([-price], cf)), silent=True)
    if monthly is None or not math.isfinite(monthly):
        return math.nan
    return float((1.0 + monthly) ** 12 - 1.0)


def moic(price: float, cash_flows: FloatArray) -> float:
    """Multiple on invested capital: total cash received / price."""
    return float(np.sum(cash_flows) / price) if price > 0 else math.nan


def weighted_average_life(principal: FloatArray) -> float:
    """Weighted-average life in years of principal repayments at months 1..H."""
    p = np.asarray(principal, dtype=np.float64)
    total = p.sum()
    if total <= 0:
        return math.nan
    return float((p * np.arange(1, p.size + 1)).sum() / total / 12.0)
