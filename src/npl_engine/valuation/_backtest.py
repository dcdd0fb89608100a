"""Backtest: realised collections since the tape's cut-off against the business plan, by period.

:func:`backtest` takes a :class:`~npl_engine.valuation.BusinessPlan` and the payments the
plan's loans made after the cut-off (a later book of the same loans, or a simulated tape with
``--realised-months``) and returns, per complete period and segment, the realised and planned
net collections, the **cumulative collection ratio** and the **present-value profitability
ratio**, and the periods where the shortfall exceeds a threshold. :meth:`Backtest.save` and
:meth:`Backtest.load` are its one writer and reader; ``docs/plan.md`` explains the tables.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from npl_engine.data import Dataset, month_after_cutoff, months_observed
from npl_engine.data.writers import atomic_folder
from npl_engine.errors import NplError
from npl_engine.valuation._cashflows import costs_of
from npl_engine.valuation._plan import BusinessPlan
from npl_engine.valuation._tranche_results import _json_ready

__all__ = ["ALL_SEGMENTS", "BACKTEST_FILES", "Backtest", "backtest"]

ALL_SEGMENTS = "all"
"""The ``segment`` label of the rows that cover the whole tape."""

BACKTEST_FILES = frozenset({"backtest.parquet", "backtest.csv", "backtest.json"})
"""Files a backtest folder holds."""


@dataclass(frozen=True, slots=True)
class Backtest:
    """Realised against planned collections, per complete period and segment.

    Parameters
    ----------
    table
        One row per period and segment (``all`` first): ``period``, ``start_month``,
        ``end_month``, ``segment``, ``plan_gross``, ``plan_net``, ``realised_gross``,
        ``realised_net``, their cumulative sums (``cum_plan_net`` ...), ``cum_plan_pv``,
        ``cum_realised_pv``, ``collection_ratio`` (cumulative realised / planned net),
        ``pv_ratio`` (the same of present values), ``shortfall`` (1 − collection ratio),
        ``breach`` (either ratio below 1 − threshold); for ``all`` with a Monte Carlo band,
        ``ccr_p5`` ... ``ccr_p95`` and ``within_band``.
    scenario
        The plan scenario compared against (``weighted`` by default).
    threshold
        Shortfall beyond which a period is flagged (0.10: a ratio below 90 %).
    months_observed
        Whole months after the cut-off that the realised data covers.
    as_of_date
        The day the realised data was extracted.
    first_breach_period
        The first period in which the whole tape breaches, or ``None``.
    payments_used
        Payments counted (dated within the observed months) and their total amount.

    Examples
    --------
    >>> import npl_engine as npl
    >>> result = npl.backtest("out/plan", npl.read_dataset("data/tape_2028"))  # doctest: +SKIP
    >>> result.save("out/backtest")  # doctest: +SKIP
    >>> npl.Backtest.load("out/backtest").first_breach_period  # doctest: +SKIP
    """

    table: pl.DataFrame
    scenario: str
    threshold: float
    months_observed: int
    as_of_date: date
    first_breach_period: int | None
    payments_used: tuple[int, float]

    @property
    def total(self) -> pl.DataFrame:
        """The rows of the whole tape (segment ``all``)."""
        return self.table.filter(pl.col("segment") == ALL_SEGMENTS)

    def to_dict(self) -> dict[str, Any]:
        """The content of ``backtest.json``: settings, the breaches and the latest ratios."""
        total = self.total
        last = total.row(-1, named=True) if total.height else {}
        out: dict[str, Any] = _json_ready(
            {
                "scenario": self.scenario,
                "threshold": self.threshold,
                "as_of_date": self.as_of_date.isoformat(),
                "months_observed": self.months_observed,
                "periods_compared": total.height,
                "payments_used": self.payments_used[0],
                "payments_amount": self.payments_used[1],
                "first_breach_period": self.first_breach_period,
                "breach_periods": total.filter(pl.col("breach"))["period"].to_list(),
                "latest": {
                    k: last.get(k) for k in ("period", "collection_ratio", "pv_ratio", "shortfall")
                },
                "by_segment_latest": self.table.filter(pl.col("period") == last.get("period", -1))
                .select("segment", "collection_ratio", "pv_ratio", "breach")
                .to_dicts(),
            }
        )
        return out

    def save(self, folder: str | Path) -> Path:
        """Write ``backtest.parquet``, ``backtest.csv`` and ``backtest.json`` into ``folder``."""
        target = Path(folder)
        with atomic_folder(target, allowed=BACKTEST_FILES) as staging:
            self.table.write_parquet(staging / "backtest.parquet")
            self.table.write_csv(staging / "backtest.csv")
            (staging / "backtest.json").write_text(json.dumps(self.to_dict(), indent=2) + "\n")
        return target

    @classmethod
    def load(cls, folder: str | Path) -> Backtest:
        """Read a folder written by :meth:`save`."""
        root = Path(folder)
        try:
            meta = json.loads((root / "backtest.json").read_text())
            table = pl.read_parquet(root / "backtest.parquet")
        except (OSError, ValueError, pl.exceptions.PolarsError) as exc:
            msg = f"{root} is not a backtest folder (written by `npl backtest`): {exc}"
            raise NplError(msg) from exc
        return cls(
            table=table,
            scenario=meta["scenario"],
            threshold=float(meta["threshold"]),
            months_observed=int(meta["months_observed"]),
            as_of_date=date.fromisoformat(meta["as_of_date"]),
            first_breach_period=meta["first_breach_period"],
            payments_used=(int(meta["payments_used"]), float(meta["payments_amount"])),
        )


def _inputs(
    plan: BusinessPlan | str | os.PathLike[str],
    payments: Dataset | pl.LazyFrame | pl.DataFrame,
    as_of: date | None,
) -> tuple[BusinessPlan, pl.LazyFrame | pl.DataFrame, date]:
    """The plan (read from its folder if need be), the payments and the day they end."""
    if not isinstance(plan, BusinessPlan):
        plan = BusinessPlan.load(plan)
    if isinstance(payments, Dataset):
        data = payments
        if data.payments is None:
            where = f"{data.source}" if data.source is not None else "the dataset"
            msg = f"{where} has no payments table: backtest a dataset observed after the cut-off"
            raise NplError(msg)
        payments = data.payments
        as_of = as_of or data.as_of_date
    if as_of is None:
        msg = "as_of: give the day the payments were extracted"
        raise NplError(msg)
    return plan, payments, as_of


def backtest(
    plan: BusinessPlan | str | os.PathLike[str],
    payments: Dataset | pl.LazyFrame | pl.DataFrame,
    *,
    as_of: date | None = None,
    threshold: float = 0.10,
    scenario: str = "weighted",
) -> Backtest:
    """Compare realised collections with the plan, period by period.

    Parameters
    ----------
    plan
        The business plan (:func:`~npl_engine.valuation.business_plan`) or the folder it was
        saved in (read with :meth:`BusinessPlan.load`).
    payments
        Contract ``payments`` (``loan_id``, ``payment_date``, ``amount``, ``source``) of the
        plan's loans, or a :class:`~npl_engine.data.Dataset` holding them (the same loans
        observed later). Payments dated on or before the cut-off or after the last observed
        month are not counted (and are reported in ``payments_used``).
    as_of
        The day the payments were extracted; only periods that ended by then are compared
        (the keyword of :func:`~npl_engine.data.read_dataset`). Default for a dataset: its
        ``as_of_date``; required with a frame of payments.
    threshold
        Shortfall beyond which a period is flagged, in ``[0, 1)``: 0.10 flags a cumulative
        collection or PV ratio below 90 %.
    scenario
        The plan scenario to compare with (default ``weighted``).

    Returns
    -------
    Backtest

    Raises
    ------
    NplError
        If a payment belongs to a loan that is not in the plan (naming one), if the data ends
        before the first period does, or if ``scenario`` is not in the plan.

    Notes
    -----
    A payment dated in the t-th calendar month after a month-end cut-off falls in plan month t
    (cash at the month's end, as the plan has it). Realised net collections are realised gross
    collections less the costs the plan charges (the scenario file's servicing fee, legal
    costs on loans in legal stages, collateral-sale costs and the fixed cost per loan), so
    plan and realisation are net of the same costs. Per period end T:

    - collection ratio = Σ_{t≤T} realised net_t / Σ_{t≤T} plan net_t;
    - PV profitability ratio = Σ_{t≤T} realised net_t · d_t / Σ_{t≤T} plan net_t · d_t, with
      ``d_t = (1 + rate) ** (-t / 12)`` at the plan's discount rate: collections that come
      late count for less. (GACS deals compute it on closed positions against their purchase
      price; the loan-level closure is not modelled here.)

    A ratio whose denominator is not positive is NaN and never a breach. Guarantor payments
    count as the borrower channel.

    Examples
    --------
    >>> import npl_engine as npl
    >>> later = npl.read_dataset("data/tape_2028")  # doctest: +SKIP
    >>> npl.backtest("out/plan", later, scenario="base").total  # doctest: +SKIP
    """
    plan, payments, as_of_date = _inputs(plan, payments, as_of)
    if not 0.0 <= threshold < 1.0:
        msg = f"the shortfall threshold must be in [0, 1), got {threshold}"
        raise NplError(msg)
    planned = plan.scenario(scenario)
    observed = pl.select(months_observed(plan.cutoff_date, as_of_date)).item()
    n_months = min(observed, plan.horizon_months)
    ends = planned.group_by("period").agg(pl.col("end_month").max()).sort("period")
    complete = ends.filter(pl.col("end_month") <= n_months)
    if complete.height == 0:
        first_end = int(ends["end_month"].min())  # type: ignore[arg-type]
        msg = (
            f"the realised data (as of {as_of_date.isoformat()}) covers {n_months} whole months "
            f"after the cut-off {plan.cutoff_date.isoformat()}; the plan's first period ends "
            f"at month {first_end}, so there is nothing to compare yet"
        )
        raise NplError(msg)
    realised = _realised_by_month(plan, payments, n_months)
    used = (int(realised["n_payments"].sum()), float(realised["gross"].sum()))
    segments = plan.loans.group_by("segment").len().sort("segment")
    months = np.arange(1, n_months + 1)
    period_of = _period_of_month(planned, n_months)
    discount = (1.0 + plan.discount_rate) ** (-months / 12.0)
    frames = []
    for seg, n_loans in segments.iter_rows():
        rows = realised.filter(pl.col("segment") == seg)
        gross = _by_month(rows, "gross", n_months)
        costs = costs_of(
            _by_month(rows, "borrower", n_months),
            _by_month(rows, "collateral", n_months),
            legal_borrower=_by_month(rows, "legal_borrower", n_months),
            legal_collateral=_by_month(rows, "legal_collateral", n_months),
            n_loans=float(n_loans),
            pricing=plan.pricing,
        )
        frames.append(
            pl.DataFrame(
                {
                    "segment": seg,
                    "month": months,
                    "period": period_of,
                    "realised_gross": gross,
                    "realised_net": gross - costs,
                    "realised_pv": (gross - costs) * discount,
                }
            )
        )
    by_period = (
        pl.concat(frames)
        .group_by("segment", "period")
        .agg(pl.col("realised_gross", "realised_net", "realised_pv").sum())
    )
    plan_rows = planned.group_by("segment", "period").agg(
        pl.col("start_month").min(),
        pl.col("end_month").max(),
        plan_gross=pl.col("gross").sum(),
        plan_net=pl.col("net").sum(),
        plan_pv=pl.col("pv_net").sum(),
    )
    table = (
        complete.select("period")
        .join(plan_rows, on="period")
        .join(by_period, on=["segment", "period"], how="left")
        .with_columns(pl.col("realised_gross", "realised_net", "realised_pv").fill_null(0.0))
    )
    total = (
        table.group_by("period")
        .agg(
            pl.col("start_month").min(),
            pl.col("end_month").max(),
            pl.col(
                "plan_gross", "plan_net", "plan_pv", "realised_gross", "realised_net", "realised_pv"
            ).sum(),
        )
        .with_columns(segment=pl.lit(ALL_SEGMENTS))
    )
    table = pl.concat([total, table], how="diagonal").with_columns(
        order=(pl.col("segment") != ALL_SEGMENTS).cast(pl.Int8)
    )
    table = table.sort("order", "segment", "period").drop("order")
    cum = {c: pl.col(c).cum_sum().over("segment", order_by="period")
           for c in ("plan_net", "realised_net", "plan_pv", "realised_pv")}  # fmt: skip
    table = table.with_columns(
        cum_plan_net=cum["plan_net"],
        cum_realised_net=cum["realised_net"],
        cum_plan_pv=cum["plan_pv"],
        cum_realised_pv=cum["realised_pv"],
    ).with_columns(
        collection_ratio=pl.when(pl.col("cum_plan_net") > 0)
        .then(pl.col("cum_realised_net") / pl.col("cum_plan_net"))
        .otherwise(None),
        pv_ratio=pl.when(pl.col("cum_plan_pv") > 0)
        .then(pl.col("cum_realised_pv") / pl.col("cum_plan_pv"))
        .otherwise(None),
    )
    limit = 1.0 - threshold
    table = table.with_columns(
        shortfall=1.0 - pl.col("collection_ratio"),
        breach=((pl.col("collection_ratio") < limit) | (pl.col("pv_ratio") < limit)).fill_null(
            value=False
        ),
    )
    if plan.bands is not None:
        # Percentiles commute with dividing by the (positive) plan: the band of the ratio is
        # the band of cumulative net collections over the compared scenario's plan.
        qs = [c.removeprefix("cum_net_p") for c in plan.bands.columns if c.startswith("cum_net_p")]
        table = table.join(
            plan.bands.select("period", *(f"cum_net_p{q}" for q in qs)), on="period", how="left"
        )
        is_all, cum_plan = pl.col("segment") == ALL_SEGMENTS, pl.col("cum_plan_net")
        table = table.with_columns(
            pl.when(is_all & (cum_plan > 0))
            .then(pl.col(f"cum_net_p{q}") / cum_plan)
            .alias(f"ccr_p{q}")
            for q in qs
        ).with_columns(
            within_band=pl.when(is_all).then(
                pl.col("collection_ratio").is_between(
                    pl.col(f"ccr_p{qs[0]}"), pl.col(f"ccr_p{qs[-1]}")
                )
            )
        )
    columns = ["period", "start_month", "end_month", "segment", "plan_gross", "plan_net",
               "realised_gross", "realised_net", "cum_plan_net", "cum_realised_net",
               "cum_plan_pv", "cum_realised_pv", "collection_ratio", "pv_ratio", "shortfall",
               "breach"]  # fmt: skip
    rest = [c for c in table.columns if c.startswith("ccr_p") or c == "within_band"]
    table = table.select(*columns, *rest)
    breaches = table.filter((pl.col("segment") == ALL_SEGMENTS) & pl.col("breach"))["period"]
    return Backtest(
        table=table,
        scenario=scenario,
        threshold=threshold,
        months_observed=n_months,
        as_of_date=as_of_date,
        first_breach_period=int(breaches.min()) if breaches.len() else None,  # type: ignore[arg-type]
        payments_used=used,
    )


def _period_of_month(planned: pl.DataFrame, n_months: int) -> np.ndarray[Any, np.dtype[np.int64]]:
    """The plan period of each month 1..n_months."""
    spans = planned.select("period", "start_month", "end_month").unique()
    out = np.zeros(n_months, dtype=np.int64)
    for period, start, end in spans.iter_rows():
        out[start - 1 : min(end, n_months)] = period
    return out


def _by_month(
    rows: pl.DataFrame, column: str, n_months: int
) -> np.ndarray[Any, np.dtype[np.float64]]:
    """A column of per-month rows as an array over months 1..n_months (0 where no row)."""
    out = np.zeros(n_months)
    out[rows["month"].to_numpy() - 1] = rows[column].to_numpy()
    return out


def _realised_by_month(
    plan: BusinessPlan, payments: pl.LazyFrame | pl.DataFrame, n_months: int
) -> pl.DataFrame:
    """Realised gross collections per segment and plan month, split by channel and legal costs."""
    pays = payments.lazy().select(
        "loan_id",
        month=month_after_cutoff(pl.col("payment_date"), plan.cutoff_date),
        amount=pl.col("amount").cast(pl.Float64),
        is_sale=pl.col("source").cast(pl.String) == "collateral_sale",
    )
    loans = plan.loans.lazy().with_columns(pl.col("loan_id").cast(pl.String))
    amount, legal, coll = pl.col("amount"), pl.col("in_legal_stage"), pl.col("is_sale")
    # One pass over the payments: a left join keeps payments of unknown loans (segment null),
    # which are counted, not dropped, and turned into an error below.
    by_month = (
        pays.join(loans, on="loan_id", how="left")
        .with_columns(
            collateral=pl.when(coll).then(amount).otherwise(0.0),
            borrower=pl.when(coll).then(0.0).otherwise(amount),
        )
        .with_columns(
            legal_borrower=pl.when(legal).then(pl.col("borrower")).otherwise(0.0),
            legal_collateral=pl.when(legal).then(pl.col("collateral")).otherwise(0.0),
        )
        .group_by("segment", "month")
        .agg(
            pl.len().alias("n_payments"),
            pl.col("loan_id").first().alias("example"),
            amount.sum().alias("gross"),
            pl.col("borrower", "collateral", "legal_borrower", "legal_collateral").sum(),
        )
        .collect()
    )
    orphans = by_month.filter(pl.col("segment").is_null())
    if orphans.height:
        msg = (
            f"payments: {int(orphans['n_payments'].sum()):,} payments belong to loans that are "
            f"not in the plan, e.g. loan_id {orphans['example'][0]!r}; backtest the plan "
            "against the same loans"
        )
        raise NplError(msg)
    return by_month.filter(pl.col("month").is_between(1, n_months)).drop("example")
