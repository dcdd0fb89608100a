"""Causal commands: effects of collection actions, the budgeted action plan."""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path
from typing import Any, cast

import click
import numpy as np
import polars as pl

from npl_engine.cli._base import (
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
    write_table,
)
from npl_engine.errors import NplError

#: Files `npl effects` writes (an existing folder holding only these may be replaced).
EFFECTS_FILES = frozenset(
    {"effects.json", "cate.parquet", "effect_model.joblib", "effect_model.json", "costs.json"}
)


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
) -> None:
    """Estimate the effect of each collection action against none (see docs/causal.md).

    Writes OUT/effects.json (average effects with 95 % intervals, naive differences,
    refutations, validation, overlap), OUT/cate.parquet (effect per loan and action) and the
    fitted model, which `npl policy` uses to plan actions on a book or a tape.
    """
    from npl_engine.causal import (
        ActionEffectModel,
        CausalSettings,
        RefutationSettings,
        estimate_costs,
        refute_effects,
    )
    from npl_engine.data.writers import atomic_folder

    console = _console(stderr=True)
    say = _steps(console)
    settings = CausalSettings(
        outcome=cast("Any", outcome),
        horizon_months=horizon_months,
        treatment_window_days=treatment_window_days,
    )
    say(f"reading and validating {data_dir}")
    book = read_data(data_dir, kind="book", as_of=as_of.date() if as_of else None)
    model = ActionEffectModel(settings=settings, seed=seed).fit(book, progress=say)
    data = model.data_
    refuted: dict[str, Any] = {}
    if refutations:
        say("refuting each estimate with DoWhy (placebo, common cause, subset, sensitivity)")
        refuted = refute_effects(
            data.covariates.values,
            data.treatment,
            data.outcome,
            model.actions_,
            RefutationSettings(seed=seed),
        )
    say("validating the per-loan effects and scoring the book's loans")
    report: dict[str, Any] = {
        "outcome": outcome,
        "horizon_months": settings.window_months,
        "treatment_window_days": treatment_window_days,
        "control": "none",
        "n_loans": data.frame.height,
        "excluded_censored": data.excluded_censored,
        "as_of_date": book.as_of_date.isoformat() if book.as_of_date else None,
        "method": "EconML DRLearner (LightGBM nuisances, cross-fitted): AIPW average effects; "
        "EconML CausalForestDML: per-loan effects with 95 % intervals",
        "actions": [
            {
                "action": e.action,
                "n": e.n,
                "ate": e.ate,
                "ci_low": e.ci_low,
                "ci_high": e.ci_high,
                "naive_difference": e.naive_difference,
                "std_error": e.std_error,
                "n_control": e.n_control,
                "n_trimmed": e.n_trimmed,
            }
            for e in model.effects_
        ],
        "refutations": refuted or {"skipped": "run without --no-refutations"},
        "validation": model.validation(),
        "overlap": {
            "min_propensity": model.overlap_.min_propensity,
            "ok": model.overlap_.ok,
            "warnings": list(model.overlap_.warnings),
            "share_below": model.overlap_.share_below,
            "quantiles": model.overlap_.quantiles,
        },
    }
    cate = model.cate(book.loans)
    costs = estimate_costs(book)
    if "settlement_offer" in model.actions_ and outcome != "recovered":
        report["settlement"] = _settlement_summary(model, book.loans, costs)
    say(f"writing {out}")
    with atomic_folder(out, allowed=EFFECTS_FILES) as staging:
        (staging / "effects.json").write_text(json.dumps(report, indent=2) + "\n")
        cate.write_parquet(staging / "cate.parquet")
        costs.save_record(staging)
        model.save(staging)
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


