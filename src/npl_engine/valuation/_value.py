"""Value a tape in one call, and the valuation folder's one writer and one reader.

:func:`value` runs what ``npl value`` runs: scoring and the collateral response
(:func:`~npl_engine.valuation.build_portfolio`), the prices per scenario
(:func:`~npl_engine.valuation.value_portfolio`), the bid grid, the price tornado, the Monte
Carlo and the tranche waterfall, each when asked for. :class:`Valuation` holds the results;
:meth:`Valuation.save` writes ``valuation.json``, ``cashflows.parquet`` and ``paths.parquet``,
:meth:`Valuation.load` reads them back and :meth:`Valuation.to_excel` writes the workbook.
"""

from __future__ import annotations

import json
import math
import os
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt
import polars as pl

from npl_engine.data import count_loans
from npl_engine.data.writers import atomic_folder
from npl_engine.errors import NplError
from npl_engine.scenarios import ScenarioSet
from npl_engine.scoring import RecoveryModel, chunk_rows_for
from npl_engine.valuation import _sensitivity
from npl_engine.valuation._cashflows import PortfolioSums, check_horizon, portfolio_sums
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
from npl_engine.valuation._montecarlo import (
    MonteCarloResult,
    MonteCarloSettings,
    PathDraws,
    draw_paths,
    path_flows,
    paths_from_flows,
)
from npl_engine.valuation._portfolio import Portfolio, collateral_grid_for
from npl_engine.valuation._pricing import ScenarioValue, ScenarioValues, value_portfolio
from npl_engine.valuation._sensitivity import SensitivitySettings
from npl_engine.valuation._tranche_settings import TrancheStructure, load_tranches
from npl_engine.valuation._waterfall import tranche_report
from npl_engine.valuation._workbook import write_valuation_workbook

if TYPE_CHECKING:
    from npl_engine.distributed import Cluster, DistributedPortfolio

__all__ = ["VALUE_FILES", "Valuation", "value"]

VALUE_FILES = frozenset({"valuation.json", "cashflows.parquet", "paths.parquet"})
"""Files a valuation folder holds (an existing folder holding only these may be replaced)."""

_GRID_SCHEMA = {
    "target_irr": pl.Float64,
    "scenario": pl.String,
    "price": pl.Float64,
    "price_pct_gbv": pl.Float64,
}
_TORNADO_SCHEMA = {
    "driver": pl.String,
    "shock": pl.String,
    "direction": pl.String,
    "price": pl.Float64,
    "price_pct_gbv": pl.Float64,
    "change": pl.Float64,
    "change_pct": pl.Float64,
}
_PRICES = ("gbv", "n_loans", "target_irr", "horizon_months", "price", "scenarios", "weighted")


