"""Business plan commands: write the collections plan a deal is underwritten on, backtest it."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Any

import click
import polars as pl

from npl_engine.cli._base import (
    MODEL_OPTION,
    SCENARIOS_OPTION,
    _console,
    _file_ref,
    _money,
    _pct,
    _steps,
    _table,
    _user_errors,
    data_option,
    main,
    read_data,
)


@main.command("plan")
@MODEL_OPTION
@data_option("The tape to plan (its loans table; one common cut-off date).")
@SCENARIOS_OPTION
@click.option(
    "--out",
    required=True,
    type=click.Path(path_type=Path),
    help="Folder for plan.parquet, plan.csv, loans.parquet, bands.parquet and plan.json.",
)
@click.option(
    "--target-irr",
    type=click.FloatRange(-1.0, min_open=True),
    default=None,
    help="Discount rate of the plan's present values; default the scenario file's target_irr.",
)
@click.option(
    "--period-months",
    type=click.IntRange(1, 12),
    default=3,
    show_default=True,
    help="Months per plan period (3 = quarterly).",
)
@click.option(
    "--simulations",
    type=click.IntRange(0),
    default=500,
    show_default=True,
    help="Monte Carlo paths for the P5-P95 band the backtest shows (0 = none).",
)
@click.option("--seed", default=0, show_default=True, type=int, help="Seed of the Monte Carlo.")
@_user_errors
def plan_command(
    *,
    model_dir: Path,
    data_dir: Path,
    scenarios_file: Path,
    out: Path,
    target_irr: float | None,
    period_months: int,
    simulations: int,
    seed: int,
) -> None:
    """Write the collections business plan of a tape: gross and net collections per period.

    By period (quarters by default), segment and channel (borrower payments, collateral
    sales, fixed per-loan costs), for every scenario and weighted, with the present value of
    net collections. The weighted plan is the valuation's weighted cash flow (see
    docs/plan.md); `npl backtest` compares realised collections with it.
    """
    from npl_engine.scenarios import load_scenarios
    from npl_engine.scoring import RecoveryModel
    from npl_engine.valuation import business_plan

    console = _console(stderr=True)
    say = _steps(console)
    scenario_set = load_scenarios(scenarios_file)
    say(f"loading {model_dir}")
    model = RecoveryModel.load(model_dir)
    say(f"reading and validating {data_dir}")
    tape = read_data(data_dir)
    plan = business_plan(
        model,
        tape,
        scenario_set,
        target_irr=target_irr,
        period_months=period_months,
        simulations=simulations,
        seed=seed,
        settings={
            "model": str(model_dir),
            "data": str(data_dir),
            "scenarios": _file_ref(scenarios_file),
        },
        progress=say,
    )
    say(f"writing {out}")
    plan.save(out)
    _print_plan(plan)
    click.echo(f"wrote {out / 'plan.parquet'}, plan.csv and plan.json")


def _print_plan(plan: Any) -> None:
    """Net collections per period and scenario, and the weighted plan's gross, costs and PV."""
    console = _console()
    totals = plan.totals()
    names = [n for n, _ in plan.scenario_weights]
    weighted = totals.filter(pl.col("scenario") == "weighted").sort("period")
    nets = {
        n: totals.filter(pl.col("scenario") == n).sort("period")["net"].to_list() for n in names
    }
    console.print(
        f"business plan from cut-off {plan.cutoff_date}: {plan.n_loans:,} loans, GBV "
        f"{plan.gbv:,.0f}; periods of {plan.period_months} months; PV at {plan.discount_rate:.1%}"
    )
    rows = [
        [
            str(r["period"]),
            f"{r['start_month']}-{r['end_month']}",
            *(_money(nets[n][i]) for n in names),
            _money(r["gross"]),
            _money(r["costs"]),
            _money(r["net"]),
            _money(r["pv_net"]),
        ]
        for i, r in enumerate(weighted.iter_rows(named=True))
    ]
    rows.append(
        [
            "total",
            "",
            *(_money(sum(nets[n])) for n in names),
            *(_money(float(weighted[c].sum())) for c in ("gross", "costs", "net", "pv_net")),
        ]
    )
    headers = ["period", "months", *(f"{n} net>" for n in names)]
    headers += ["weighted gross>", "costs>", "net>", "PV of net>"]
    console.print(_table(headers, rows))


