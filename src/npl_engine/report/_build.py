"""Gather what the report shows: scores, valuation, Monte Carlo, importance, effects, fairness."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from npl_engine import __version__
from npl_engine.data import Dataset
from npl_engine.monitoring import MonitorReport
from npl_engine.report import _plots
from npl_engine.scenarios import ScenarioSet
from npl_engine.scoring import RecoveryModel
from npl_engine.stability import PSI_SHIFT, PSI_WATCH

__all__ = ["ReportData", "gather"]

Progress = Callable[[str], None]


@dataclass(frozen=True, slots=True)
class ReportData:
    """Everything the page shows, computed (charts already rendered as SVG data URIs)."""

    title: str
    created: str
    facts: dict[str, Any]
    charts: dict[str, str]
    valuation: dict[str, Any]
    simulation: dict[str, Any] | None
    effects: dict[str, Any] | None
    fairness: dict[str, Any] | None
    fairness_groups: pl.DataFrame | None
    model: dict[str, Any]
    monitoring: dict[str, Any] | None = None
    backtest: dict[str, Any] | None = None


def _composition(loans: pl.DataFrame, exposure: np.ndarray[Any, Any]) -> dict[str, pl.DataFrame]:
    frame = loans.select(
        pl.col("segment").cast(pl.String), pl.col("legal_stage").cast(pl.String)
    ).with_columns(gbv=pl.Series(exposure))
    return {
        key: frame.group_by(key).agg(loans=pl.len(), gbv=pl.col("gbv").sum()).sort(key)
        for key in ("segment", "legal_stage")
    }


def _segment_curves(portfolio: Any) -> pl.DataFrame:
    """Cumulative expected collections of each segment as a share of its GBV, by month."""
    monthly = portfolio.borrower + portfolio.collateral
    segments = portfolio.segment.to_numpy()
    frames = []
    for segment in sorted(set(segments.tolist())):
        rows = segments == segment
        gbv = float(portfolio.exposure[rows].sum())
        cumulative = monthly[rows].sum(axis=0).cumsum() / (gbv if gbv > 0 else 1.0)
        frames.append(
            pl.DataFrame(
                {
                    "segment": segment,
                    "month": np.arange(1, cumulative.size + 1),
                    "cumulative_share": cumulative,
                }
            )
        )
    return pl.concat(frames)


def _effects_section(
    effects_dir: Path, loans: pl.DataFrame, budget: float | None, say: Progress
) -> tuple[dict[str, Any], dict[str, str]]:
    """Average effects and their checks, per-loan effects, the plan, the gain curve, offers."""
    from npl_engine.causal import (  # noqa: PLC0415 - EconML is heavy and optional here
        CHECKS,
        Effects,
        gain_curve,
        verdict,
    )

    say(f"loading {effects_dir} and predicting each action's effect on the tape")
    effects = Effects.load(effects_dir)
    summary, model, costs = effects.summary, effects.model, effects.costs
    cate = model.cate(loans.lazy())
    plan = effects.plan(loans, math.inf if budget is None else budget)
    inputs = plan.inputs
    assert inputs is not None  # a plan made in process keeps its inputs
    # the gain curve from nothing to past the point where spending stops paying
    saturation = gain_curve(inputs.uplift, inputs.cost, model.actions_, budgets=np.zeros(1))
    top = max(saturation.saturation_spend * 1.2, 1.0)
    curve = gain_curve(
        inputs.uplift,
        inputs.cost,
        model.actions_,
        budgets=np.linspace(0.0, top, 25),
        uplift_low=inputs.uplift_low,
        uplift_high=inputs.uplift_high,
    )
    settlement = None
    if "settlement_offer" in model.actions_:
        econ = plan.plan.filter(pl.col("action") == "settlement_offer")
        settlement = {
            "loans": econ.height,
            "collections_without_offer": float(econ["collections_without_offer"].sum()),
            "collections_with_offer": float(econ["collections_with_offer"].sum()),
            "amount_waived": float(econ["amount_waived"].sum()),
            "discount": costs.settlement_discount,
        }
    refuted = summary.get("refutations", {})
    checks = {}
    for a in summary["actions"]:
        result = refuted.get(a["action"])
        statuses = {k: result[k].get("status", "-") for k in CHECKS} if result else {}
        checks[a["action"]] = verdict(a["ci_low"], a["ci_high"], result) | {"statuses": statuses}
    unit = "money" if summary["outcome"] == "net_collections" else "share of exposure"
    chart = _plots.effects(
        summary["actions"],
        {a: cate[f"cate_{a}"].to_numpy() for a in model.actions_},
        plan.comparison,
        unit=unit,
    )
    chosen = plan.plan.group_by("action").agg(loans=pl.len()).sort("loans", descending=True)
    charts = {"effects": chart, "gain_curve": _plots.gain_curve(curve.curve, model.actions_)}
    return {
        "checks": checks,
        "validation": summary.get("validation", {}),
        "curve": curve.curve.to_dicts(),
        "saturation_spend": curve.saturation_spend,
        "settlement": settlement,
        "plan_band": list(plan.band),
        "outcome": summary["outcome"],
        "horizon_months": summary.get("horizon_months"),
        "method": summary.get("method"),
        "actions": summary["actions"],
        "budget": budget,
        "comparison": plan.comparison.to_dicts(),
        "plan_actions": chosen.to_dicts(),
        "source": str(effects_dir),
    }, charts


def _facts(portfolio: Any, loans: pl.DataFrame, tape: Dataset) -> dict[str, Any]:
    """The headline figures of the page."""
    expected = float(portfolio.borrower.sum() + portfolio.collateral.sum())
    return {
        "n_loans": portfolio.n_loans,
        "gbv": portfolio.gbv,
        "expected_collections": expected,
        "expected_rate": expected / portfolio.gbv if portfolio.gbv else 0.0,
        "mean_p_recover": float(portfolio.p_recover.mean()) if portfolio.n_loans else 0.0,
        "cutoff": str(loans["cutoff_date"].max()),
        "source": str(tape.source) if tape.source else "-",
        "engine_version": __version__,
    }


def _monitoring_section(monitor_dir: Path) -> tuple[dict[str, Any], str]:
    """What ``npl monitor`` found (its summary) and the PSI chart."""
    monitoring = MonitorReport.load(monitor_dir).summary()
    chart = _plots.stability(
        pl.DataFrame(monitoring["stability"]), watch=PSI_WATCH, shift=PSI_SHIFT
    )
    return monitoring, chart


def gather(
    model: RecoveryModel,
    tape: Dataset,
    scenarios: ScenarioSet,
    *,
    title: str,
    effects_dir: Path | None = None,
    fairness_book: Dataset | None = None,
    simulations: int = 500,
    budget: float | None = None,
    seed: int = 0,
    monitor_dir: Path | None = None,
    irr_grid: Sequence[float] | None = None,
    progress: Progress | None = None,
    backtest_dir: Path | None = None,
) -> ReportData:
    """Compute every section of the report.

    Parameters
    ----------
    model
        A fitted or loaded recovery model.
    tape
        The portfolio to report on (its ``loans`` table).
    scenarios
        Pricing assumptions and weighted scenarios.
    title
        Heading of the page.
    effects_dir
        A folder written by ``npl effects``; ``None`` leaves the effects section empty.
    fairness_book
        A book with known outcomes for the fairness section; ``None`` leaves it empty.
    simulations
        Monte Carlo paths (0: none).
    budget
        Action budget of the plan (``None``: no limit).
    seed
        Seed of the Monte Carlo and of the SHAP sample.
    monitor_dir
        A folder written by ``npl monitor``; ``None`` leaves the monitoring section empty.
    irr_grid
        Target IRRs of the bid grid; default: the target IRR ± 4 pp in 1 pp steps.
    progress
        Called with a short description before each step.
    backtest_dir
        A folder written by ``npl backtest``: adds realised collections against the plan.
    """
    from npl_engine.explain import global_importance  # noqa: PLC0415 - loads SHAP
    from npl_engine.fairness import ATTRIBUTES, fairness_report  # noqa: PLC0415
    from npl_engine.valuation import value  # noqa: PLC0415

    say = progress or (lambda _: None)
    target = scenarios.pricing.target_irr
    rates = irr_grid or tuple(
        r for r in (round(target + k / 100, 10) for k in range(-4, 5)) if r > -1
    )
    valuation = value(
        model,
        tape,
        scenarios,
        simulations=simulations,
        seed=seed,
        irr_grid=rates,
        sensitivities=True,
        progress=say,
        chunk_rows=0,
    )
    portfolio, loans = valuation.portfolio, valuation.loans
    bids, tornado = valuation.price_grid, valuation.sensitivities
    # value() in memory keeps the scored tape and computes what it was asked for.
    assert portfolio is not None
    assert isinstance(loans, pl.DataFrame)
    assert bids is not None
    assert tornado is not None
    say("SHAP importance on a sample of the loans")
    importance = global_importance(model, loans, sample=min(1000, loans.height), seed=seed)

    charts: dict[str, str] = {}
    parts = _composition(loans, portfolio.exposure)
    charts["composition"] = _plots.composition(parts["segment"], parts["legal_stage"])
    charts["curves"] = _plots.collections_curves(
        _segment_curves(portfolio), valuation.cash_flows.select("scenario", "month", "gross")
    )
    v = valuation.prices.to_dict()
    sim = valuation.simulation
    charts["prices"] = _plots.prices(
        [(s["name"], s["price"], s["price_pct_gbv"]) for s in v["scenarios"]],
        v["weighted"]["price"],
        None if valuation.paths is None else valuation.paths["price"].to_numpy(),
        None if sim is None else sim["percentiles"]["price"],
    )
    charts["bid_grid"] = _plots.bid_grid(bids, target_irr=target)
    charts["tornado"] = _plots.tornado(tornado, base_price=valuation.weighted.price)
    charts["importance"] = _plots.importance(importance)
    if valuation.horizon_note is not None:
        v["horizon_note"] = valuation.horizon_note

    effects = None
    if effects_dir is not None:
        effects, effect_charts = _effects_section(effects_dir, loans, budget, say)
        charts |= effect_charts

    fairness, groups = None, None
    if fairness_book is not None:
        say("fairness: scoring the book and comparing groups")
        fair = fairness_report(model, fairness_book)
        fairness, groups = fair.to_dict(), fair.groups
        charts["calibration"] = _plots.calibration_by_group(groups, ATTRIBUTES)

    monitoring, backtest = _folder_sections(monitor_dir, backtest_dir, charts, say)
    return ReportData(
        title=title,
        created=datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        facts=_facts(portfolio, loans, tape),
        charts=charts,
        valuation=v | {"price_grid": bids.to_dicts(), "sensitivities": tornado.to_dicts()},
        simulation=sim,
        effects=effects,
        fairness=fairness,
        fairness_groups=groups,
        model={
            "definition": asdict(model.definition),
            "metrics": model.metrics_,
            "info": model.info_,
        },
        monitoring=monitoring,
        backtest=backtest,
    )


def _folder_sections(
    monitor_dir: Path | None,
    backtest_dir: Path | None,
    charts: dict[str, str],
    say: Progress,
) -> tuple[dict[str, Any] | None, dict[str, Any] | None]:
    """The sections read from folders other commands wrote: monitoring and backtest."""
    monitoring = backtest = None
    if monitor_dir is not None:
        say(f"reading the monitoring folder {monitor_dir}")
        monitoring, charts["stability"] = _monitoring_section(monitor_dir)
    if backtest_dir is not None:
        backtest, charts["backtest"] = _backtest_section(backtest_dir, say)
    return monitoring, backtest


def _backtest_section(folder: Path, say: Progress) -> tuple[dict[str, Any], str]:
    """The backtest's settings, its whole-tape rows and the chart of its ratios."""
    from npl_engine.valuation import ALL_SEGMENTS, Backtest  # noqa: PLC0415

    say(f"loading the backtest in {folder}")
    result = Backtest.load(folder)
    total = result.total
    segments = result.table.filter(pl.col("segment") != ALL_SEGMENTS)
    chart = _plots.backtest(total, segments, threshold=result.threshold)
    return result.to_dict() | {"periods": total.to_dicts(), "source": str(folder)}, chart