@dataclass(frozen=True, slots=True, eq=False)
class Valuation:
    """A tape's valuation: prices per scenario and, as asked, bid grid, tornado, paths, tranches.

    Returned by :func:`value`; :meth:`save` writes what ``npl value --out`` writes and
    :meth:`load` reads it back.

    Parameters
    ----------
    prices
        Price, collections and costs per scenario and weighted, and the monthly cash flows
        (:func:`~npl_engine.valuation.value_portfolio`).
    price_grid
        The bid grid (:func:`~npl_engine.valuation.price_grid`): ``target_irr``, ``scenario``,
        ``price``, ``price_pct_gbv``; ``None`` without one.
    sensitivities
        The price tornado (:func:`~npl_engine.valuation.sensitivities`); ``None`` without one.
    sensitivity_settings
        The shock sizes of the tornado.
    simulation
        The Monte Carlo summary (paths per scenario, mean price, percentiles of net
        collections, price and IRR at the price); ``None`` without a Monte Carlo.
    paths
        One row per Monte Carlo path: ``path``, ``scenario``, ``factor``, ``net_collections``,
        ``price``, ``irr_at_price``.
    tranches
        The waterfall of each scenario and path at the price paid
        (:func:`~npl_engine.valuation.tranche_report`).
    horizon_note
        Why the valuation ran over fewer months than the scenario file asked, if it did.
    portfolio, loans
        The scored loans and the tape's ``loans`` valued, kept for the workbook's strats and a
        decision record; not saved (``None`` after :meth:`load`). A run in chunks keeps no
        portfolio, and ``loans`` is then the tape's lazy scan.
    per_loan
        What :meth:`loan_values` returns: in memory, or for a run in chunks a lazy scan of the
        temporary Parquet file the chunks wrote it to (removed with the valuation).

    Examples
    --------
    >>> import npl_engine as npl
    >>> v = npl.value("model", "tape", "scenarios/eu_2026.toml",
    ...               irr_grid=(0.10, 0.12), simulations=500)  # doctest: +SKIP
    >>> v.weighted.price, v.price_grid  # doctest: +SKIP
    >>> npl.Valuation.load(v.save("out/valuation")).to_dict() == v.to_dict()  # doctest: +SKIP
    True
    """

    prices: ScenarioValues
    price_grid: pl.DataFrame | None = None
    sensitivities: pl.DataFrame | None = None
    sensitivity_settings: SensitivitySettings | None = None
    simulation: dict[str, Any] | None = None
    paths: pl.DataFrame | None = None
    tranches: dict[str, Any] | None = None
    horizon_note: str | None = None
    # Per-loan inputs: left out of the repr, which a notebook prints.
    portfolio: Portfolio | None = field(default=None, repr=False)
    loans: pl.DataFrame | pl.LazyFrame | None = field(default=None, repr=False)
    per_loan: pl.DataFrame | pl.LazyFrame | None = field(default=None, repr=False)
    #: The temporary folder holding the per-loan values of a run in chunks (removed with it).
    _spill: Any = field(default=None, repr=False)

    @property
    def gbv(self) -> float:
        """Gross book value of the tape."""
        return self.prices.gbv

    @property
    def n_loans(self) -> int:
        """Loans valued."""
        return self.prices.n_loans

    @property
    def target_irr(self) -> float:
        """The annual discount rate of the prices."""
        return self.prices.target_irr

    @property
    def horizon_months(self) -> int:
        """Months of collections valued."""
        return self.prices.horizon_months

    @property
    def price(self) -> float | None:
        """The price paid the IRR and MOIC are computed at, if one was given."""
        return self.prices.price

    @property
    def scenarios(self) -> tuple[ScenarioValue, ...]:
        """The value under each scenario, in the scenario file's order."""
        return self.prices.scenarios

    @property
    def weighted(self) -> ScenarioValue:
        """The weight-averaged value (the bid)."""
        return self.prices.weighted

    @property
    def by_scenario(self) -> pl.DataFrame:
        """One row per scenario, in the file's order, and a last ``weighted`` row.

        The figures of :attr:`scenarios` and :attr:`weighted` as a table (price at the target
        IRR, present value, undiscounted collections and, if a price was given, IRR and MOIC),
        to compare scenarios side by side.
        """
        return pl.DataFrame([s.to_dict() for s in (*self.scenarios, self.weighted)])

    @property
    def cash_flows(self) -> pl.DataFrame:
        """Monthly cash flows per scenario and weighted (``cashflows.parquet``)."""
        return self.prices.cash_flows

    def loan_values(self) -> pl.DataFrame | pl.LazyFrame:
        """Per loan: ``loan_id``, ``exposure``, ``p_recover`` and ``expected_collections``.

        A frame in the tape's order; for a run in chunks, a lazy scan of the file the chunks
        wrote (the same rows as in memory).

        Raises
        ------
        NplError
            For a valuation read from a folder, which holds no per-loan figures.
        """
        if self.per_loan is not None:
            return self.per_loan
        if self.portfolio is None:
            msg = "this valuation was read from a folder: it holds no per-loan figures"
            raise NplError(msg)
        return _loan_values(self.portfolio)

    def to_dict(self) -> dict[str, Any]:
        """The content of ``valuation.json`` (JSON-ready)."""
        out = self.prices.to_dict()
        if self.horizon_note is not None:
            out["horizon_note"] = self.horizon_note
        if self.price_grid is not None:
            out["price_grid"] = self.price_grid.to_dicts()
        if self.sensitivities is not None:
            out["sensitivities"] = {
                "base_price": self.weighted.price,
                "target_irr": self.target_irr,
                "settings": asdict(self.sensitivity_settings or SensitivitySettings()),
                "shocks": self.sensitivities.to_dicts(),
            }
        if self.simulation is not None:
            out["simulation"] = self.simulation
        if self.tranches is not None:
            out["tranches"] = self.tranches
        return out

    def save(self, folder: str | os.PathLike[str]) -> Path:
        """Write ``valuation.json``, ``cashflows.parquet`` and, with paths, ``paths.parquet``.

        The folder is created (an existing one is replaced only if it holds nothing but these
        files); everything is written into a staging folder first, so a failed write leaves
        nothing. Returns the folder.
        """
        target = Path(folder)
        with atomic_folder(target, allowed=VALUE_FILES) as staging:
            (staging / "valuation.json").write_text(json.dumps(self.to_dict(), indent=2) + "\n")
            self.cash_flows.write_parquet(staging / "cashflows.parquet")
            if self.paths is not None:
                self.paths.write_parquet(staging / "paths.parquet")
        return target

    @classmethod
    def load(cls, folder: str | os.PathLike[str]) -> Valuation:
        """Read a valuation folder written by :meth:`save` (or ``npl value --out``).

        Raises
        ------
        NplError
            If the folder holds no valuation or one of its files cannot be read.
        """
        root = Path(folder)
        meta_path = root / "valuation.json"
        if not meta_path.is_file():
            msg = f"{root} is not a valuation folder: valuation.json is missing (see `npl value`)"
            raise NplError(msg)
        try:
            meta = json.loads(meta_path.read_text())
            cash_flows = pl.read_parquet(root / "cashflows.parquet")
            paths_file = root / "paths.parquet"
            paths = pl.read_parquet(paths_file) if paths_file.exists() else None
            prices = ScenarioValues(
                gbv=float(meta["gbv"]),
                n_loans=int(meta["n_loans"]),
                target_irr=float(meta["target_irr"]),
                horizon_months=int(meta["horizon_months"]),
                scenarios=tuple(_scenario_value(s) for s in meta["scenarios"]),
                weighted=_scenario_value(meta["weighted"]),
                price=None if meta["price"] is None else float(meta["price"]),
                cash_flows=cash_flows,
            )
            shocks = meta.get("sensitivities")
            grid = meta.get("price_grid")
            return cls(
                prices=prices,
                price_grid=None if grid is None else pl.DataFrame(grid, schema=_GRID_SCHEMA),
                sensitivities=None
                if shocks is None
                else pl.DataFrame(shocks["shocks"], schema=_TORNADO_SCHEMA),
                sensitivity_settings=None
                if shocks is None
                else SensitivitySettings(**shocks["settings"]),
                simulation=meta.get("simulation"),
                paths=paths,
                tranches=meta.get("tranches"),
                horizon_note=meta.get("horizon_note"),
            )
        except (OSError, KeyError, ValueError, TypeError, pl.exceptions.PolarsError) as exc:
            msg = f"{root}: cannot read the valuation ({type(exc).__name__}: {exc})"
            raise NplError(msg) from exc

    def to_excel(self, path: str | os.PathLike[str]) -> Path:
        """Write the workbook ``npl value --xlsx`` writes; returns its path.

        Sheets: ``valuation``, ``price_grid``, ``sensitivities``, ``cash_flows``, ``strats``
        (the tape's strats with the model's expected recovery), ``tranches`` and
        ``simulation``, each when the valuation holds it
        (:func:`~npl_engine.valuation.write_valuation_workbook`). A valuation read from a
        folder holds no tape, so its workbook has no ``strats`` sheet.

        Raises
        ------
        NplError
            If the name does not end in ``.xlsx`` or the file cannot be written.
        """
        from npl_engine.strats import stratify  # noqa: PLC0415 - only the workbook needs it

        target = Path(path)
        if target.suffix.lower() != ".xlsx":
            msg = f"{target}: an Excel workbook's name ends in .xlsx"
            raise NplError(msg)
        strats = None
        if self.loans is not None and (self.per_loan is not None or self.portfolio is not None):
            strats = stratify(self.loans, scores=self.loan_values())
        try:
            return write_valuation_workbook(
                target,
                self.prices,
                price_grid=self.price_grid,
                sensitivities=self.sensitivities,
                strats=strats,
                tranches=self.tranches,
                simulation=self.simulation,
            )
        except OSError as exc:
            msg = f"{target}: cannot write the workbook: {exc.strerror or exc}"
            raise NplError(msg) from exc