def _settlement_summary(model: Any, loans: pl.LazyFrame, costs: Any) -> dict[str, Any]:
    """Settlement offer to every loan of a book: collections with/without, amount waived."""
    from npl_engine.causal import policy_inputs, settlement_economics

    inputs = policy_inputs(model, loans, costs, with_bau=False, with_baseline=True)
    econ = settlement_economics(inputs, model.actions_, costs)
    return {
        "loans": econ.height,
        "collections_without_offer": float(econ["collections_without_offer"].sum()),
        "collections_with_offer": float(econ["collections_with_offer"].sum()),
        "amount_waived": float(econ["amount_waived"].sum()),
        "discount": costs.settlement_discount,
        "note": "amount_waived = discount / (1 - discount) x collections with the offer: an "
        "upper bound (every collection under the offer taken as a settlement)",
    }


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
    cluster_address: str | None = None,
    audit_db: Path | None = None,
    no_audit: bool = False,
) -> None:
    """Plan at most one action per loan to maximise expected net collections within a budget.

    With --budget, writes the plan (loan_id, action, expected_uplift with its 95 % interval
    uplift_low / uplift_high, cost, and for settlement offers the amount waived and the
    collections with and without the offer) and prints its expected value against business as
    usual, no action and the best single action for all. With --budgets, computes the whole
    gain curve in one run (see docs/causal.md).
    """
    from npl_engine.causal import ActionEffectModel, parse_budgets, plan_actions, policy_inputs

    if (budget is None) == (budgets is None):
        msg = "give either --budget (one plan) or --budgets (the gain curve)"
        raise NplError(msg)
    grid = parse_budgets(budgets) if budgets is not None else None
    if grid is None:
        check_out_file(out)
    console = _console(stderr=True)
    say = _steps(console)
    costs = _read_costs(effects_dir, costs_file)
    say(f"loading {effects_dir}")
    model = ActionEffectModel.load(effects_dir)
    say(f"reading and validating {data_dir}")
    data = read_data(data_dir)
    options = {
        "with_bau": grid is None,
        "with_interval": True,
        "with_baseline": grid is None and "settlement_offer" in model.actions_,
    }
    cluster = _cluster(cluster_address)
    if cluster is None:
        say("predicting effects with their intervals")
        inputs = policy_inputs(model, data.loans, costs, **options)
    else:
        from npl_engine import distributed

        say(f"predicting effects with their intervals on {cluster_address}")
        inputs = distributed.policy_inputs(cluster, model, data.loans.collect(), costs, **options)
    loans = data.loans.collect()
    if grid is not None:
        where = {"out": out, "effects_dir": effects_dir, "data_dir": data_dir}
        _policy_curve(model, inputs, costs, grid, loans=loans, audit_db=audit_db,
                      no_audit=no_audit, **where)  # fmt: skip
        return
    assert budget is not None
    say("solving the budgeted plan")
    result = plan_actions(
        inputs.loan_ids,
        inputs.uplift,
        inputs.cost,
        model.actions_,
        budget=budget,
        bau=inputs.bau,
        uplift_low=inputs.uplift_low,
        uplift_high=inputs.uplift_high,
    )
    plan = _with_settlement(result.plan, model.actions_, inputs, costs)
    say(f"writing {out}")
    write_table(
        plan,
        out,
        before_publish=lambda: _record_decisions(  # no plan is published without its record
            audit_db,
            no_audit=no_audit,
            command="policy",
            loans=loans,
            outputs=plan,
            data_dir=data_dir,
            model_dir=effects_dir,
            parameters={"budget": budget, "costs": costs.to_dict()},
        ),
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
    n = inputs.loan_ids.len()
    _console().print(f"budget {_money(budget)}; expected values against no action over {n:,} loans")
    _console().print(
        _table(["policy", "loans acted>", "cost>", "expected uplift>", "expected net>"], rows)
    )
    low, high = float(plan["uplift_low"].sum()), float(plan["uplift_high"].sum())
    _console().print(
        f"the plan's expected uplift, 95 % band from the per-loan effect intervals: "
        f"{_money(low)} to {_money(high)}"
    )
    _print_settlement(plan)
    click.echo(f"wrote {out}")


#: Files a `npl policy --budgets` folder holds, besides the plan_*.parquet files.
CURVE_FILES = frozenset({"curve.parquet", "curve.csv"})


def _read_costs(effects_dir: Path, costs_file: Path | None) -> Any:
    """The costs a plan uses: the --costs file, else the costs `npl effects` learned."""
    from npl_engine.causal import ActionCosts, load_costs

    if costs_file is not None:
        return load_costs(costs_file)
    return ActionCosts.read_record(effects_dir)


def _with_settlement(plan: Any, actions: tuple[str, ...], inputs: Any, costs: Any) -> Any:
    """The plan with, for settlement offers, the amount waived and collections with/without."""
    from npl_engine.causal import settlement_economics

    if "settlement_offer" not in actions:
        return plan
    economics = settlement_economics(inputs, actions, costs)
    offered = plan["action"] == "settlement_offer"
    return plan.with_columns(
        [
            pl.Series(
                name, np.where(offered.to_numpy(), economics[name].to_numpy(), np.nan)
            ).fill_nan(None)
            for name in ("collections_without_offer", "collections_with_offer", "amount_waived")
        ]
    )


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


def _budget_name(budget: float) -> str:
    """File name of the plan at a budget: plan_20000.parquet, plan_12.5.parquet."""
    return (
        f"plan_{budget:.0f}.parquet" if float(budget).is_integer() else f"plan_{budget:g}.parquet"
    )


def _policy_curve(
    model: Any,
    inputs: Any,
    costs: Any,
    grid: Any,
    *,
    out: Path,
    effects_dir: Path,
    data_dir: Path,
    loans: Any,
    audit_db: Path | None,
    no_audit: bool,
) -> None:
    """`npl policy --budgets`: the gain curve, its plans, a decision record and a summary."""
    from npl_engine.causal import gain_curve, plan_frame
    from npl_engine.data.writers import atomic_folder

    say = _steps(_console(stderr=True))
    say(f"solving the plan at {grid.size} budgets")
    result = gain_curve(
        inputs.uplift,
        inputs.cost,
        model.actions_,
        budgets=grid,
        uplift_low=inputs.uplift_low,
        uplift_high=inputs.uplift_high,
    )
    curve = result.curve
    columns = {"expected_uplift": inputs.uplift, "cost": inputs.cost,
               "uplift_low": inputs.uplift_low, "uplift_high": inputs.uplift_high}  # fmt: skip
    names = [_budget_name(b) for b in grid]
    say(f"writing {out}")
    allowed = CURVE_FILES | frozenset(names)
    last = pl.DataFrame()
    with atomic_folder(out, allowed=allowed) as staging:
        curve.write_parquet(staging / "curve.parquet")
        curve.write_csv(staging / "curve.csv")
        for i, name in enumerate(names):
            last = plan_frame(inputs.loan_ids, result.picks[i], model.actions_, columns)
            last.write_parquet(staging / name)
        # no curve is published without its decision record (the plan at the largest budget)
        _record_decisions(
            audit_db,
            no_audit=no_audit,
            command="policy",
            loans=loans,
            outputs=last,
            data_dir=data_dir,
            model_dir=effects_dir,
            parameters={"budgets": grid.tolist(), "costs": costs.to_dict()},
        )
    shown = (
        curve
        if curve.height <= 12
        else curve.gather(np.unique(np.linspace(0, curve.height - 1, 12).round().astype(int)))
    )
    actions = model.actions_
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
        f"gain curve over {inputs.loan_ids.len():,} loans: expected collections gained (gross of "
        "spend) against no action; 95 % band from the per-loan effect intervals"
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
    click.echo(f"wrote {out / 'curve.parquet'} and the plan at each budget in {out}")
