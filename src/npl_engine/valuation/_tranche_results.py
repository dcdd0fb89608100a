"""Tranche results: each class's cash flows and metrics over the runs of a waterfall.

:func:`~npl_engine.valuation.waterfall` returns a :class:`TrancheResults`: the senior fees, one
:class:`TrancheFlows` per class of notes and, with a ``[triggers]`` table, a
:class:`TriggerOutcome`; its methods turn them into tables (per run, summarised over runs,
monthly) and a JSON-ready dictionary.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
import polars as pl

from npl_engine.valuation._tranche_settings import TRIGGER_NAMES, TrancheStructure, Triggers

__all__ = ["PERCENTILES", "TrancheFlows", "TrancheResults", "TriggerOutcome"]

FloatArray = npt.NDArray[np.float64]

PERCENTILES: tuple[int, ...] = (5, 25, 50, 75, 95)
"""Percentiles of yield and loss reported by :meth:`TrancheResults.summary`."""


@dataclass(frozen=True, slots=True)
class TrancheFlows:
    """One class's cash flows and metrics over every run of a waterfall.

    Arrays have the leading shape ``S`` of the net collections given to
    :func:`~npl_engine.valuation.waterfall` (``()`` for one scenario, ``(paths,)`` for Monte
    Carlo paths); flows add the month axis.

    Parameters
    ----------
    name, order, coupon, residual
        As in the :class:`~npl_engine.valuation.Tranche`.
    amount
        Size in currency, issued at par at month 0.
    interest
        Interest paid at months 1..H, shape ``(*S, H)``. For the residual class: the cash it
        receives beyond its amount (its return), since it has no coupon.
    principal
        Principal repaid at months 1..H, shape ``(*S, H)``.
    principal_outstanding
        Principal not repaid by month H, shape ``S``: the class's loss.
    interest_unpaid
        Interest due but unpaid at month H (including interest on arrears), shape ``S``.
    irr
        Annual yield at par: IRR of ``-amount`` at month 0 and ``interest + principal`` at
        months 1..H (:func:`~npl_engine.valuation._finance.annual_irr`), shape ``S``. -1 where
        the class received nothing; NaN only where the IRR cannot be found.
    wal_years
        Weighted-average life in years of the principal repaid, shape ``S``; NaN where no
        principal was repaid.
    moic
        Total cash received / amount, shape ``S``.
    """

    name: str
    order: int
    amount: float
    coupon: float | None
    residual: bool
    interest: FloatArray
    principal: FloatArray
    principal_outstanding: FloatArray
    interest_unpaid: FloatArray
    irr: FloatArray
    wal_years: FloatArray
    moic: FloatArray

    @property
    def cash(self) -> FloatArray:
        """Cash received each month, interest + principal, shape ``(*S, H)``."""
        out: FloatArray = self.interest + self.principal
        return out

    @property
    def loss(self) -> FloatArray:
        """Principal lost: amount less principal repaid by month H (>= 0), shape ``S``."""
        return self.principal_outstanding

    @property
    def loss_share(self) -> FloatArray:
        """Loss as a share of the amount, in [0, 1], shape ``S``."""
        out: FloatArray = self.principal_outstanding / self.amount
        return out


@dataclass(frozen=True, slots=True)
class TriggerOutcome:
    """Which triggers each run hit, at which test date, and the servicer fees deferred.

    Parameters
    ----------
    terms
        The ``[triggers]`` table that was run.
    test_months
        The test dates (months ``period_months``, ``2 × period_months``, ... up to H).
    hits
        For each name of :data:`TRIGGER_NAMES`, whether the run failed that test at each test
        date, shape ``(*S, tests)``; ``subordination`` is any of the three mezzanine tests.
    servicer_deferred, servicer_repaid
        Servicer fees kept in the waterfall each month, and deferred fees paid back to the
        servicer (after the rated classes), shape ``(*S, H)``.
    servicer_unpaid
        Deferred servicer fees still owed at month H, shape ``S``.
    """

    terms: Triggers
    test_months: npt.NDArray[np.int64]
    hits: dict[str, npt.NDArray[np.bool_]]
    servicer_deferred: FloatArray
    servicer_repaid: FloatArray
    servicer_unpaid: FloatArray

    def first_hit_month(self, name: str) -> FloatArray:
        """Month of the first test date at which ``name`` was hit, per run (NaN: never)."""
        hit = self.hits[name]
        first = np.argmax(hit, axis=-1)
        out: FloatArray = np.where(hit.any(axis=-1), self.test_months[first], np.nan)
        return out

    def summary(self) -> pl.DataFrame:
        """One row per trigger: share of runs that hit it and when they first did.

        Returns
        -------
        polars.DataFrame
            ``trigger``, ``tested`` (whether the file sets it), ``threshold``, ``p_hit`` (share
            of runs hit at least once), ``p_hit_first_test`` (at the first test date),
            ``first_month_mean``, ``first_month_p5``, ``first_month_p50``,
            ``first_month_p95`` (over the runs that hit it; NaN if none did).
        """
        limits = {
            "collection_ratio": self.terms.cumulative_collection_ratio,
            "pv_ratio": self.terms.pv_profitability_ratio,
            "senior_interest_cover": self.terms.senior_interest_cover,
            "subordination": None,
            "servicer_fee_deferral": self.terms.servicer_fee_deferral_ratio,
        }
        rows = []
        for name in TRIGGER_NAMES:
            hit = self.hits[name].reshape(-1, self.test_months.size)
            first = self.first_hit_month(name).reshape(-1)
            seen = first[np.isfinite(first)]
            tested = limits[name] is not None or (
                name == "subordination" and any(v is not None for v in list(limits.values())[:3])
            )
            rows.append(
                {
                    "trigger": name,
                    "tested": tested,
                    "threshold": limits[name],
                    "p_hit": float(hit.any(axis=1).mean()) if hit.size else 0.0,
                    "p_hit_first_test": float(hit[:, 0].mean()) if hit.size else 0.0,
                    "first_month_mean": float(seen.mean()) if seen.size else math.nan,
                    **{
                        f"first_month_p{q}": float(np.percentile(seen, q))
                        if seen.size
                        else math.nan
                        for q in (5, 50, 95)
                    },
                }
            )
        return pl.DataFrame(rows, schema_overrides={"threshold": pl.Float64})


@dataclass(frozen=True, slots=True)
class TrancheResults:
    """The outcome of a waterfall: fees and each class's flows over every run.

    Parameters
    ----------
    structure
        The structure that was run.
    gbv, price
        The portfolio's gross book value and the price paid (the classes add up to it).
    net
        The net collections given, shape ``(*S, H)``.
    fees
        Senior fees and costs each month, shape ``(*S, H)``: what was paid in fees (including
        arrears of fees and deficits of earlier months) **less** the deficit of a month whose
        net collections are negative. ``fees + Σ class cash == net`` every month.
    fees_unpaid
        Fees and deficits still owed at month H, shape ``S`` (lost by whoever advanced them).
    tranches
        One :class:`TrancheFlows` per class, most senior first.
    triggers
        With a ``[triggers]`` table: the :class:`TriggerOutcome`. Then
        ``fees + Σ class cash + servicer_repaid − servicer_deferred == net`` every month.
    """

    structure: TrancheStructure
    gbv: float
    price: float
    net: FloatArray
    fees: FloatArray
    fees_unpaid: FloatArray
    tranches: tuple[TrancheFlows, ...]
    triggers: TriggerOutcome | None = None

    @property
    def run_shape(self) -> tuple[int, ...]:
        """Leading shape ``S`` of the runs (``()`` for a single scenario)."""
        return tuple(self.net.shape[:-1])

    @property
    def n_runs(self) -> int:
        """Number of runs (scenarios or paths): the product of :attr:`run_shape`."""
        return math.prod(self.run_shape)

    def tranche(self, name: str) -> TrancheFlows:
        """The class called ``name`` (compared ignoring case)."""
        for t in self.tranches:
            if t.name.casefold() == name.casefold():
                return t
        known = ", ".join(map(repr, self.structure.names))
        msg = f"no tranche named {name!r}; the classes are {known}"
        raise KeyError(msg)

    def classes(self) -> pl.DataFrame:
        """One row per class: name, order, residual, coupon, amount, its share of GBV and price."""
        return pl.DataFrame(
            {
                "tranche": [t.name for t in self.tranches],
                "order": [t.order for t in self.tranches],
                "residual": [t.residual for t in self.tranches],
                "coupon": [t.coupon for t in self.tranches],
                "amount": [t.amount for t in self.tranches],
                "amount_pct_gbv": [t.amount / self.gbv for t in self.tranches],
                "amount_pct_price": [t.amount / self.price for t in self.tranches],
            },
            schema_overrides={"coupon": pl.Float64},
        )

    def metrics(self, *, labels: Sequence[str] | None = None) -> pl.DataFrame:
        """One row per run and class: totals, loss, yield, WAL and MOIC.

        Parameters
        ----------
        labels
            A name for each run (e.g. scenario names), in the C order of :attr:`run_shape`;
            adds a ``label`` column.

        Returns
        -------
        polars.DataFrame
            ``run`` (flat index), [``label``], ``tranche``, ``order``, ``interest``,
            ``principal``, ``cash`` (sums over months), ``interest_unpaid``, ``loss``,
            ``loss_share``, ``irr``, ``wal_years``, ``moic``.
        """
        n = self.n_runs
        frames = []
        for t in self.tranches:
            columns: dict[str, Any] = {"run": np.arange(n)}
            if labels is not None:
                columns["label"] = self._labels(labels)
            columns |= {
                "tranche": [t.name] * n,
                "order": np.full(n, t.order),
                "interest": t.interest.reshape(n, -1).sum(axis=1),
                "principal": t.principal.reshape(n, -1).sum(axis=1),
                "cash": t.cash.reshape(n, -1).sum(axis=1),
                "interest_unpaid": t.interest_unpaid.reshape(n),
                "loss": t.loss.reshape(n),
                "loss_share": t.loss_share.reshape(n),
                "irr": t.irr.reshape(n),
                "wal_years": t.wal_years.reshape(n),
                "moic": t.moic.reshape(n),
            }
            frames.append(pl.DataFrame(columns))
        return pl.concat(frames).sort("run", "order", maintain_order=True)

    def summary(self, *, percentiles: Sequence[float] = PERCENTILES) -> pl.DataFrame:
        """One row per class: yield and loss over the runs (mean and percentiles).

        Runs count equally (Monte Carlo paths are already drawn by scenario weight); NaN values
        (an IRR that cannot be found, the WAL of a class that repaid nothing) are left out.

        Parameters
        ----------
        percentiles
            Percentiles (0 to 100) of ``irr`` and ``loss_share`` to report.

        Returns
        -------
        polars.DataFrame
            ``tranche``, ``order``, ``amount``, ``n_runs``, ``irr_mean``, ``irr_p<q>``...,
            ``loss_mean``, ``loss_share_mean``, ``loss_share_p<q>``..., ``p_loss`` (share of
            runs where the class loses principal), ``wal_years_mean``, ``moic_mean``,
            ``interest_unpaid_mean``.
        """
        rows = []
        for t in self.tranches:
            row: dict[str, Any] = {
                "tranche": t.name,
                "order": t.order,
                "amount": t.amount,
                "n_runs": self.n_runs,
            }
            for key, values in (("irr", t.irr), ("loss_share", t.loss_share)):
                finite = values[np.isfinite(values)]
                row[f"{key}_mean"] = float(finite.mean()) if finite.size else math.nan
                if key == "loss_share":
                    row["loss_mean"] = row["loss_share_mean"] * t.amount
                for q in percentiles:
                    value = float(np.percentile(finite, q)) if finite.size else math.nan
                    row[f"{key}_p{q:g}"] = value
            row["p_loss"] = float(np.mean(t.loss > 0.0))
            for key, values in (("wal_years", t.wal_years), ("moic", t.moic)):
                finite = values[np.isfinite(values)]
                row[f"{key}_mean"] = float(finite.mean()) if finite.size else math.nan
            row["interest_unpaid_mean"] = float(t.interest_unpaid.mean())
            rows.append(row)
        return pl.DataFrame(rows)

    def cash_flows(self, *, labels: Sequence[str] | None = None) -> pl.DataFrame:
        """Monthly flows, one row per run and month: net, fees and each class's flows.

        Returns
        -------
        polars.DataFrame
            ``run``, [``label``], ``month`` (1..H), ``net``, ``fees``, then
            ``<class>_interest`` and ``<class>_principal`` for each class, most senior first.
        """
        n, h = self.n_runs, self.net.shape[-1]
        columns: dict[str, Any] = {"run": np.repeat(np.arange(n), h)}
        if labels is not None:
            columns["label"] = np.repeat(np.asarray(self._labels(labels), dtype=object), h)
        columns |= {
            "month": np.tile(np.arange(1, h + 1), n),
            "net": self.net.reshape(-1),
            "fees": self.fees.reshape(-1),
        }
        for t in self.tranches:
            columns[f"{t.name}_interest"] = t.interest.reshape(-1)
            columns[f"{t.name}_principal"] = t.principal.reshape(-1)
        return pl.DataFrame(columns)

    def to_dict(self, *, labels: Sequence[str] | None = None) -> dict[str, Any]:
        """JSON-ready dictionary (NaN becomes None).

        Holds the structure (``classes``, senior fees), the ``summary`` over runs and, when
        ``labels`` are given (a few named runs such as scenarios), each run's figures under
        ``runs``. Monte Carlo paths are only summarised.
        """
        terms = self.structure.terms
        out: dict[str, Any] = {
            "gbv": self.gbv,
            "price": self.price,
            "price_pct_gbv": self.price / self.gbv,
            "senior_fees_share": terms.senior_fees_share,
            "senior_fees_fixed_per_year": terms.senior_fees_fixed_per_year,
            "classes": self.classes().to_dicts(),
            "n_runs": self.n_runs,
            "fees_mean": float(self.fees.reshape(self.n_runs, -1).sum(axis=1).mean()),
            "fees_unpaid_mean": float(self.fees_unpaid.mean()),
            "summary": self.summary().to_dicts(),
        }
        if labels is not None:
            metrics = self.metrics(labels=labels)
            fees = self.fees.reshape(self.n_runs, -1).sum(axis=1)
            unpaid = self.fees_unpaid.reshape(self.n_runs)
            out["runs"] = [
                {
                    "label": label,
                    "fees": float(fees[i]),
                    "fees_unpaid": float(unpaid[i]),
                    "tranches": metrics.filter(pl.col("run") == i).drop("run", "label").to_dicts(),
                }
                for i, label in enumerate(self._labels(labels))
            ]
        if self.triggers is not None:
            out["triggers"] = self.triggers.terms.model_dump() | {
                "test_months": self.triggers.test_months.tolist(),
                "servicer_deferred_mean": float(
                    self.triggers.servicer_deferred.reshape(self.n_runs, -1).sum(axis=1).mean()
                ),
                "servicer_unpaid_mean": float(self.triggers.servicer_unpaid.mean()),
                "summary": self.triggers.summary().to_dicts(),
            }
            if labels is not None:
                firsts = {
                    name: self.triggers.first_hit_month(name).reshape(self.n_runs)
                    for name in TRIGGER_NAMES
                }
                for i, run in enumerate(out["runs"]):
                    run["trigger_first_hit_month"] = {
                        name: float(firsts[name][i]) for name in TRIGGER_NAMES
                    }
        ready: dict[str, Any] = _json_ready(out)
        return ready

    def _labels(self, labels: Sequence[str]) -> list[str]:
        if len(labels) != self.n_runs:
            msg = f"{len(labels)} labels given for {self.n_runs} runs"
            raise ValueError(msg)
        return list(labels)


def _json_ready(value: Any) -> Any:
    """Replace NaN floats by None, recursively."""
    if isinstance(value, float):
        return None if math.isnan(value) else value
    if isinstance(value, Mapping):
        return {k: _json_ready(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_json_ready(v) for v in value]
    return value