def _scenario_value(entry: dict[str, Any]) -> ScenarioValue:
    """A scenario's value from its ``valuation.json`` entry (``None`` stands for NaN)."""
    nan = math.nan

    def number(key: str) -> float:
        x = entry[key]
        return nan if x is None else float(x)

    def optional(key: str) -> float | None:
        x = entry.get(key)
        return None if x is None else float(x)

    return ScenarioValue(
        name=str(entry["name"]),
        weight=number("weight"),
        gross_collections=number("gross_collections"),
        costs=number("costs"),
        net_collections=number("net_collections"),
        price=number("price"),
        price_pct_gbv=number("price_pct_gbv"),
        irr_at_price=optional("irr_at_price"),
        moic=optional("moic"),
    )


def _paths_frame(paths: MonteCarloResult, names: Sequence[str]) -> pl.DataFrame:
    """One row per Monte Carlo path, as ``paths.parquet`` holds them."""
    return pl.DataFrame(
        {
            "path": np.arange(paths.net.shape[0]),
            "scenario": [names[i] for i in paths.scenario],
            "factor": paths.factor,
            "net_collections": paths.net.sum(axis=1),
            "price": paths.price,
            "irr_at_price": paths.irr_at_price,
        }
    )


def _check_options(
    simulations: int,
    target_irr: float | None,
    price: float | None,
    irr_grid: Sequence[float],
    chunk_rows: int | None,
) -> tuple[float, ...]:
    """Refuse a bad option before any long work; the grid's rates as floats."""
    if chunk_rows is not None and (
        isinstance(chunk_rows, bool) or not isinstance(chunk_rows, int) or chunk_rows < 0
    ):
        msg = f"chunk_rows must be 0 (in memory) or a positive number of loans, got {chunk_rows!r}"
        raise NplError(msg)
    if isinstance(simulations, bool) or not isinstance(simulations, int) or simulations < 0:
        msg = f"simulations must be a whole number of paths, 0 or more, got {simulations!r}"
        raise NplError(msg)
    if target_irr is not None and not target_irr > -1:
        msg = f"target_irr must be an annual rate above -1, got {target_irr}"
        raise NplError(msg)
    if price is not None and not price > 0:
        msg = f"price must be positive, got {price}"
        raise NplError(msg)
    rates = tuple(float(r) for r in irr_grid)
    if any(not r > -1 for r in rates):
        msg = f"irr_grid: every target IRR must be above -1, got {list(rates)}"
        raise NplError(msg)
    return rates


