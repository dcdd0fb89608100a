"""The collections business plan a deal is underwritten on, and its one reader and writer.

:func:`business_plan` turns a scored tape (a :class:`~npl_engine.valuation.Portfolio`) and a
scenario file into the plan: gross collections, costs and net collections by period (a quarter
by default), segment and channel, for every scenario and weighted, with the present value of
each period's net collections at the plan's discount rate. It runs the valuation's own cash-flow
code (:func:`~npl_engine.valuation.scenario_cash_flows`) on each segment, so the plan's
weighted net collections are exactly the valuation's. With Monte Carlo settings it also keeps
the P5-P95 band of the cumulative ratios the backtest reports, from
:func:`~npl_engine.valuation.simulate_paths`.

:meth:`BusinessPlan.save` writes a plan folder (``plan.parquet``, ``plan.csv``,
``bands.parquet``, ``loans.parquet``, ``plan.json``); :meth:`BusinessPlan.load` reads it back.
``docs/plan.md`` explains the tables.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field, replace
from datetime import date
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import polars as pl

from npl_engine.data.writers import atomic_folder
from npl_engine.errors import NplError
from npl_engine.scenarios import PricingAssumptions, ScenarioSet
from npl_engine.valuation._cashflows import scenario_cash_flows
from npl_engine.valuation._finance import discount_factors
from npl_engine.valuation._inputs import (
    ModelInput,
    Progress,
    ScenariosInput,
    TapeInput,
    resolve_model,
    resolve_scenarios,
    resolve_tape,
    scored_portfolio,
)
from npl_engine.valuation._montecarlo import MonteCarloSettings, simulate_paths
from npl_engine.valuation._portfolio import Portfolio, collateral_grid_for

__all__ = [
    "BAND_PERCENTILES",
    "CHANNELS",
    "PLAN_FILES",
    "BusinessPlan",
    "business_plan",
    "portfolio_business_plan",
]

FloatArray = npt.NDArray[np.float64]

CHANNELS: tuple[str, ...] = ("borrower", "collateral_sale", "per_loan_costs")
"""Channels of the plan: borrower payments, collateral-sale proceeds, and the fixed cost per
loan (``cost_per_loan_per_year``), which belongs to neither and has no gross collections."""

BAND_PERCENTILES: tuple[int, ...] = (5, 25, 50, 75, 95)
"""Percentiles of the Monte Carlo band of the cumulative ratios."""

PLAN_FILES = frozenset({"plan.parquet", "plan.csv", "bands.parquet", "loans.parquet", "plan.json"})
"""Files a plan folder holds (an existing folder holding only these may be replaced)."""

_FORMAT_VERSION = 1


@dataclass(frozen=True, slots=True)
class BusinessPlan:
    """A collections business plan: expected collections by period, segment and channel.

    Parameters
    ----------
    cutoff_date
        The tape's cut-off date; month t of the plan is the t-th calendar month after it
        (cash at its end).
    gbv, n_loans
        Gross book value and loan count of the tape.
    discount_rate
        Annual rate of the present values (the scenario file's ``target_irr`` unless
        overridden): month t is discounted by ``(1 + rate) ** (t / 12)``.
    period_months
        Months per period (3: quarterly).
    pricing
        The scenario file's pricing assumptions; the backtest charges realised collections the
        same costs.
    scenario_weights
        Each scenario's name and weight, in file order.
    periods
        One row per scenario (and ``weighted``), period, segment and channel: ``scenario``,
        ``period`` (1, 2, ...), ``start_month``, ``end_month``, ``segment``, ``channel``,
        ``gross``, ``costs``, ``net``, ``pv_net``.
    loans
        One row per loan: ``loan_id``, ``segment``, ``in_legal_stage`` (whether legal costs
        are charged on its collections).
    bands
        With a Monte Carlo: one row per period: ``period``, ``end_month``, ``n_paths``, and the
        percentiles over paths of cumulative net collections to the period's end
        (``cum_net_p5`` ...) and of their present value (``cum_pv_p5`` ...).
    settings
        Anything else worth recording in ``plan.json`` (the inputs' paths, the seed).

    Examples
    --------
    >>> import npl_engine as npl
    >>> plan = npl.business_plan("models/m1", "data/tape",
    ...                          "scenarios/eu_2026.toml")  # doctest: +SKIP
    >>> plan.save("out/plan")  # doctest: +SKIP
    >>> npl.BusinessPlan.load("out/plan").totals()  # doctest: +SKIP
    """

    cutoff_date: date
    gbv: float
    n_loans: int
    discount_rate: float
    period_months: int
    pricing: PricingAssumptions
    scenario_weights: tuple[tuple[str, float], ...]
    periods: pl.DataFrame
    loans: pl.DataFrame
    bands: pl.DataFrame | None = None
    settings: dict[str, Any] = field(default_factory=dict)

    @property
    def horizon_months(self) -> int:
        """Months the plan covers."""
        return int(self.pricing.horizon_months)

    def scenario(self, name: str = "weighted") -> pl.DataFrame:
        """The plan of one scenario (default: the weighted plan), as :attr:`periods`."""
        names = [n for n, _ in self.scenario_weights] + ["weighted"]
        if name not in names:
            msg = f"the plan has no scenario {name!r}; it has {', '.join(map(repr, names))}"
            raise NplError(msg)
        return self.periods.filter(pl.col("scenario") == name)

    def totals(self) -> pl.DataFrame:
        """One row per scenario and period: gross, costs, net and PV over segments and channels.

        Scenarios in file order, then ``weighted``; periods in order (as :attr:`periods`).
        """
        return self.periods.group_by(
            "scenario", "period", "start_month", "end_month", maintain_order=True
        ).agg(pl.col("gross", "costs", "net", "pv_net").sum())

    def to_dict(self) -> dict[str, Any]:
        """The content of ``plan.json``: settings and the totals per scenario."""
        totals = self.periods.group_by("scenario", maintain_order=True).agg(
            pl.col("gross", "costs", "net", "pv_net").sum()
        )
        return {
            "format_version": _FORMAT_VERSION,
            "cutoff_date": self.cutoff_date.isoformat(),
            "gbv": self.gbv,
            "n_loans": self.n_loans,
            "discount_rate": self.discount_rate,
            "period_months": self.period_months,
            "horizon_months": self.horizon_months,
            "pricing": self.pricing.model_dump(),
            "scenarios": [{"name": n, "weight": w} for n, w in self.scenario_weights],
            "segments": sorted(self.loans["segment"].unique().to_list()),
            "channels": list(CHANNELS),
            "monte_carlo": self.bands is not None,
            "totals": totals.to_dicts(),
            "settings": self.settings,
        }

    def save(self, folder: str | os.PathLike[str]) -> Path:
        """Write the plan into ``folder`` (created; it must not hold other files).

        ``plan.parquet`` and ``plan.csv`` hold :attr:`periods`; ``loans.parquet`` the loans;
        ``bands.parquet`` the Monte Carlo band, if any; ``plan.json`` the settings and totals.
        Everything is written into a staging folder first: a failed write leaves nothing.
        """
        target = Path(folder)
        with atomic_folder(target, allowed=PLAN_FILES) as staging:
            self.periods.write_parquet(staging / "plan.parquet")
            self.periods.write_csv(staging / "plan.csv")
            self.loans.write_parquet(staging / "loans.parquet")
            if self.bands is not None:
                self.bands.write_parquet(staging / "bands.parquet")
            (staging / "plan.json").write_text(json.dumps(self.to_dict(), indent=2) + "\n")
        return target

    @classmethod
    def load(cls, folder: str | os.PathLike[str]) -> BusinessPlan:
        """Read a plan folder written by :meth:`save`.

        Raises
        ------
        NplError
            If the folder or one of its files is missing or is not a plan.
        """
        root = Path(folder)
        meta_path = root / "plan.json"
        if not meta_path.is_file():
            msg = f"{root} is not a plan folder: {meta_path.name} is missing (see `npl plan`)"
            raise NplError(msg)
        try:
            meta = json.loads(meta_path.read_text())
            periods = pl.read_parquet(root / "plan.parquet")
            loans = pl.read_parquet(root / "loans.parquet")
            bands_path = root / "bands.parquet"
            bands = pl.read_parquet(bands_path) if bands_path.exists() else None
            return cls(
                cutoff_date=date.fromisoformat(meta["cutoff_date"]),
                gbv=float(meta["gbv"]),
                n_loans=int(meta["n_loans"]),
                discount_rate=float(meta["discount_rate"]),
                period_months=int(meta["period_months"]),
                pricing=PricingAssumptions.model_validate(meta["pricing"]),
                scenario_weights=tuple((s["name"], float(s["weight"])) for s in meta["scenarios"]),
                periods=periods,
                loans=loans,
                bands=bands,
                settings=dict(meta.get("settings", {})),
            )
        except (OSError, KeyError, ValueError, TypeError, pl.exceptions.PolarsError) as exc:
            msg = f"{root}: cannot read the plan ({type(exc).__name__}: {exc})"
            raise NplError(msg) from exc


def portfolio_business_plan(
    portfolio: Portfolio,
    scenarios: ScenarioSet,
    *,
    cutoff_date: date,
    target_irr: float | None = None,
    period_months: int = 3,
    monte_carlo: MonteCarloSettings | None = None,
    recovery_threshold: float = 0.5,
    settings: dict[str, Any] | None = None,
) -> BusinessPlan:
    """Build the collections business plan of a scored tape (:func:`business_plan` scores it).

    Parameters
    ----------
    portfolio
        The scored tape (:func:`~npl_engine.valuation.build_portfolio`).
    scenarios
        Pricing assumptions (costs, horizon, discount rate) and weighted scenarios.
    cutoff_date
        The tape's common cut-off date.
    target_irr
        Discount rate of the present values; default the scenario file's ``target_irr``.
    period_months
        Months per period, 1 to 12 (3 = quarterly, the default). A horizon that is not a
        multiple of it ends with a shorter period.
    monte_carlo
        If given, simulate paths (:func:`~npl_engine.valuation.simulate_paths`) and keep the
        P5-P95 band of the cumulative collection and PV ratios per period.
    recovery_threshold
        The recovery definition's threshold θ, used by the Monte Carlo only.
    settings
        Extra entries for ``plan.json`` (the CLI records its inputs there).

    Returns
    -------
    BusinessPlan

    Notes
    -----
    Per segment and scenario, :func:`~npl_engine.valuation.scenario_cash_flows` gives monthly
    borrower and collateral-sale collections and costs, as the valuation computes them. The
    costs are split by channel by running it once with each channel alone: each channel
    carries its own servicing fee, legal costs and sale costs, and the fixed cost per loan is
    the channel ``per_loan_costs`` (gross 0). The ``weighted`` plan is the weight-average of
    the scenarios' rows; summed over segments and channels its net collections equal the
    valuation's weighted net collections month by month. Cash falls at the end of each month;
    ``pv_net`` discounts each month by ``(1 + rate) ** (t / 12)`` before summing a period.

    Examples
    --------
    >>> import numpy as np, polars as pl
    >>> from datetime import date
    >>> from npl_engine.scenarios import PricingAssumptions, Scenario, ScenarioSet
    >>> from npl_engine.valuation import Portfolio
    >>> p = Portfolio(loan_id=pl.Series(["a"]), segment=pl.Series(["auto"]),
    ...     legal_stage=pl.Series(["none"]), exposure=np.array([100.0]),
    ...     interest_rate=np.array([0.05]), in_legal_stage=np.array([False]),
    ...     p_recover=np.array([0.5]), borrower=np.full((1, 6), 10.0),
    ...     collateral=np.zeros((1, 6)), recovery_horizon_share=np.array([1.0]),
    ...     collateral_grid=np.array([0.0]), collateral_response=np.ones((1, 1)))
    >>> s = ScenarioSet(pricing=PricingAssumptions(target_irr=0.0, servicing_fee=0.1,
    ...     horizon_months=6), scenarios=[Scenario(name="base", weight=1.0,
    ...     collateral_value_change=0.0, collections_multiplier=1.0, delay_months=0)])
    >>> plan = portfolio_business_plan(p, s, cutoff_date=date(2026, 9, 30))
    >>> plan.totals().filter(pl.col("scenario") == "weighted")["net"].to_list()
    [27.0, 27.0]
    """
    if not 1 <= period_months <= 12:
        msg = f"period_months must be between 1 and 12, got {period_months}"
        raise ValueError(msg)
    pricing = scenarios.pricing
    if target_irr is not None:
        pricing = pricing.model_copy(update={"target_irr": target_irr})
    h = pricing.horizon_months
    if h > portfolio.horizon_months:
        msg = (
            f"the scenario file's horizon_months is {h}, but the model predicts collections for "
            f"{portfolio.horizon_months} months only"
        )
        raise ValueError(msg)
    discount = discount_factors(h, pricing.target_irr)
    months = np.arange(1, h + 1)
    period = (months - 1) // period_months + 1
    segments = portfolio.segment.to_numpy()
    weights = {s.name: s.weight for s in scenarios.scenarios}
    frames = []
    for segment in sorted(set(segments.tolist())):
        part = portfolio.take(np.nonzero(segments == segment)[0].astype(np.int64))
        only_borrower = replace(part, collateral=np.zeros_like(part.collateral))
        only_collateral = replace(part, borrower=np.zeros_like(part.borrower))
        fixed = np.full(h, pricing.cost_per_loan_per_year / 12.0 * part.n_loans)
        mix: dict[str, FloatArray] = {c: np.zeros((3, h)) for c in CHANNELS}
        for s in scenarios.scenarios:
            b = scenario_cash_flows(only_borrower, s, pricing)
            c = scenario_cash_flows(only_collateral, s, pricing)
            channels = {
                "borrower": np.stack([b.gross, b.costs - fixed, b.gross - b.costs + fixed]),
                "collateral_sale": np.stack([c.gross, c.costs - fixed, c.gross - c.costs + fixed]),
                "per_loan_costs": np.stack([np.zeros(h), fixed, -fixed]),
            }
            for channel, flows in channels.items():
                frames.append(
                    _monthly(
                        scenario=s.name,
                        segment=segment,
                        channel=channel,
                        flows=flows,
                        months=months,
                        discount=discount,
                    )
                )
                mix[channel] += weights[s.name] * flows
        for channel, flows in mix.items():
            frames.append(
                _monthly(
                    scenario="weighted",
                    segment=segment,
                    channel=channel,
                    flows=flows,
                    months=months,
                    discount=discount,
                )
            )
    monthly = pl.concat(frames).with_columns(period=pl.Series(np.tile(period, len(frames))))
    periods = (
        monthly.group_by("scenario", "period", "segment", "channel", maintain_order=True)
        .agg(
            start_month=pl.col("month").min(),
            end_month=pl.col("month").max(),
            gross=pl.col("gross").sum(),
            costs=pl.col("costs").sum(),
            net=pl.col("net").sum(),
            pv_net=pl.col("pv_net").sum(),
        )
        .select(
            "scenario",
            "period",
            "start_month",
            "end_month",
            "segment",
            "channel",
            "gross",
            "costs",
            "net",
            "pv_net",
        )
    )
    order = {name: i for i, name in enumerate([*weights, "weighted"])}
    periods = periods.sort(
        pl.col("scenario").replace_strict(order, return_dtype=pl.Int64),
        "period",
        "segment",
        pl.col("channel").replace_strict({c: i for i, c in enumerate(CHANNELS)}),
    )
    bands = None
    if monte_carlo is not None:
        paths = simulate_paths(
            portfolio,
            scenarios,
            monte_carlo,
            recovery_threshold=recovery_threshold,
            target_irr=pricing.target_irr,
        )
        bands = _bands(paths.net, discount, period_months)
    return BusinessPlan(
        cutoff_date=cutoff_date,
        gbv=portfolio.gbv,
        n_loans=portfolio.n_loans,
        discount_rate=float(pricing.target_irr),
        period_months=period_months,
        pricing=pricing,
        scenario_weights=tuple((s.name, s.weight) for s in scenarios.scenarios),
        periods=periods,
        loans=pl.DataFrame(
            {
                "loan_id": portfolio.loan_id,
                "segment": portfolio.segment,
                "in_legal_stage": portfolio.in_legal_stage,
            }
        ),
        bands=bands,
        settings=dict(settings or {})
        | (
            {"monte_carlo": {"n_paths": monte_carlo.n_paths, "seed": monte_carlo.seed}}
            if monte_carlo is not None
            else {}
        ),
    )


def business_plan(
    model: ModelInput,
    tape: TapeInput,
    scenarios: ScenariosInput,
    *,
    target_irr: float | None = None,
    period_months: int = 3,
    simulations: int = 0,
    seed: int = 0,
    settings: dict[str, Any] | None = None,
    progress: Progress | None = None,
) -> BusinessPlan:
    """The collections business plan of a tape: what ``npl plan`` computes, in one call.

    Scores the tape's loans with the model and plans their collections
    (:func:`portfolio_business_plan`); ``npl backtest`` later compares realised collections
    with the plan (:func:`~npl_engine.valuation.backtest`).

    Parameters
    ----------
    model
        A fitted :class:`~npl_engine.scoring.RecoveryModel`, or the folder it was saved in.
    tape
        The tape (one common cut-off date): a :class:`~npl_engine.data.Dataset` or its folder.
    scenarios
        Pricing assumptions and weighted scenarios: a
        :class:`~npl_engine.scenarios.ScenarioSet` or its TOML file.
    target_irr
        Discount rate of the present values; default the scenario file's ``target_irr``.
    period_months
        Months per period, 1 to 12 (3 = quarterly).
    simulations
        Monte Carlo paths for the P5-P95 band of the backtest's ratios (0: none; ``npl plan``
        runs 500).
    seed
        Seed of the Monte Carlo.
    settings
        Extra entries for ``plan.json`` (the CLI records its inputs there).
    progress
        Called with a short description before each long step.

    Returns
    -------
    BusinessPlan

    Raises
    ------
    NplError
        If the loans have more than one cut-off date, an argument is invalid or the scenario
        horizon exceeds what the model predicts.

    Examples
    --------
    >>> import npl_engine as npl
    >>> plan = npl.business_plan("models/m1", "data/tape", "scenarios/eu_2026.toml",
    ...                          simulations=500)  # doctest: +SKIP
    >>> plan.totals()  # doctest: +SKIP
    >>> npl.BusinessPlan.load(plan.save("out/plan")).gbv == plan.gbv  # doctest: +SKIP
    True
    """
    if isinstance(simulations, bool) or not isinstance(simulations, int) or simulations < 0:
        msg = f"simulations must be a whole number of paths, 0 or more, got {simulations!r}"
        raise NplError(msg)
    if target_irr is not None and not target_irr > -1:
        msg = f"target_irr must be an annual rate above -1, got {target_irr}"
        raise NplError(msg)
    say = progress or (lambda _: None)
    scenario_set = resolve_scenarios(scenarios)
    fitted = resolve_model(model)
    loans = resolve_tape(tape).loans.collect()
    cutoff = _tape_cutoff(loans)
    grid = collateral_grid_for(scenario_set, monte_carlo=simulations > 0)
    portfolio, _ = scored_portfolio(fitted, loans, collateral_grid=grid, progress=say)
    say("planning collections" + (f" and {simulations:,} Monte Carlo paths" if simulations else ""))
    try:
        return portfolio_business_plan(
            portfolio,
            scenario_set,
            cutoff_date=cutoff,
            target_irr=target_irr,
            period_months=period_months,
            monte_carlo=MonteCarloSettings(n_paths=simulations, seed=seed) if simulations else None,
            recovery_threshold=fitted.definition.threshold,
            settings=settings,
        )
    except ValueError as exc:
        raise NplError(str(exc)) from exc


def _tape_cutoff(loans: pl.DataFrame) -> date:
    """The tape's one cut-off date (a plan starts from a common date)."""
    dates = loans.group_by("cutoff_date").len().sort("len", descending=True)
    if dates.height != 1:
        first, second = dates.row(0), dates.row(1)
        example = loans.filter(pl.col("cutoff_date") == second[0])["loan_id"][0]
        msg = (
            f"loans.cutoff_date: a plan needs one common cut-off date, but the loans have "
            f"{dates.height} (most on {first[0]}; e.g. loan_id {example!r} on {second[0]}); "
            "plan a tape, not a book"
        )
        raise NplError(msg)
    cutoff: date = dates["cutoff_date"][0]
    return cutoff


