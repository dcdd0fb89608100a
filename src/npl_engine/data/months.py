"""Months after a loan's cut-off date: which month a date falls in, how many a book has seen.

One definition for the whole engine (training targets, causal outcomes, the plan's backtest):

- Month t after a cut-off ``c`` is the interval ``(end(c, t - 1), end(c, t)]``, where
  ``end(c, t)`` is the **last day of the t-th calendar month after c** when c is a month end
  (the usual cut-off of an NPL book), and otherwise the same day t calendar months later,
  clamped to the end of a shorter month (30 January + 1 month = 28 February).
- A dataset extracted on ``as_of`` has observed month t when ``end(c, t) <= as_of``.

For a month-end cut-off the months are therefore calendar months: a loan cut off on 30 April
has May as its month 1, so a payment on 31 May falls in month 1 and an extract taken on 30 May
has not yet observed it. (Adding one month to 30 April with the day kept, 30 May, would end
month 1 a day early for every cut-off on the 28th, 29th or 30th of a month, and start month 2
with the last day of the month.) The simulator draws its payments in these calendar months
(``docs/simulator.md``), and the business plan's months are the same (``docs/plan.md``).

Examples
--------
>>> from datetime import date
>>> import polars as pl
>>> frame = pl.DataFrame({"cutoff": [date(2024, 4, 30), date(2024, 1, 30)],
...                       "day": [date(2024, 5, 31), date(2024, 2, 29)]})
>>> frame.select(month=month_after_cutoff(pl.col("day"), pl.col("cutoff")),
...              seen=months_observed(pl.col("cutoff"), pl.col("day")))["month", "seen"].rows()
[(1, 1), (1, 1)]
"""

from __future__ import annotations

from datetime import date

import polars as pl

__all__ = ["month_after_cutoff", "month_end", "months_observed"]


def _expr(value: pl.Expr | date) -> pl.Expr:
    return value if isinstance(value, pl.Expr) else pl.lit(value, dtype=pl.Date)


def _months_expr(months: pl.Expr | int) -> pl.Expr:
    return months if isinstance(months, pl.Expr) else pl.lit(months)


def _months_apart(later: pl.Expr, earlier: pl.Expr) -> pl.Expr:
    return (later.dt.year() - earlier.dt.year()) * 12 + later.dt.month() - earlier.dt.month()


def month_end(cutoff: pl.Expr | date, months: pl.Expr | int) -> pl.Expr:
    """The last day of month ``months`` after ``cutoff``: ``end(c, t)`` of the module's definition.

    Parameters
    ----------
    cutoff
        Cut-off dates (a Polars date expression, or one date).
    months
        Month index t (an integer expression, or one integer); 0 gives the cut-off itself.

    Returns
    -------
    polars.Expr
        A date: the end of the t-th calendar month after a month-end cut-off, else the cut-off's
        day t calendar months later (clamped to the month's end).

    Examples
    --------
    >>> from datetime import date
    >>> pl.select(a=month_end(date(2025, 2, 28), 1), b=month_end(date(2025, 1, 30), 1)).row(0)
    (datetime.date(2025, 3, 31), datetime.date(2025, 2, 28))
    """
    c = _expr(cutoff)
    shifted = c.dt.offset_by(pl.format("{}mo", _months_expr(months)))
    return pl.when(c == c.dt.month_end()).then(shifted.dt.month_end()).otherwise(shifted)


def month_after_cutoff(day: pl.Expr | date, cutoff: pl.Expr | date) -> pl.Expr:
    """The month t after ``cutoff`` that ``day`` falls in: ``end(c, t - 1) < day <= end(c, t)``.

    Parameters
    ----------
    day
        Dates after the cut-off (payment or action dates).
    cutoff
        The loans' cut-off dates.

    Returns
    -------
    polars.Expr
        ``Int32``: 1 for the first month after the cut-off (0 for the cut-off day itself).

    Examples
    --------
    >>> from datetime import date
    >>> pl.select(month_after_cutoff(date(2025, 3, 31), date(2025, 2, 28))).item()
    1
    """
    d, c = _expr(day), _expr(cutoff)
    m = _months_apart(d, c)
    return pl.when(d <= month_end(c, m)).then(m).otherwise(m + 1).cast(pl.Int32)


def months_observed(cutoff: pl.Expr | date, as_of: pl.Expr | date) -> pl.Expr:
    """Whole months after ``cutoff`` that data extracted on ``as_of`` covers.

    The largest t with ``end(c, t) <= as_of`` (:func:`month_end`).

    Parameters
    ----------
    cutoff
        The loans' cut-off dates.
    as_of
        The day the data was extracted (the dataset's ``as_of_date``).

    Returns
    -------
    polars.Expr
        ``Int32``, 0 when not even the first month has ended.

    Examples
    --------
    >>> from datetime import date
    >>> pl.select(months_observed(date(2024, 4, 30), date(2024, 5, 30))).item()
    0
    >>> pl.select(months_observed(date(2024, 4, 30), date(2024, 5, 31))).item()
    1
    """
    c, a = _expr(cutoff), _expr(as_of)
    m = _months_apart(a, c)
    return pl.when(month_end(c, m) <= a).then(m).otherwise(m - 1).cast(pl.Int32)