def value(
    model: ModelInput,
    tape: TapeInput,
    scenarios: ScenariosInput,
    *,
    simulations: int = 0,
    seed: int = 0,
    target_irr: float | None = None,
    price: float | None = None,
    irr_grid: Sequence[float] = (),
    sensitivities: bool | SensitivitySettings = False,
    tranches: TrancheStructure | str | os.PathLike[str] | None = None,
    progress: Progress | None = None,
    path_progress: Callable[[int, int], None] | None = None,
    cluster: Cluster | None = None,
    chunk_rows: int | None = None,
) -> Valuation:
    """Value a tape under weighted scenarios: what ``npl value`` computes, in one call.

    Parameters
    ----------
    model
        A fitted :class:`~npl_engine.scoring.RecoveryModel`, or the folder it was saved in.
    tape
        The loans to value: a :class:`~npl_engine.data.Dataset` or its folder.
    scenarios
        Pricing assumptions and weighted scenarios: a
        :class:`~npl_engine.scenarios.ScenarioSet` or its TOML file.
    simulations
        Monte Carlo paths (0: none).
    seed
        Seed of the Monte Carlo.
    target_irr
        Annual discount rate of the prices; default the scenario file's ``target_irr``.
    price
        A price paid at the cut-off: adds the IRR and MOIC at that price, and is the price the
        tranches are sized on (default: the weighted price).
    irr_grid
        Target IRRs of a bid grid (empty: none); :func:`~npl_engine.valuation.irr_grid` makes
        a range.
    sensitivities
        ``True`` for the price tornado with the default shocks, or the
        :class:`~npl_engine.valuation.SensitivitySettings` to use.
    tranches
        A tranche structure (:func:`~npl_engine.valuation.load_tranches`) or its TOML file:
        runs the waterfall on every scenario and path.
    progress
        Called with a short description before each long step.
    path_progress
        Called with (paths done, paths in all) as the in-memory Monte Carlo runs.
    cluster
        A Dask cluster (:func:`npl_engine.distributed.connect`): scoring and the Monte Carlo
        run on its workers, with the same results.
    chunk_rows
        Loans worked on at a time (each chunk on the cluster, if given): ``None`` (default) 250,000
        when the tape holds more, else the whole tape in memory; 0 the whole tape in memory; N > 0,
        N at a time, read from a lazy scan of the tape. Each chunk is scored and summed (its
        scenario cash flows and Monte Carlo path flows are sums over its loans) and its loan values
        are written to a temporary Parquet file (:meth:`Valuation.loan_values` is then a scan of
        it); the sums are priced once. Peak memory follows N, not the tape; the per-loan values are
        the in-memory ones and every figure equals them to rounding (docs/scale.md#out-of-core).

    Returns
    -------
    Valuation

    Raises
    ------
    NplError
        If an argument is invalid, the scenario horizon exceeds what the model predicts, or an
        input file cannot be read.

    Notes
    -----
    A model trained on a book too short for its valuation horizon predicts fewer months; the
    valuation then runs over those months and :attr:`Valuation.horizon_note` says so. Prices
    are present values of net collections at the target IRR, month t discounted by
    ``(1 + target_irr) ** (t / 12)``, cash at the end of each month (``docs/valuation.md``).

    Examples
    --------
    >>> import npl_engine as npl
    >>> model = npl.RecoveryModel.load("models/m1")  # doctest: +SKIP
    >>> v = npl.value(model, "data/tape", "scenarios/eu_2026.toml", price=40e6,
    ...               irr_grid=npl.irr_grid(0.08, 0.20, 0.01), sensitivities=True)  # doctest: +SKIP
    >>> v.save("out/valuation"); v.to_excel("out/valuation.xlsx")  # doctest: +SKIP
    """
    rates = _check_options(simulations, target_irr, price, irr_grid, chunk_rows)
    say = progress or (lambda _: None)
    scenario_set = resolve_scenarios(scenarios)
    structure = _tranche_structure(tranches)
    shocks = _shock_sizes(sensitivities)
    fitted = resolve_model(model)
    dataset = resolve_tape(tape)
    grid = collateral_grid_for(scenario_set, monte_carlo=bool(simulations))
    changes = tuple(s.collateral_value_change for s in scenario_set.scenarios)
    if shocks is not None:
        grid = tuple(sorted({*grid, *shocks.collateral_changes(scenario_set)}))
        changes = (*changes, *shocks.collateral_changes(scenario_set))
    scenario_set, horizon_note = fit_horizon(fitted, scenario_set)
    try:
        check_horizon(fitted.horizon_months, scenario_set.pricing)
    except ValueError as exc:
        raise NplError(str(exc)) from exc
    part = _Part(
        model=fitted,
        scenarios=scenario_set,
        collateral_grid=grid,
        collateral_changes=changes,
        monte_carlo=MonteCarloSettings(n_paths=simulations, seed=seed) if simulations else None,
        cluster=cluster,
        progress=say,
        path_progress=path_progress,
    )
    n = count_loans(dataset.loans)
    rows = chunk_rows_for(n, chunk_rows)
    if rows:
        spill, sums, flows = _sums_in_chunks(part, dataset.loans, chunk_rows=rows, n_loans=n)
        kept: dict[str, Any] = {
            "loans": dataset.loans,
            "per_loan": pl.scan_parquet(Path(spill.name) / _SPILL_FILE),
            "_spill": spill,
        }
    else:
        loans = dataset.loans.collect()
        portfolio, sums, flows = part.sums(loans)
        kept = {"loans": loans, "portfolio": portfolio, "per_loan": _loan_values(portfolio)}
    say("valuing scenarios")
    try:
        prices = value_portfolio(sums, scenario_set, target_irr=target_irr, price=price)
        bids = _sensitivity.price_grid(sums, scenario_set, rates) if rates else None
        tornado = None
        if shocks is not None:
            tornado = _sensitivity.sensitivities(
                sums, scenario_set, target_irr=prices.target_irr, settings=shocks
            )
    except ValueError as exc:
        raise NplError(str(exc)) from exc
    paths = None
    if flows is not None and part.monte_carlo is not None and part.draws is not None:
        paths = paths_from_flows(
            flows, scenario_set, part.monte_carlo, part.draws, n_loans=sums.n_loans,
            target_irr=target_irr, price=price,
        )  # fmt: skip
    tranche_results = None
    if structure is not None:
        paid = price if price is not None else prices.weighted.price
        tranche_results = tranche_report(
            structure,
            prices,
            paths,
            price=paid,
            servicing_fee=scenario_set.pricing.servicing_fee,
        )
    return Valuation(
        prices=prices,
        price_grid=bids,
        sensitivities=tornado,
        sensitivity_settings=shocks,
        simulation=None if paths is None else paths.to_dict(scenario_set.names),
        paths=None if paths is None else _paths_frame(paths, scenario_set.names),
        tranches=tranche_results,
        horizon_note=horizon_note,
        **kept,
    )


