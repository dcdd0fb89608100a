"""Expected loss of defaulted loans: workout LGD from discounted net collections.

Two discounting bases: IFRS 9 (each loan's contractual rate as a proxy for its effective interest
rate; the default) and the Basel workout LGD (one stated annual rate for every loan).
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt
import polars as pl

from npl_engine.data import count_loans
from npl_engine.data.writers import atomic_folder
from npl_engine.errors import NplError
from npl_engine.excel import EXCEL_MAX_ROWS, write_workbook
from npl_engine.scenarios import ScenarioSet
from npl_engine.valuation._cashflows import loan_cash_flows
from npl_engine.valuation._finance import present_value
from npl_engine.valuation._inputs import (
    ModelInput,
    Progress,
    ScenariosInput,
    TapeInput,
    fit_horizon,
    resolve_model,
    resolve_scenarios,
    resolve_tape,
    scored_portfolio,
    spill_chunks,
)
from npl_engine.valuation._portfolio import Portfolio, collateral_grid_for

if TYPE_CHECKING:
    from npl_engine.distributed import Cluster

__all__ = [
    "EL_FILES",
    "EL_GROUPS",
    "MONTHS_SINCE_DEFAULT_BANDS",
    "ExpectedLoss",
    "expected_loss",
    "portfolio_expected_loss",
    "risk_attributes",
]

EL_FILES = frozenset(
    {"expected_loss.parquet", "expected_loss.csv", "expected_loss.xlsx", "summary.json"}
)
"""Files an expected-loss folder holds (an existing folder holding only these may be replaced)."""

_CHUNK = 100_000

#: Groupings of the expected-loss tables, in the order a risk officer's file shows them.
EL_GROUPS: tuple[str, ...] = (
    "segment",
    "legal_stage",
    "region",
    "default_vintage",
    "months_since_default_band",
)
#: Bands of months between default and cut-off: lower bounds (the last band is open).
MONTHS_SINCE_DEFAULT_BANDS: tuple[int, ...] = (0, 6, 12, 24, 36, 60)

_DAYS_PER_MONTH = 365.25 / 12


@dataclass(frozen=True, slots=True)
class ExpectedLoss:
    """Per-loan and summarised expected loss.

    Parameters
    ----------
    loans
        One row per loan: ``loan_id``, the :data:`EL_GROUPS` columns that were given (always
        ``segment`` and ``legal_stage``), ``months_since_default`` where known, ``ead``,
        ``lgd_<scenario>`` and ``el_<scenario>`` per scenario, ``lgd`` (scenario-weighted) and
        ``el`` = lgd × ead. In memory, or, from a run in chunks (:func:`expected_loss` with
        ``chunk_rows``), a lazy scan of the temporary Parquet file the rows were written to
        as they were computed (kept while this object lives).
    by_scenario
        One row per scenario and a ``weighted`` row: ``scenario``, ``weight``, ``ead``, ``el``,
        ``el_rate``. The weighted row is the weight-sum of the scenario rows.
    groups
        Per grouping column: one row per group and a ``total`` row, with ``loans``, ``ead``,
        ``el`` (weighted), ``el_rate`` = el / ead and ``el_<scenario>`` per scenario.
    discount_basis
        ``contractual`` (IFRS 9: each loan's contractual rate) or ``basel_workout``.
    discount_rate
        The one annual rate of the Basel workout basis; ``None`` for the contractual basis.
    horizon_note
        Why the collections were counted over fewer months than the scenario file asked, if
        they were (:func:`expected_loss`).

    Examples
    --------
    >>> import npl_engine as npl
    >>> el = npl.expected_loss("models/m1", "data/tape", "scenarios/eu_2026.toml")  # doctest: +SKIP
    >>> el.by_scenario  # doctest: +SKIP
    >>> npl.ExpectedLoss.load(el.save("out/el")).summary() == el.summary()  # doctest: +SKIP
    True
    """

    loans: pl.DataFrame | pl.LazyFrame
    by_scenario: pl.DataFrame
    groups: dict[str, pl.DataFrame]
    discount_basis: str
    discount_rate: float | None
    horizon_note: str | None = None
    #: The temporary folder holding the per-loan rows of a run in chunks (removed with it).
    _spill: Any = field(default=None, repr=False, compare=False)

    @property
    def by_segment(self) -> pl.DataFrame:
        """Expected loss by segment (with a ``total`` row)."""
        return self.groups["segment"]

    @property
    def by_legal_stage(self) -> pl.DataFrame:
        """Expected loss by legal stage (with a ``total`` row)."""
        return self.groups["legal_stage"]

    @property
    def scenario_names(self) -> list[str]:
        """The scenarios' names, in the scenario file's order."""
        return self.by_scenario.filter(pl.col("scenario") != "weighted")["scenario"].to_list()

    def summary(self) -> dict[str, object]:
        """What ``summary.json`` holds: basis, per-scenario and weighted totals, every grouping."""
        return {
            "discounting": {"basis": self.discount_basis, "rate": self.discount_rate},
            "scenarios": [
                {"name": r["scenario"], "weight": r["weight"]}
                for r in self.by_scenario.iter_rows(named=True)
                if r["scenario"] != "weighted"
            ],
            "by_scenario": self.by_scenario.to_dicts(),
            **{f"by_{name}": frame.to_dicts() for name, frame in self.groups.items()},
            **({"horizon_note": self.horizon_note} if self.horizon_note else {}),
        }

    @property
    def n_loans(self) -> int:
        """Loans in :attr:`loans` (counted from the file when it is a lazy scan)."""
        if isinstance(self.loans, pl.DataFrame):
            return self.loans.height
        return count_loans(self.loans)

    @property
    def workbook_has_loans(self) -> bool:
        """Whether ``expected_loss.xlsx`` holds the loans sheet (not beyond Excel's rows)."""
        return self.n_loans <= EXCEL_MAX_ROWS

    def save(self, folder: str | os.PathLike[str]) -> Path:
        """Write ``expected_loss.parquet``, ``.csv``, ``.xlsx`` and ``summary.json``.

        The Parquet and CSV files hold every loan; the workbook holds the summaries and, when
        Excel can hold them (:attr:`workbook_has_loans`), the loans. Everything is written into
        a staging folder first: a failed write leaves nothing. Returns the folder. Lazily held
        rows (a run in chunks) are streamed from their file to the Parquet and CSV files.
        """
        target = Path(folder)
        with atomic_folder(target, allowed=EL_FILES) as staging:
            if isinstance(self.loans, pl.DataFrame):
                self.loans.write_parquet(staging / "expected_loss.parquet")
                self.loans.write_csv(staging / "expected_loss.csv")
            else:
                self.loans.sink_parquet(staging / "expected_loss.parquet")
                self.loans.sink_csv(staging / "expected_loss.csv")
            (staging / "summary.json").write_text(json.dumps(self.summary(), indent=2) + "\n")
            sheets: dict[str, pl.DataFrame] = {"by_scenario": self.by_scenario, **self.groups}
            if self.workbook_has_loans:
                sheets["loans"] = self.loans.lazy().collect()
            write_workbook(staging / "expected_loss.xlsx", sheets)
        return target

    @classmethod
    def load(cls, folder: str | os.PathLike[str]) -> ExpectedLoss:
        """Read an expected-loss folder written by :meth:`save` (or ``npl expected-loss``).

        Raises
        ------
        NplError
            If the folder holds no expected loss or one of its files cannot be read.
        """
        root = Path(folder)
        meta_path = root / "summary.json"
        if not meta_path.is_file():
            msg = (
                f"{root} is not an expected-loss folder: summary.json is missing "
                "(see `npl expected-loss`)"
            )
            raise NplError(msg)
        try:
            meta = json.loads(meta_path.read_text())
            loans = pl.read_parquet(root / "expected_loss.parquet")
            names = [s["name"] for s in meta["scenarios"]]
            sums = ("ead", "el", "el_rate", *(f"el_{n}" for n in names))
            floats: dict[str, pl.DataType | type[pl.DataType]] = dict.fromkeys(sums, pl.Float64)
            groups = {
                by: pl.DataFrame(
                    meta[f"by_{by}"], schema={by: pl.String, "loans": pl.UInt32, **floats}
                )
                for by in EL_GROUPS
                if f"by_{by}" in meta
            }
            by_scenario = pl.DataFrame(
                meta["by_scenario"],
                schema={"scenario": pl.String, "weight": pl.Float64, "ead": pl.Float64,
                        "el": pl.Float64, "el_rate": pl.Float64},
            )  # fmt: skip
            rate = meta["discounting"]["rate"]
            return cls(
                loans=loans,
                by_scenario=by_scenario,
                groups=groups,
                discount_basis=str(meta["discounting"]["basis"]),
                discount_rate=None if rate is None else float(rate),
                horizon_note=meta.get("horizon_note"),
            )
        except (OSError, KeyError, ValueError, TypeError, pl.exceptions.PolarsError) as exc:
            msg = f"{root}: cannot read the expected loss ({type(exc).__name__}: {exc})"
            raise NplError(msg) from exc


def risk_attributes(loans: pl.DataFrame) -> pl.DataFrame:
    """The grouping columns of a risk officer's file, from contract ``loans``.

    Returns
    -------
    pl.DataFrame
        ``loan_id``, ``region``, ``default_vintage`` (year of ``default_date``),
        ``months_since_default`` (whole months of 365.25 / 12 days from default to cut-off) and
        ``months_since_default_band`` (e.g. ``"12-24"``, ``"60+"``; bands
        :data:`MONTHS_SINCE_DEFAULT_BANDS`).
    """
    bounds = MONTHS_SINCE_DEFAULT_BANDS
    months = (pl.col("cutoff_date") - pl.col("default_date")).dt.total_days() / _DAYS_PER_MONTH
    months = months.floor().cast(pl.Int32)
    band: Any = pl.when(months >= bounds[-1]).then(pl.lit(f"{bounds[-1]}+"))
    for low, high in zip(bounds[-2::-1], bounds[:0:-1], strict=True):
        band = band.when(months >= low).then(pl.lit(f"{low}-{high}"))
    return loans.select(
        "loan_id",
        pl.col("region").cast(pl.String),
        default_vintage=pl.col("default_date").dt.year().cast(pl.Int32),
        months_since_default=months,
        months_since_default_band=band.otherwise(pl.lit(f"{bounds[0]}-{bounds[1]}")),
    )


def _sum_columns(names: list[str]) -> list[str]:
    return ["ead", "el", *(f"el_{n}" for n in names)]


@dataclass(frozen=True, slots=True)
class _Sums:
    """What the summaries of a set of loans add up: combined over chunks or partitions by adding.

    ``scenario_el`` per scenario; ``groups`` per grouping column, one row per group (in the
    column's own type, so that the combined table sorts as the in-memory one) with ``loans``
    and the sums; ``total`` the same sums over every loan.
    """

    ead: float
    scenario_el: npt.NDArray[np.float64]
    groups: dict[str, pl.DataFrame]
    total: pl.DataFrame


def _sums(loans: pl.DataFrame, lgd: npt.NDArray[np.float64], names: list[str]) -> _Sums:
    """The sums of one set of loans (their per-loan rows and scenario LGDs)."""
    ead = loans["ead"].to_numpy()
    aggs = [pl.len().alias("loans"), *(pl.col(c).sum() for c in _sum_columns(names))]
    return _Sums(
        ead=float(ead.sum()),
        scenario_el=(lgd * ead[:, None]).sum(axis=0),
        groups={by: loans.group_by(by).agg(aggs) for by in EL_GROUPS if by in loans.columns},
        total=loans.select(aggs),
    )


def _combine_sums(parts: Sequence[_Sums], names: list[str]) -> _Sums:
    """Add up the sums of disjoint sets of loans (chunks of a tape, partitions on a cluster).

    One part is returned as it is, so the in-memory run's figures are not touched.
    """
    if len(parts) == 1:
        return parts[0]
    columns = _sum_columns(names)
    aggs = [pl.col("loans").sum().cast(pl.UInt32), *(pl.col(c).sum() for c in columns)]
    return _Sums(
        ead=float(sum(p.ead for p in parts)),
        scenario_el=np.sum([p.scenario_el for p in parts], axis=0),
        groups={
            by: pl.concat([p.groups[by] for p in parts]).group_by(by).agg(aggs)
            for by in parts[0].groups
        },
        total=pl.concat([p.total for p in parts]).select(aggs),
    )


def _tables(sums: _Sums, scenarios: ScenarioSet) -> tuple[pl.DataFrame, dict[str, pl.DataFrame]]:
    """The ``by_scenario`` table and the grouping tables, from the sums."""
    names = [s.name for s in scenarios.scenarios]
    weights = np.array([s.weight for s in scenarios.scenarios])
    by_scenario = pl.DataFrame(
        {
            "scenario": [*names, "weighted"],
            "weight": [*weights.tolist(), float(weights.sum())],
            "ead": [sums.ead] * (len(names) + 1),
            "el": [*sums.scenario_el.tolist(), float(sums.scenario_el @ weights)],
        }
    ).with_columns(el_rate=pl.col("el") / pl.col("ead"))
    groups = {}
    for by, table in sums.groups.items():
        total = sums.total.select(pl.lit("total").alias(by), pl.all())
        groups[by] = (
            pl.concat([table.sort(by).with_columns(pl.col(by).cast(pl.String)), total])
            .with_columns(el_rate=pl.col("el") / pl.col("ead"))
            .select(by, "loans", "ead", "el", "el_rate", *(f"el_{n}" for n in names))
        )
    return by_scenario, groups


def _loan_rows(
    portfolio: Portfolio,
    scenarios: ScenarioSet,
    *,
    attributes: pl.DataFrame | None,
    discount_rate: float | None,
) -> tuple[pl.DataFrame, npt.NDArray[np.float64]]:
    """Per-loan rows of the expected loss and the loans' LGD per scenario (loans × scenarios)."""
    names = [s.name for s in scenarios.scenarios]
    lgd = np.zeros((portfolio.n_loans, len(names)))
    ead = portfolio.exposure
    for start in range(0, portfolio.n_loans, _CHUNK):
        rows = np.arange(start, min(start + _CHUNK, portfolio.n_loans))
        part = portfolio.take(rows)
        rate = part.interest_rate if discount_rate is None else np.full(rows.size, discount_rate)
        for j, scenario in enumerate(scenarios.scenarios):
            pv = present_value(loan_cash_flows(part, scenario, scenarios.pricing), rate)
            lgd[rows, j] = np.clip(1.0 - pv / np.maximum(part.exposure, 1e-12), 0.0, 1.0)
    weights = np.array([s.weight for s in scenarios.scenarios])
    weighted = lgd @ weights
    loans = pl.DataFrame(
        {
            "loan_id": portfolio.loan_id,
            "segment": portfolio.segment,
            "legal_stage": portfolio.legal_stage,
        }
    )
    if attributes is not None:
        loans = loans.join(attributes, on="loan_id", how="left", maintain_order="left")
    loans = loans.with_columns(
        pl.Series("ead", ead),
        *(pl.Series(f"lgd_{n}", lgd[:, j]) for j, n in enumerate(names)),
        *(pl.Series(f"el_{n}", lgd[:, j] * ead) for j, n in enumerate(names)),
        pl.Series("lgd", weighted),
        pl.Series("el", weighted * ead),
    )
    return loans, lgd


def portfolio_expected_loss(
    portfolio: Portfolio,
    scenarios: ScenarioSet,
    *,
    attributes: pl.DataFrame | None = None,
    discount_rate: float | None = None,
) -> ExpectedLoss:
    """Expected loss per loan, per scenario and scenario-weighted, with summaries.

    Parameters
    ----------
    portfolio
        Scored defaulted loans.
    scenarios
        Scenarios and weights (IFRS 9: an unbiased, probability-weighted amount) and the
        pricing assumptions whose costs are deducted from collections.
    attributes
        Extra grouping columns by ``loan_id`` (:func:`risk_attributes`: region, default vintage,
        months since default). Without them, only segment and legal stage are summarised.
    discount_rate
        ``None`` (default): discount each loan at its contractual rate (IFRS 9 convention).
        A number: the Basel workout LGD, every loan discounted at this one annual rate (EBA
        GL/2017/16 §143: a primary interbank rate plus 5 percentage points).

    Notes
    -----
    For each loan and scenario: LGD = 1 − PV(net collections) / EAD, net collections being the
    scenario's per-loan cash flows after costs (:func:`~npl_engine.valuation.loan_cash_flows`),
    discounted monthly at ``(1 + rate) ** (t / 12)``, EAD = outstanding principal + accrued
    interest. LGD is bounded to [0, 1]: collections worth more than the exposure are not a
    negative loss, and costs beyond the exposure are not charged twice. These loans are in
    default (PD = 1; IFRS 9 stage 3, lifetime expected credit loss), so EL = LGD × EAD. The
    weighted LGD is the weight-average of the scenarios' LGDs, so the weighted EL is exactly the
    weight-sum of the scenarios' ELs.

    Examples
    --------
    A loan of exposure 1,000 collecting 600 in month 12 at a 5 % contractual rate loses
    1 − 600 / 1.05 / 1000 = 42.86 % of its exposure (see ``tests/valuation``).
    """
    loans, lgd = _loan_rows(
        portfolio, scenarios, attributes=attributes, discount_rate=discount_rate
    )
    names = [s.name for s in scenarios.scenarios]
    by_scenario, groups = _tables(_sums(loans, lgd, names), scenarios)
    return ExpectedLoss(
        loans=loans,
        by_scenario=by_scenario,
        groups=groups,
        discount_basis="contractual" if discount_rate is None else "basel_workout",
        discount_rate=discount_rate,
    )


def expected_loss(
    model: ModelInput,
    tape: TapeInput,
    scenarios: ScenariosInput,
    *,
    discount_rate: float | None = None,
    progress: Progress | None = None,
    cluster: Cluster | None = None,
    chunk_rows: int = 0,
) -> ExpectedLoss:
    """Expected loss of a tape's loans: what ``npl expected-loss`` computes, in one call.

    Scores the loans, groups them as a risk officer's file does (:func:`risk_attributes`) and
    discounts each loan's net collections under each scenario
    (:func:`portfolio_expected_loss`).

    Parameters
    ----------
    model
        A fitted :class:`~npl_engine.scoring.RecoveryModel`, or the folder it was saved in.
    tape
        A book or a tape: a :class:`~npl_engine.data.Dataset` or its folder.
    scenarios
        Scenarios, weights and costs: a :class:`~npl_engine.scenarios.ScenarioSet` or its
        TOML file.
    discount_rate
        ``None``: each loan's contractual rate (IFRS 9). A number: the Basel workout LGD, every
        loan discounted at this annual rate.
    progress
        Called with a short description before each long step.
    cluster
        A Dask cluster (:func:`npl_engine.distributed.connect`) to score on.
    chunk_rows
        0 (default): the whole tape in memory. N > 0: N loans at a time (each chunk's
        partitions on the cluster, if given),
        read from a lazy scan of the tape, each chunk's per-loan rows written to a temporary
        Parquet file as it is computed (:attr:`ExpectedLoss.loans` is then a scan of it) and
        its sums added to the others'. Peak memory follows N; the per-loan rows are the
        in-memory ones, the sums equal them to rounding (docs/scale.md#out-of-core).

    Returns
    -------
    ExpectedLoss

    Raises
    ------
    NplError
        If the discount rate is not above -1, the scenario horizon exceeds what the model
        predicts, or an input cannot be read.

    Notes
    -----
    A model trained on a book too short for its valuation horizon predicts fewer months; the
    collections are then counted over those months and :attr:`ExpectedLoss.horizon_note` says
    so.

    Examples
    --------
    >>> import npl_engine as npl
    >>> el = npl.expected_loss("models/m1", "data/tape", "scenarios/eu_2026.toml",
    ...                        discount_rate=0.08)  # doctest: +SKIP
    >>> el.save("out/expected_loss")  # doctest: +SKIP
    """
    if discount_rate is not None and not discount_rate > -1:
        msg = f"discount_rate must be an annual rate above -1, got {discount_rate}"
        raise NplError(msg)
    if chunk_rows < 0:
        msg = f"chunk_rows must be 0 (in memory) or more, got {chunk_rows}"
        raise NplError(msg)
    say = progress or (lambda _: None)
    fitted = resolve_model(model)
    scenario_set, horizon_note = fit_horizon(fitted, resolve_scenarios(scenarios))
    grid = collateral_grid_for(scenario_set, monte_carlo=False)
    result = ExpectedLoss(
        loans=pl.DataFrame(),
        by_scenario=pl.DataFrame(),
        groups={},
        discount_basis="contractual" if discount_rate is None else "basel_workout",
        discount_rate=discount_rate,
        horizon_note=horizon_note,
    )
    names = [s.name for s in scenario_set.scenarios]

    def work(loans: pl.DataFrame) -> tuple[pl.DataFrame, _Sums]:
        """Per-loan rows and sums of the tape or a chunk, on the cluster if one is given."""
        if cluster is not None:
            return _expected_loss_on_cluster(
                cluster, fitted, loans, scenario_set, grid=grid, discount_rate=discount_rate,
                say=say,
            )  # fmt: skip
        return _expected_loss_part(
            fitted, loans, scenario_set, grid=grid, discount_rate=discount_rate, say=say
        )

    if chunk_rows:
        spill, sums = spill_chunks(
            resolve_tape(tape).loans,
            work,
            chunk_rows=chunk_rows,
            file_name=_SPILL_FILE,
            say=say,
        )
        by_scenario, groups = _tables(_combine_sums(sums, names), scenario_set)
        loans: pl.DataFrame | pl.LazyFrame = pl.scan_parquet(Path(spill.name) / _SPILL_FILE)
        return replace(result, loans=loans, by_scenario=by_scenario, groups=groups, _spill=spill)
    rows, part = work(resolve_tape(tape).loans.collect())
    by_scenario, groups = _tables(part, scenario_set)
    return replace(result, loans=rows, by_scenario=by_scenario, groups=groups)


def _expected_loss_part(
    model: Any,
    loans: pl.DataFrame,
    scenarios: ScenarioSet,
    *,
    grid: tuple[float, ...],
    discount_rate: float | None,
    say: Progress | None = None,
) -> tuple[pl.DataFrame, _Sums]:
    """Per-loan rows and sums of the expected loss of ``loans`` (a tape, a chunk, a partition)."""
    portfolio, _ = scored_portfolio(model, loans, collateral_grid=grid, progress=say)
    if say is not None:
        say("discounting each loan's net collections under each scenario")
    try:
        rows, lgd = _loan_rows(
            portfolio, scenarios, attributes=risk_attributes(loans), discount_rate=discount_rate
        )
    except ValueError as exc:
        raise NplError(str(exc)) from exc
    return rows, _sums(rows, lgd, [s.name for s in scenarios.scenarios])


def _expected_loss_task(
    loans: pl.DataFrame,
    model: Any,
    scenarios: ScenarioSet,
    grid: tuple[float, ...],
    discount_rate: float | None,
) -> tuple[pl.DataFrame, _Sums]:
    """One partition's per-loan rows and sums, on a worker."""
    return _expected_loss_part(model, loans, scenarios, grid=grid, discount_rate=discount_rate)


def _expected_loss_on_cluster(
    cluster: Cluster,
    model: Any,
    loans: pl.DataFrame,
    scenarios: ScenarioSet,
    *,
    grid: tuple[float, ...],
    discount_rate: float | None,
    say: Progress,
) -> tuple[pl.DataFrame, _Sums]:
    """Per-loan rows (in input order) and sums, each partition worked out on a worker.

    Only the per-loan rows and the partitions' sums come back to the client, never the
    loans' curves; the sums are added as the chunks' are.
    """
    from npl_engine import distributed  # noqa: PLC0415 - it imports this package

    say(f"expected loss of {loans.height:,} loans on {cluster.address or 'the cluster'}")
    positions, results = distributed.map_partitions(
        cluster,
        _expected_loss_task,
        loans,
        broadcast={"model": model},
        scenarios=scenarios,
        grid=grid,
        discount_rate=discount_rate,
    )
    order = pl.Series(distributed.input_order(positions))
    rows = pl.concat([r[0] for r in results])[order]
    return rows, _combine_sums([r[1] for r in results], [s.name for s in scenarios.scenarios])


_SPILL_FILE = "expected_loss.parquet"