def _monthly(
    *,
    scenario: str,
    segment: str,
    channel: str,
    flows: FloatArray,
    months: npt.NDArray[np.int64],
    discount: FloatArray,
) -> pl.DataFrame:
    """One scenario's monthly rows of one segment and channel; ``flows`` = (gross, costs, net)."""
    return pl.DataFrame(
        {
            "scenario": scenario,
            "segment": segment,
            "channel": channel,
            "month": months,
            "gross": flows[0],
            "costs": flows[1],
            "net": flows[2],
            "pv_net": flows[2] * discount,
        }
    )


def _bands(paths_net: FloatArray, discount: FloatArray, period_months: int) -> pl.DataFrame:
    """Percentiles over paths of cumulative net collections (and of their PV) at period ends."""
    h = paths_net.shape[1]
    ends = np.unique(np.minimum(np.arange(period_months, h + period_months, period_months), h))
    columns: dict[str, Any] = {
        "period": np.arange(1, ends.size + 1),
        "end_month": ends,
        "n_paths": np.full(ends.size, paths_net.shape[0]),
    }
    for key, flows in (("cum_net", paths_net), ("cum_pv", paths_net * discount)):
        cumulative = np.cumsum(flows, axis=1)[:, ends - 1]
        for q in BAND_PERCENTILES:
            columns[f"{key}_p{q}"] = np.percentile(cumulative, q, axis=0)
    return pl.DataFrame(columns)