FloatArray = npt.NDArray[np.float64]

_SPILL_FILE = "loan_values.parquet"


def _loan_values(portfolio: Portfolio) -> pl.DataFrame:
    """Per loan: ``loan_id``, ``exposure``, ``p_recover``, ``expected_collections``."""
    p = portfolio
    return pl.DataFrame(
        {
            "loan_id": p.loan_id,
            "exposure": p.exposure,
            "p_recover": p.p_recover,
            "expected_collections": p.borrower.sum(axis=1) + p.collateral.sum(axis=1),
        }
    )


@dataclass(frozen=True, slots=True, eq=False)
class _Part:
    """How a set of loans (the tape, or a chunk of it) becomes the sums the valuation prices.

    Every price is a function of sums over loans (:class:`PortfolioSums`, and the Monte Carlo's
    :func:`path_flows`), so a tape valued in chunks adds the chunks' sums and prices once.
    """

    model: RecoveryModel
    scenarios: ScenarioSet
    collateral_grid: tuple[float, ...]
    collateral_changes: tuple[float, ...]
    monte_carlo: MonteCarloSettings | None
    cluster: Cluster | None
    progress: Progress
    path_progress: Callable[[int, int], None] | None
    draws: PathDraws | None = field(default=None, init=False)

    def __post_init__(self) -> None:
        if self.monte_carlo is not None:
            # Each path's scenario, factor and key: the same for every chunk.
            object.__setattr__(self, "draws", draw_paths(self.scenarios, self.monte_carlo))

    def sums(self, loans: pl.DataFrame) -> tuple[Portfolio, PortfolioSums, FloatArray | None]:
        """The loans scored, their sums and, with a Monte Carlo, their summed path flows."""
        portfolio, book = scored_portfolio(
            self.model,
            loans,
            collateral_grid=self.collateral_grid,
            cluster=self.cluster,
            progress=self.progress,
        )
        sums = portfolio_sums(portfolio, self.collateral_changes)
        if self.monte_carlo is None or self.draws is None:
            return portfolio, sums, None
        return portfolio, sums, self._path_flows(portfolio, book)

    def _path_flows(self, portfolio: Portfolio, book: DistributedPortfolio | None) -> FloatArray:
        assert self.monte_carlo is not None
        assert self.draws is not None
        settings, threshold = self.monte_carlo, self.model.definition.threshold
        if book is not None and self.cluster is not None:
            from npl_engine import distributed  # noqa: PLC0415 - it imports this package

            where = self.cluster.address or "the cluster"
            self.progress(f"Monte Carlo, {settings.n_paths:,} paths on {where}")
            return distributed.path_flows(
                self.cluster, book, self.scenarios, settings, self.draws,
                recovery_threshold=threshold,
            )  # fmt: skip
        self.progress(f"Monte Carlo, {settings.n_paths:,} paths")
        return path_flows(
            portfolio, self.scenarios, settings, self.draws, recovery_threshold=threshold,
            progress=self.path_progress,
        )  # fmt: skip


