"""Causal commands: effects of collection actions, the budgeted action plan."""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path
from typing import Any, cast

import click

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
    data_option,
    main,
)
from npl_engine.data import read_dataset
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
    from npl_engine.causal import ActionEffectModel, CausalSettings
    from npl_engine.causal._policy import estimate_costs
    from npl_engine.causal._refute import RefutationSettings, refute_effects
    from npl_engine.data.writers import atomic_folder

    console = _console(stderr=True)
    say = _steps(console)
    settings = CausalSettings(
        outcome=cast("Any", outcome),
        horizon_months=horizon_months,
        treatment_window_days=treatment_window_days,
    )
    say(f"reading and validating {data_dir}")
    book = read_dataset(data_dir, kind="book", as_of_date=as_of.date() if as_of else None)
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
    report = {
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
    say(f"writing {out}")
    with atomic_folder(out, allowed=EFFECTS_FILES) as staging:
        (staging / "effects.json").write_text(json.dumps(report, indent=2) + "\n")
        cate.write_parquet(staging / "cate.parquet")
        (staging / "costs.json").write_text(json.dumps(costs.to_dict(), indent=2) + "\n")
        model.save(staging)
    unit = "" if outcome == "net_collections" else " (share of exposure)"
    rows = [
        [
            e.action,
            f"{e.n:,}",
            f"{e.ate:+.4f}",
            f"[{e.ci_low:+.4f}, {e.ci_high:+.4f}]",
            f"{e.naive_difference:+.4f}",
            "-" if not refuted else ("pass" if refuted[e.action]["passed"] else "FAIL"),
        ]
        for e in model.effects_
    ]
    out_console = _console()
    out_console.print(f"effect on {outcome}{unit} against no action; {len(cate):,} loans scored")
    out_console.print(
        _table(["action", "n>", "effect>", "95% CI>", "naive difference>", "refutations"], rows)
    )
    for note in model.overlap_.warnings:
        click.secho(f"warning: overlap: {note}", fg="yellow", err=True)
    click.echo(f"wrote {out / 'effects.json'}, {out / 'cate.parquet'} and the model in {out}")


@main.command()
@click.option(
    "--effects",
    "effects_dir",
    required=True,
    type=click.Path(path_type=Path),
    help="Folder written by `npl effects`.",
)
@data_option("Loans to plan for: a tape, or a book (only its loans table is read).")
@click.option("--budget", required=True, type=click.FloatRange(0.0), help="Total action cost.")
@click.option(
    "--out",
    required=True,
    type=click.Path(dir_okay=False, path_type=Path),
    help="Plan file to write (.parquet).",
)
@click.option(
    "--costs",
    "costs_file",
    default=None,
    type=click.Path(path_type=Path),
    help="TOML file with a [costs] table. Default: costs learned from the book by `npl effects`.",
)
@CLUSTER_OPTION
@_audit_options
@_user_errors
def policy(
    *,
    effects_dir: Path,
    data_dir: Path,
    budget: float,
    out: Path,
    costs_file: Path | None,
    cluster_address: str | None = None,
    audit_db: Path | None = None,
    no_audit: bool = False,
) -> None:
    """Plan at most one action per loan to maximise expected net collections within a budget.

    Writes the plan (loan_id, action, expected_uplift, cost) and prints its expected value
    against business as usual, no action and the best single action for all.
    """
    from npl_engine.causal import ActionEffectModel
    from npl_engine.causal._policy import ActionCosts, load_costs, plan_actions, policy_inputs

    console = _console(stderr=True)
    say = _steps(console)
    if costs_file is not None:
        costs = load_costs(costs_file)
    else:
        path = effects_dir / "costs.json"
        if not path.exists():
            msg = f"{effects_dir} holds no costs.json: pass --costs or rerun `npl effects`"
            raise NplError(msg)
        raw = json.loads(path.read_text())
        costs = ActionCosts(fixed=raw["fixed"], per_exposure=raw["per_exposure"])
    say(f"loading {effects_dir}")
    model = ActionEffectModel.load(effects_dir)
    say(f"reading and validating {data_dir}")
    data = read_dataset(data_dir)
    cluster = _cluster(cluster_address)
    if cluster is None:
        say("predicting effects and solving the budgeted plan")
        ids, uplift, cost, bau = policy_inputs(model, data.loans, costs)
    else:
        from npl_engine import distributed

        say(f"predicting effects on {cluster_address}, then solving the budgeted plan")
        ids, uplift, cost, bau = distributed.policy_inputs(
            cluster, model, data.loans.collect(), costs
        )
    result = plan_actions(ids, uplift, cost, model.actions_, budget=budget, bau=bau)
    say(f"writing {out}")
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.tmp")
    result.plan.write_parquet(tmp)
    try:  # no plan is published without its decision record
        _record_decisions(
            audit_db,
            no_audit=no_audit,
            command="policy",
            loans=data.loans.collect(),
            outputs=result.plan,
            data_dir=data_dir,
            model_dir=effects_dir,
            parameters={"budget": budget, "costs": costs.to_dict()},
        )
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    tmp.replace(out)
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
    _console().print(
        f"budget {_money(budget)}; expected values against no action over {len(ids):,} loans"
    )
    _console().print(
        _table(["policy", "loans acted>", "cost>", "expected uplift>", "expected net>"], rows)
    )
    click.echo(f"wrote {out}")
