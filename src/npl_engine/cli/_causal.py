"""Causal commands: effects of collection actions, the budgeted action plan."""

from __future__ import annotations

from datetime import datetime
from functools import partial
from pathlib import Path
from typing import Any, cast

import click
import numpy as np
import polars as pl

from npl_engine.cli._base import (
    CHUNK_ROWS_OPTION,
    CLUSTER_OPTION,
    _audit_options,
    _cluster,
    _console,
    _money,
    _record_decisions,
    _steps,
    _table,
    _user_errors,
    check_out_file,
    data_option,
    main,
    read_data,
)
from npl_engine.errors import NplError


@main.command()
@data_option("A book: loans, actions and payments in contract form.")
@click.option(
    "--out",
    required=True,
    type=click.Path(path_type=Path),
    help="Folder for effects.json, cate.parquet and the fitted effect model.",
)
@click.option(
    "--outcome",
    type=click.Choice(["recovery_rate", "recovered", "net_collections"]),
    default="recovery_rate",
    show_default=True,
)
@click.option("--horizon-months", default=60, show_default=True, type=click.IntRange(1, 600))
@click.option(
    "--treatment-window-days", default=90, show_default=True, type=click.IntRange(1, 3650)
)
@click.option(
    "--as-of",
    "as_of",
    type=click.DateTime(formats=["%Y-%m-%d"]),
    default=None,
    help="Day the history was extracted (YYYY-MM-DD). Default: latest payment or action date.",
)
@click.option("--seed", default=0, show_default=True, type=int)
@click.option(
    "--refutations/--no-refutations",
    default=True,
    show_default=True,
    help="Run the DoWhy refutations (about a minute per action on large books).",
)
@click.option(
    "--estimator",
    type=click.Choice(["causal-forest", "dr-learner"]),
    default="causal-forest",
    show_default=True,
    help="Per-loan effect estimator: EconML's causal forest, or a doubly robust learner (an "
    "honest regression forest of the doubly robust pseudo-outcomes; wider intervals). The "
    "average effects do not depend on it.",
)
@_user_errors
def effects(
    *,
    data_dir: Path,
    out: Path,
    outcome: str,
    horizon_months: int,
    treatment_window_days: int,
    as_of: datetime | None,
    seed: int,
    refutations: bool,
    estimator: str,
) -> None:
    """Estimate the effect of each collection action against none (see docs/causal.md).

    Writes OUT/effects.json (average effects with 95 % intervals, naive differences,
    refutations, validation, overlap), OUT/cate.parquet (effect per loan and action) and the
    fitted model, which `npl policy` uses to plan actions on a book or a tape.
    """
    from npl_engine.causal import DRLearnerEstimator, estimate_effects

    console = _console(stderr=True)
    say = _steps(console)
    say(f"reading and validating {data_dir}")
    book = read_data(data_dir, kind="book", as_of=as_of.date() if as_of else None)
    result = estimate_effects(
        book,
        outcome=cast("Any", outcome),
        horizon_months=horizon_months,
        treatment_window_days=treatment_window_days,
        seed=seed,
        refutations=refutations,
        estimator=DRLearnerEstimator(seed=seed) if estimator == "dr-learner" else None,
        progress=say,
    )
    say(f"writing {out}")
    result.save(out)
    report, model, cate = result.summary, result.model, result.cate
    refuted = report["refutations"] if refutations else None
    unit = "" if outcome == "net_collections" else " (share of exposure)"
    out_console = _console()
    out_console.print(f"effect on {outcome}{unit} against no action; {len(cate):,} loans scored")
    _print_effects(report["actions"], refuted or None, report["validation"])
    if "settlement" in report:
        s = report["settlement"]
        out_console.print(
            f"settlement offer, over the book's {s['loans']:,} loans: expected collections "
            f"{_money(s['collections_without_offer'])} with no action, "
            f"{_money(s['collections_with_offer'])} if every loan got an offer; amount waived at "
            f"a {s['discount']:.0%} discount: at most {_money(s['amount_waived'])}"
        )
    for note in model.overlap_.warnings:
        click.secho(f"warning: overlap: {note}", fg="yellow", err=True)
    click.echo(f"wrote {out / 'effects.json'}, {out / 'cate.parquet'} and the model in {out}")


_CHECK_COLUMNS = ("placebo", "random_common_cause", "data_subset", "sensitivity")