def _sums_in_chunks(
    part: _Part, loans: pl.LazyFrame, *, chunk_rows: int, n_loans: int
) -> tuple[tempfile.TemporaryDirectory[str], PortfolioSums, FloatArray | None]:
    """The tape's sums, added chunk by chunk; each chunk's loan values written as it comes."""

    def work(chunk: pl.DataFrame) -> tuple[pl.DataFrame, tuple[PortfolioSums, FloatArray | None]]:
        portfolio, sums, flows = part.sums(chunk)
        return _loan_values(portfolio), (sums, flows)

    spill, parts = spill_chunks(
        loans, work, chunk_rows=chunk_rows, file_name=_SPILL_FILE, say=part.progress,
        n_loans=n_loans,
    )  # fmt: skip
    sums, flows = parts[0]
    for more_sums, more_flows in parts[1:]:  # added in chunk order
        sums = sums + more_sums
        if flows is not None and more_flows is not None:
            flows = flows + more_flows
    return spill, sums, flows


def _tranche_structure(
    tranches: TrancheStructure | str | os.PathLike[str] | None,
) -> TrancheStructure | None:
    """The structure given, or read from its file (before any long work)."""
    if tranches is None or isinstance(tranches, TrancheStructure):
        return tranches
    if isinstance(tranches, str | os.PathLike):
        return load_tranches(Path(tranches))
    # A caller without a type checker may pass anything: say what was expected.
    msg = f"tranches: expected a TrancheStructure or a TOML file, got {type(tranches).__name__}"  # type: ignore[unreachable]
    raise NplError(msg)


def _shock_sizes(sensitivities: bool | SensitivitySettings) -> SensitivitySettings | None:
    """The tornado's shock sizes, or ``None`` for no tornado."""
    if isinstance(sensitivities, SensitivitySettings):
        return sensitivities
    if isinstance(sensitivities, bool):
        return SensitivitySettings() if sensitivities else None
    # A caller without a type checker may pass anything: say what was expected.
    msg = (  # type: ignore[unreachable]
        "sensitivities: expected True, False or SensitivitySettings, got "
        f"{type(sensitivities).__name__}"
    )
    raise NplError(msg)
