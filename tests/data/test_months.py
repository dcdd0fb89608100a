"""Months after a cut-off: hand-worked month ends, and month index and months observed agree."""

from __future__ import annotations

from datetime import date, timedelta

import polars as pl
import pytest
from hypothesis import given
from hypothesis import strategies as st

from npl_engine.data import month_after_cutoff, month_end, months_observed


def _one(expr: pl.Expr) -> object:
    return pl.select(expr).item()


@pytest.mark.parametrize(
    ("cutoff", "as_of", "observed"),
    [
        # A month-end cut-off: months are calendar months. 30 April → month 1 is May, which
        # has ended on 31 May but not on 30 May.
        (date(2024, 4, 30), date(2024, 5, 30), 0),
        (date(2024, 4, 30), date(2024, 5, 31), 1),
        # February's end in a common and a leap year; 28 March is not March's end.
        (date(2025, 2, 28), date(2025, 3, 28), 0),
        (date(2025, 2, 28), date(2025, 3, 31), 1),
        (date(2024, 2, 29), date(2024, 3, 31), 1),
        # 31 January + 1 month ends on February's last day.
        (date(2025, 1, 31), date(2025, 2, 28), 1),
        (date(2025, 1, 31), date(2025, 2, 27), 0),
        (date(2026, 9, 30), date(2028, 9, 30), 24),
        (date(2026, 9, 30), date(2028, 9, 29), 23),
        # A mid-month cut-off: month t ends on the same day t months later, clamped to a
        # shorter month's end (30 January + 1 month = 28 February).
        (date(2026, 9, 15), date(2026, 12, 15), 3),
        (date(2026, 9, 15), date(2026, 12, 14), 2),
        (date(2025, 1, 30), date(2025, 2, 28), 1),
        (date(2025, 1, 30), date(2025, 2, 27), 0),
        (date(2025, 1, 30), date(2025, 3, 29), 1),
        (date(2025, 1, 30), date(2025, 3, 30), 2),
        (date(2025, 1, 30), date(2025, 1, 30), 0),
    ],
)
def test_months_observed_hand_worked(cutoff: date, as_of: date, observed: int) -> None:
    """Whole months seen by an extract, worked by hand at month ends and in short months."""
    assert _one(months_observed(cutoff, as_of)) == observed


@pytest.mark.parametrize(
    ("cutoff", "day", "month"),
    [
        (date(2024, 4, 30), date(2024, 5, 1), 1),
        (date(2024, 4, 30), date(2024, 5, 31), 1),  # the 31st of the first calendar month
        (date(2024, 4, 30), date(2024, 6, 1), 2),
        (date(2025, 2, 28), date(2025, 3, 29), 1),
        (date(2025, 2, 28), date(2025, 3, 31), 1),
        (date(2025, 2, 28), date(2025, 4, 1), 2),
        (date(2025, 1, 30), date(2025, 2, 28), 1),
        (date(2025, 1, 30), date(2025, 3, 1), 2),
        (date(2025, 1, 30), date(2025, 3, 31), 3),
    ],
)
def test_month_after_cutoff_hand_worked(cutoff: date, day: date, month: int) -> None:
    """The month a payment falls in, worked by hand at month ends and in short months."""
    assert _one(month_after_cutoff(day, cutoff)) == month


def test_the_polars_columns_give_the_same_months() -> None:
    """On columns, each row gets what the scalar call gives (one definition for both)."""
    frame = pl.DataFrame(
        {
            "cutoff": [date(2024, 4, 30), date(2025, 1, 30), date(2025, 2, 28)],
            "as_of": [date(2024, 5, 30), date(2025, 2, 28), date(2025, 3, 31)],
        }
    )
    got = frame.select(months_observed(pl.col("cutoff"), pl.col("as_of")))
    assert got.to_series().to_list() == [0, 1, 1]


@given(
    cutoff=st.dates(min_value=date(2000, 1, 1), max_value=date(2040, 12, 31)),
    t=st.integers(min_value=1, max_value=120),
)
def test_month_index_and_months_observed_agree_at_every_month_end(cutoff: date, t: int) -> None:
    """Month t's last day is in month t and completes t months; the day after starts t + 1."""
    end = _one(month_end(cutoff, t))
    assert isinstance(end, date)
    assert end > cutoff
    after = end + timedelta(days=1)
    assert _one(month_after_cutoff(end, cutoff)) == t
    assert _one(month_after_cutoff(after, cutoff)) == t + 1
    assert _one(months_observed(cutoff, end)) == t
    assert _one(months_observed(cutoff, end - timedelta(days=1))) == t - 1