def _print_effects(
    actions: list[dict[str, Any]],
    refuted: dict[str, Any] | None,
    validation: dict[str, Any],
) -> None:
    """The effects table: estimate, against zero, each check; then reasons and validation."""
    from npl_engine.causal import CHECKS, verdict

    out = _console()
    rows, notes = [], []
    for a in actions:
        check = refuted.get(a["action"]) if refuted else None
        said = verdict(a["ci_low"], a["ci_high"], check)
        statuses = [
            "-"
            if check is None
            else {"pass": "pass", "fail": "FAIL"}.get(check[k]["status"], check[k]["status"])
            for k in _CHECK_COLUMNS
        ]
        rows.append(
            [
                a["action"],
                f"{a['n']:,}",
                f"{a['ate']:+.4f}",
                f"[{a['ci_low']:+.4f}, {a['ci_high']:+.4f}]",
                f"{a['naive_difference']:+.4f}",
                said["effect"],
                *statuses,
            ]
        )
        notes.append(f"{a['action']}: {said['effect']}; {said['assumptions']}")
        notes += [f"  {line}" for line in said["failures"]]
        if check is not None and check["sensitivity"]["status"] == "not applicable":
            notes.append(f"  sensitivity not applicable: {check['sensitivity']['reason']}")
    headers = ["action", "n>", "effect>", "95% CI>", "naive difference>", "against zero",
               *(CHECKS[k] for k in _CHECK_COLUMNS)]  # fmt: skip
    out.print(_table(headers, rows))
    for line in notes:
        out.print(line, highlight=False)
    rows = []
    for a in actions:
        checks = validation.get(a["action"])
        if not isinstance(checks, dict):
            continue
        groups = "  ".join(
            f"{g['predicted']:+.3f}/{g['doubly_robust']:+.3f}"
            for g in checks["calibration"]["groups"]
        )
        low, high = checks["toc"]["autoc_ci"]
        rows.append(
            [
                a["action"],
                groups,
                f"{checks['calibration']['slope']:.2f}",
                f"{checks['toc']['autoc']:+.4f} [{low:+.4f}, {high:+.4f}]",
            ]
        )
    if rows:
        out.print(
            "validation of the per-loan effects (out of sample): predicted/doubly robust mean "
            "effect by quartile of predicted effect, calibration slope (1 = calibrated), AUTOC "
            "(> 0 with its interval: the ranking finds loans where the action does more)"
        )
        out.print(_table(["action", "quartiles Q1..Q4", "slope>", "AUTOC, 95% CI>"], rows))


@main.command()
@click.option(
    "--effects",
    "effects_dir",
    required=True,
    type=click.Path(path_type=Path),
    help="Folder written by `npl effects`.",
)
@data_option("Loans to plan for: a tape, or a book (only its loans table is read).")
@click.option("--budget", type=click.FloatRange(0.0), default=None, help="Total action cost.")
@click.option(
    "--budgets",
    default=None,
    help="The gain curve: START:STOP:COUNT (e.g. 0:1000000:50) or a comma list of budgets. "
    "--out is then a folder (curve.parquet, curve.csv and the plan at each budget).",
)
@click.option(
    "--out",
    required=True,
    type=click.Path(path_type=Path),
    help="Plan file to write; its suffix names the format: .parquet, .csv, .json or .xlsx. "
    "With --budgets, a folder.",
)
@click.option(
    "--costs",
    "costs_file",
    default=None,
    type=click.Path(path_type=Path),
    help="TOML file with a [costs] table (see docs/causal.md). Default: costs learned from the "
    "book by `npl effects`.",
)
@CHUNK_ROWS_OPTION
@CLUSTER_OPTION
@_audit_options
@_user_errors
def policy(
    *,
    effects_dir: Path,
    data_dir: Path,
    budget: float | None,
    budgets: str | None,
    out: Path,
    costs_file: Path | None,
    chunk_rows: int | None = None,
    cluster_address: str | None = None,
    audit_db: Path | None = None,
    no_audit: bool = False,
) -> None:
    """Plan at most one action per loan to maximise expected net collections within a budget.

    With --budget, writes the plan (loan_id, action, expected_uplift with its 95 % interval
    uplift_low / uplift_high, cost, and for settlement offers the amount waived and the
    collections with and without the offer) and prints its expected value against business as
    usual, no action and the best single action for all. With --budgets, computes the whole
    gain curve in one run (see docs/causal.md). A tape of more than 250,000 loans is read and
    predicted in chunks, the budget solved once over all loans (--chunk-rows; docs/scale.md).
    """
    from npl_engine.causal import Effects, load_costs, parse_budgets
    from npl_engine.data import count_loans
    from npl_engine.scoring import chunk_rows_for

    if (budget is None) == (budgets is None):
        msg = "give either --budget (one plan) or --budgets (the gain curve)"
        raise NplError(msg)
    grid = parse_budgets(budgets) if budgets is not None else None
    if grid is None:
        check_out_file(out)
    console = _console(stderr=True)
    say = _steps(console)
    costs = load_costs(costs_file) if costs_file is not None else None
    say(f"loading {effects_dir}")
    effects = Effects.load(effects_dir)
    if costs is None:
        costs = effects.costs
    say(f"reading and validating {data_dir}")
    data = read_data(data_dir)
    cluster = _cluster(cluster_address)
    where = f" on {cluster_address}" if cluster is not None else ""
    n_loans = count_loans(data.loans)
    # With a cluster only the single budget works through the tape a chunk at a time.
    chunk = 0 if cluster is not None and grid is not None else chunk_rows_for(n_loans, chunk_rows)
    # the record reads the tape and the plan chunk by chunk when the plan was made so
    record = partial(_record_decisions, audit_db, no_audit=no_audit, command="policy",
                     loans=data.loans, data_dir=data_dir, model_dir=effects_dir,
                     chunk_rows=chunk)  # fmt: skip
    options = {"costs": costs, "cluster": cluster, "chunk_rows": chunk, "progress": say}
    if grid is not None:
        say(f"predicting effects with their intervals{where} and solving {grid.size} plans")
        curve = effects.gain_curve(data, grid, **options)
        say(f"writing {out}")
        # no curve is published without its decision record (the plan at the largest budget)
        parameters = {"budgets": grid.tolist(), "costs": costs.to_dict()}
        curve.save(
            out,
            before_publish=lambda last: record(outputs=last, parameters=parameters),
        )
        _print_curve(curve)
        click.echo(f"wrote {out / 'curve.parquet'} and the plan at each budget in {out}")
        return
    assert budget is not None
    say(f"predicting effects with their intervals{where} and solving the budgeted plan")
    result = effects.plan(data, budget, **options)
    plan = result.plan
    say(f"writing {out}")
    parameters = {"budget": budget, "costs": costs.to_dict()}
    result.save(  # no plan is published without its record
        out, before_publish=lambda: record(outputs=plan, parameters=parameters)
    )
    rows = [
        [
            r["policy"],
            f"{r['loans_acted']:,}",
            _money(r["cost"]),
            _money(r["expected_uplift"]),
            _money(r["expected_net"]),
        ]
        for r in result.comparison.iter_rows(named=True)
    ]
    n = plan.height
    _console().print(f"budget {_money(budget)}; expected values against no action over {n:,} loans")
    _console().print(
        _table(["policy", "loans acted>", "cost>", "expected uplift>", "expected net>"], rows)
    )
    low, high = result.band
    _console().print(
        f"the plan's expected uplift, 95 % band from the per-loan effect intervals: "
        f"{_money(low)} to {_money(high)}"
    )
    _print_settlement(plan)
    click.echo(f"wrote {out}")