@main.command("backtest")
@click.option(
    "--plan",
    "plan_dir",
    required=True,
    type=click.Path(path_type=Path),
    help="Plan folder written by `npl plan`.",
)
@data_option("The same loans observed later (its payments table), e.g. a later book.")
@click.option(
    "--out",
    required=True,
    type=click.Path(path_type=Path),
    help="Folder for backtest.parquet, backtest.csv and backtest.json.",
)
@click.option(
    "--threshold",
    type=click.FloatRange(0.0, 1.0, max_open=True),
    default=0.10,
    show_default=True,
    help="Shortfall that flags a period: 0.10 flags a cumulative ratio below 90 % of plan.",
)
@click.option(
    "--scenario",
    default="weighted",
    show_default=True,
    help="Plan scenario to compare with.",
)
@click.option(
    "--as-of",
    "as_of",
    type=click.DateTime(formats=["%Y-%m-%d"]),
    default=None,
    help="Day the data was extracted (YYYY-MM-DD). Default: the dataset's as_of_date "
    "(its latest payment or action date).",
)
@_user_errors
def backtest_command(
    *,
    plan_dir: Path,
    data_dir: Path,
    out: Path,
    threshold: float,
    scenario: str,
    as_of: datetime | None,
) -> None:
    """Compare realised collections since the tape's cut-off with its business plan.

    Per complete period and segment: realised and planned net collections, the cumulative
    collection ratio and the present-value profitability ratio; periods where a ratio falls
    below 1 - THRESHOLD are flagged (see docs/plan.md).
    """
    from npl_engine.valuation import BusinessPlan, backtest

    console = _console(stderr=True)
    say = _steps(console)
    say(f"loading {plan_dir}")
    plan = BusinessPlan.load(plan_dir)
    say(f"reading and validating {data_dir}")
    data = read_data(data_dir, as_of=as_of.date() if as_of is not None else None)
    say("comparing realised collections with the plan")
    result = backtest(plan, data, threshold=threshold, scenario=scenario)
    say(f"writing {out}")
    result.save(out)
    _print_backtest(result)
    click.echo(f"wrote {out / 'backtest.parquet'}, backtest.csv and backtest.json")


def _print_backtest(result: Any) -> None:
    """Per period: plan, realised, both ratios, the Monte Carlo band and the breach flag."""
    console = _console()
    total = result.total
    band = "ccr_p5" in total.columns
    console.print(
        f"backtest against the {result.scenario} plan: {result.months_observed} months "
        f"observed (as of {result.as_of_date}); a period is flagged below "
        f"{1 - result.threshold:.0%} of plan"
    )
    rows = []
    for r in total.iter_rows(named=True):
        row = [
            str(r["period"]),
            f"{r['start_month']}-{r['end_month']}",
            _money(r["plan_net"]),
            _money(r["realised_net"]),
            _pct(r["collection_ratio"]),
            _pct(r["pv_ratio"]),
        ]
        if band:
            row.append(f"{_pct(r['ccr_p5'])} - {_pct(r['ccr_p95'])}")
        row.append("BREACH" if r["breach"] else "")
        rows.append(row)
    headers = ["period", "months", "plan net>", "realised net>", "cum. collection ratio>",
               "PV ratio>"]  # fmt: skip
    headers += ["P5 - P95>"] if band else []
    console.print(_table([*headers, "flag"], rows))
    last = int(total["period"].max())
    segments = result.table.filter((pl.col("period") == last) & (pl.col("segment") != "all")).sort(
        "segment"
    )
    seg_rows = [
        [
            r["segment"],
            _money(r["cum_plan_net"]),
            _money(r["cum_realised_net"]),
            _pct(r["collection_ratio"]),
            _pct(r["pv_ratio"]),
            "BREACH" if r["breach"] else "",
        ]
        for r in segments.iter_rows(named=True)
    ]
    console.print(f"by segment, cumulative to period {last}:")
    console.print(
        _table(
            ["segment", "plan net>", "realised net>", "collection ratio>", "PV ratio>", "flag"],
            seg_rows,
        )
    )
    if result.first_breach_period is not None:
        click.secho(
            f"first breach in period {result.first_breach_period}: cumulative collections or "
            f"their present value below {1 - result.threshold:.0%} of plan",
            fg="yellow",
        )
    else:
        click.echo("no period below the threshold")
