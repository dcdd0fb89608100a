"""Headline figures of a dataset: loans, GBV by segment, cut-off range, payments and actions."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date

import polars as pl

from npl_engine.data.dataset import Dataset

__all__ = ["DatasetSummary", "SegmentSummary", "summarize"]


@dataclass(frozen=True, slots=True)
class SegmentSummary:
    """Loans and gross book value of one segment.

    Parameters
    ----------
    segment
        Contract segment name.
    n_loans
        Number of loans.
    gbv
        Sum of the segment's exposures, in the dataset's currency.
    """

    segment: str
    n_loans: int
    gbv: float


@dataclass(frozen=True, slots=True)
class DatasetSummary:
    """What a dataset holds, in the figures a buyer checks first.

    Parameters
    ----------
    n_loans
        Number of loans.
    gbv
        Gross book value: sum over loans of exposure = outstanding_principal +
        accrued_interest at the cut-off date.
    segments
        Loans and GBV per segment present, in contract order.
    cutoff_min, cutoff_max
        Earliest and latest ``cutoff_date`` (equal for a tape; ``None`` without loans).
    n_payments, payments_total
        Number and sum of ``amount`` of payments (0 when there is no payments table).
    n_actions, actions_cost
        Number and sum of ``cost`` of actions (0 when there is no actions table).
    as_of_date
        The dataset's ``as_of_date``.
    """

    n_loans: int
    gbv: float
    segments: tuple[SegmentSummary, ...]
    cutoff_min: date | None
    cutoff_max: date | None
    n_payments: int
    payments_total: float
    n_actions: int
    actions_cost: float
    as_of_date: date | None


def summarize(dataset: Dataset) -> DatasetSummary:
    """Count loans, GBV per segment, the cut-off range, payments and actions.

    Parameters
    ----------
    dataset
        A dataset read by :func:`npl_engine.data.read_dataset` (typed, defaults filled).

    Returns
    -------
    DatasetSummary
        The figures; computed in one pass over each table.

    Notes
    -----
    Exposure (EAD) = outstanding_principal + accrued_interest at each loan's cut-off date;
    money is in the dataset's single currency and undiscounted.

    Examples
    --------
    >>> import datetime as dt
    >>> loans = pl.LazyFrame(
    ...     {
    ...         "segment": ["auto", "auto", "credit_card"],
    ...         "cutoff_date": [dt.date(2024, 12, 31)] * 3,
    ...         "outstanding_principal": [100.0, 50.0, 20.0],
    ...         "accrued_interest": [5.0, 0.0, 1.0],
    ...     }
    ... )
    >>> s = summarize(Dataset(loans=loans))
    >>> s.n_loans, s.gbv, [(x.segment, x.n_loans, x.gbv) for x in s.segments]
    (3, 176.0, [('auto', 2, 155.0), ('credit_card', 1, 21.0)])
    """
    exposure = pl.col("outstanding_principal") + pl.col("accrued_interest")
    queries = [
        dataset.loans.group_by("segment")
        .agg(pl.len().alias("n_loans"), exposure.sum().alias("gbv"))
        .sort("segment"),
        dataset.loans.select(
            pl.col("cutoff_date").min().alias("cutoff_min"),
            pl.col("cutoff_date").max().alias("cutoff_max"),
        ),
    ]
    tables = {"payments": (dataset.payments, "amount"), "actions": (dataset.actions, "cost")}
    for frame, column in tables.values():
        if frame is not None:
            queries.append(frame.select(pl.len().alias("n"), pl.col(column).sum().alias("total")))
    by_segment, cutoffs, *events = pl.collect_all(queries, engine="streaming")

    totals: dict[str, tuple[int, float]] = {}
    for name, (frame, _) in tables.items():
        if frame is not None:
            row = events.pop(0).row(0)
            totals[name] = (int(row[0]), float(row[1]))
    segments = tuple(
        SegmentSummary(segment=str(seg), n_loans=int(n), gbv=float(gbv))
        for seg, n, gbv in by_segment.iter_rows()
    )
    return DatasetSummary(
        n_loans=sum(s.n_loans for s in segments),
        gbv=sum(s.gbv for s in segments),
        segments=segments,
        cutoff_min=cutoffs["cutoff_min"][0],
        cutoff_max=cutoffs["cutoff_max"][0],
        n_payments=totals.get("payments", (0, 0.0))[0],
        payments_total=totals.get("payments", (0, 0.0))[1],
        n_actions=totals.get("actions", (0, 0.0))[0],
        actions_cost=totals.get("actions", (0, 0.0))[1],
        as_of_date=dataset.as_of_date,
    )