def _print_settlement(plan: Any) -> None:
    """One line on what the plan's settlement offers give up."""
    if "amount_waived" not in plan.columns:
        return
    offers = plan.filter(pl.col("action") == "settlement_offer")
    if offers.height == 0:
        return
    _console().print(
        f"settlement offers to {offers.height:,} loans: expected collections "
        f"{_money(offers['collections_without_offer'].sum())} without the offer, "
        f"{_money(offers['collections_with_offer'].sum())} with it; expected amount waived "
        f"{_money(offers['amount_waived'].sum())}"
    )


def _print_curve(result: Any) -> None:
    """The gain curve: at most 12 budgets, the saturation point."""
    curve, actions = result.curve, result.actions
    shown = (
        curve
        if curve.height <= 12
        else curve.gather(np.unique(np.linspace(0, curve.height - 1, 12).round().astype(int)))
    )
    rows = []
    for r in shown.iter_rows(named=True):
        mix = ", ".join(f"{a} {r[f'loans_{a}']:,}" for a in actions if r[f"loans_{a}"])
        best = max(actions, key=lambda a: r[f"gain_only_{a}"])
        rows.append(
            [
                _money(r["budget"]),
                _money(r["spend"]),
                _money(r["expected_gain"]),
                f"[{_money(r['gain_low'])}, {_money(r['gain_high'])}]",
                "-" if r["marginal_return"] is None else f"{r['marginal_return']:.2f}",
                f"{r['shadow_price']:.2f}",
                f"{best} {_money(r[f'gain_only_{best}'])}",
                mix or "-",
            ]
        )
    out_console = _console()
    out_console.print(
        f"gain curve over {result.inputs.loan_ids.len():,} loans: expected collections gained "
        "(gross of spend) against no action; 95 % band from the per-loan effect intervals"
    )
    out_console.print(
        _table(
            ["budget>", "spend>", "expected gain>", "95% band>", "gain per unit spent>",
             "shadow price>", "best single action>", "actions"],
            rows,
        )
    )  # fmt: skip
    out_console.print(
        f"spending stops paying past {_money(result.saturation_spend)}: a larger budget stays "
        "unspent, since every further action is expected to cost more than it brings"
    )
    if curve.height > len(rows):
        out_console.print(f"({curve.height} budgets in curve.parquet; {len(rows)} shown)")
