"""Counterfactual commands: what would have to change for a loan to recover; what-ifs."""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path
from typing import Any, cast

import click
import polars as pl

from npl_engine.cli._base import (
    MODEL_OPTION,
    _audit_options,
    _console,
    _money,
    _pct,
    _record_decisions,
    _signed_money,
    _steps,
    _table,
    _user_errors,
    check_out_file,
    data_option,
    main,
    read_data,
    write_table,
)
from npl_engine.cli._scoring import _effect
from npl_engine.errors import NplError

_EFFECTS_OPTION = click.option(
    "--effects",
    "effects_dirs",
    multiple=True,
    type=click.Path(path_type=Path),
    help="Folder written by `npl effects --outcome recovered` (moves p_recover); may be given "
    "again with a folder of effects on recovery_rate (moves expected collections).",
)
_COSTS_OPTION = click.option(
    "--costs",
    "costs_file",
    default=None,
    type=click.Path(path_type=Path),
    help="TOML [costs] table. Default: costs.json of the --effects folder.",
)


@main.command("counterfactual")
@MODEL_OPTION
@_EFFECTS_OPTION
@data_option("Loans (a tape, or a book: only its loans table is read).")
@click.option("--loan-id", default=None, help="The loan to explain.")
@click.option(
    "--loan-ids",
    "loan_ids_file",
    default=None,
    type=click.Path(path_type=Path),
    help="Text file of loan ids, one per line: batch mode.",
)
@click.option("--n", "n_counterfactuals", default=3, show_default=True, type=click.IntRange(1, 20))
@click.option(
    "--target",
    default=0.5,
    show_default=True,
    type=click.FloatRange(0.0, 1.0, min_open=True, max_open=True),
    help="p_recover a counterfactual must reach.",
)
@click.option(
    "--uplift",
    default=None,
    type=click.FloatRange(0.0, 1.0, min_open=True, max_open=True),
    help="Instead of --target: the loan's p_recover plus this.",
)
@click.option(
    "--borrower-side",
    is_flag=True,
    help="Also explore what-ifs the servicer cannot make (income, debt-to-income, liquid "
    "assets), reported separately.",
)
@click.option(
    "--discount-range",
    nargs=2,
    default=(0.1, 0.5),
    show_default=True,
    type=click.FloatRange(0.0, 1.0, max_open=True),
    help="Permitted settlement discounts (share of the exposure waived).",
)
@click.option(
    "--time-budget",
    default=10.0,
    show_default=True,
    type=click.FloatRange(0.0, min_open=True),
    help="Seconds per loan after which no new search round starts.",
)
@click.option("--seed", default=0, show_default=True, type=int)
@_COSTS_OPTION
@click.option(
    "--out",
    default=None,
    type=click.Path(dir_okay=False, path_type=Path),
    help="Write the results: FILE.json (settings, summary, loans, counterfactuals), or the "
    "counterfactual rows as FILE.parquet, FILE.csv or FILE.xlsx.",
)
@_audit_options
@_user_errors
def counterfactual_command(
    *,
    model_dir: Path,
    effects_dirs: tuple[Path, ...],
    data_dir: Path,
    loan_id: str | None,
    loan_ids_file: Path | None,
    n_counterfactuals: int,
    target: float,
    uplift: float | None,
    borrower_side: bool,
    discount_range: tuple[float, float],
    time_budget: float,
    seed: int,
    costs_file: Path | None,
    out: Path | None,
    audit_db: Path | None = None,
    no_audit: bool = False,
) -> None:
    """What would have to change for a loan to recover (see docs/counterfactuals.md).

    Returns up to --n diverse lever settings (the action, the settlement discount) that bring
    the loan's p_recover up to the target, each re-scored by the engine, with its cost and the
    change in expected collections. When none reaches the target, the levers that come closest
    are shown instead (status `closest`). With --borrower-side, what-ifs about the borrower are
    reported separately. Counterfactuals explain the model, not the world.
    """
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeElapsedColumn

    from npl_engine.counterfactuals import (
        counterfactuals,
        read_loan_ids,
        strategy_model,
        summarize,
        write_result,
    )

    if (loan_id is None) == (loan_ids_file is None):
        msg = "give either --loan-id ID (one loan) or --loan-ids FILE (many)"
        raise NplError(msg)
    if out is not None:
        check_out_file(out)
    ids = [loan_id] if loan_id is not None else read_loan_ids(cast("Path", loan_ids_file))
    console = _console(stderr=True)
    say = _steps(console)
    say(f"loading {model_dir}" + "".join(f" and {e}" for e in effects_dirs))
    model = strategy_model(model_dir, effects_dirs or None, costs=costs_file)
    say(f"reading and validating {data_dir}")
    loans = read_data(data_dir).loans.collect()
    say(f"searching counterfactuals for {len(ids):,} loan(s)")
    columns = (BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    with Progress(*columns, console=console, transient=True, disable=len(ids) == 1) as bar:
        task = bar.add_task("counterfactuals", total=len(ids))
        result = counterfactuals(
            model,
            loans,
            ids,
            n=n_counterfactuals,
            target=target,
            uplift=uplift,
            borrower_side=borrower_side,
            discount_range=discount_range,
            time_budget_seconds=time_budget,
            seed=seed,
            progress=lambda done: bar.update(task, completed=done),
        )
    found = result.counterfactuals.group_by("loan_id").agg(
        counterfactuals=pl.col("changes").str.join(" | "),
        best_p_recover=pl.col("p_recover").max(),
    )
    _record_decisions(  # before anything is published
        audit_db,
        no_audit=no_audit,
        command="counterfactual",
        loans=loans.filter(pl.col("loan_id").is_in(ids)),
        outputs=result.loans.join(found, on="loan_id", how="left"),
        data_dir=data_dir,
        model_dir=model_dir,
        parameters={
            "effects": [str(e) for e in effects_dirs],
            "settings": {k: str(v) for k, v in asdict(result.settings).items()},
        },
    )
    if out is not None:
        say(f"writing {out}")
        if out.suffix.lower() == ".json":
            write_result(result, out)
        else:
            write_table(result.counterfactuals, out)
    if loan_id is not None:
        _print_counterfactuals(result)
    else:
        _print_counterfactual_summary(summarize(result))
    if out is not None:
        click.echo(f"wrote {out}")


def _print_counterfactuals(result: Any) -> None:
    """One loan: its score, then its counterfactuals, servicer levers first."""
    console = _console()
    loan = result.loans.row(0, named=True)
    console.print(
        f"loan {loan['loan_id']}: p_recover {loan['p_recover']:.3f}, target {loan['target']:.3f}"
    )
    if loan["status"] not in ("found", "closest"):
        console.print(loan["message"])
        return
    if loan["status"] == "closest":
        console.print(loan["message"])
    titles = {
        "servicer": "servicer levers"
        if loan["status"] == "found"
        else "closest servicer levers (none reaches the target)",
        "borrower_side": "borrower-side what-ifs (not the servicer's to make: what a "
        "conversation with the borrower could explore)",
    }
    for kind, title in titles.items():
        rows = result.counterfactuals.filter(pl.col("kind") == kind)
        if kind == "borrower_side" and not result.settings.borrower_side:
            continue
        console.print(f"\n{title}")
        if rows.height == 0:
            console.print("none within the permitted levers and ranges")
            continue
        console.print(
            _table(
                ["#>", "changes", "p_recover>", "collections change>", "cost>"],
                [
                    (
                        str(r["rank"]),
                        str(r["changes"]),
                        f"{r['p_recover']:.3f}",
                        _signed_money(r["collections_change"]),
                        _money(r["cost"]),
                    )
                    for r in rows.iter_rows(named=True)
                ],
            )
        )
    console.print(
        "p_recover is the engine's re-score of each change; it explains the model, not the world"
    )


def _print_counterfactual_summary(summary: dict[str, Any]) -> None:
    """Batch: feasible share, levers, cost and uplift."""
    rows = [
        ("loans", f"{summary['n_loans']:,}"),
        ("already at the target", f"{summary['already_meet_target']:,}"),
        ("with a servicer lever reaching the target", _pct(summary["share_with_servicer_lever"])),
        ("given the closest levers only", f"{summary['closest_only']:,}"),
        ("with a borrower-side what-if", _pct(summary["share_with_borrower_side_what_if"])),
        ("time budget spent without result", f"{summary['time_budget_spent']:,}"),
        ("total cost (first lever per loan)", _money(summary["total_cost"])),
        (
            "mean p_recover uplift",
            "-" if summary["mean_p_recover_uplift"] is None
            else f"{summary['mean_p_recover_uplift']:+.3f}",
        ),
        ("expected collections change", _money(summary["total_expected_collections_change"])),
        ("median seconds per loan", f"{summary['median_seconds_per_loan'] or 0:.2f}"),
    ]  # fmt: skip
    console = _console()
    console.print(_table(["", "value>"], rows))
    levers = [(k, f"{v:,}") for k, v in summary["most_common_levers"].items()]
    if levers:
        console.print(_table(["most common servicer levers", "loans>"], levers))


@main.command("what-if")
@MODEL_OPTION
@_EFFECTS_OPTION
@data_option("Loans (a tape, or a book: only its loans table is read).")
@click.option("--loan-id", required=True, help="The loan to re-score.")
@click.option(
    "--set",
    "assignments",
    multiple=True,
    required=True,
    metavar="COLUMN=VALUE",
    help="A changed input: a loans column (monthly_income=2500) or, with --effects, a lever "
    "(action=call, settlement_discount=0.2). Repeat for several.",
)
@click.option("--top", default=3, show_default=True, type=click.IntRange(1, 40))
@_COSTS_OPTION
@_user_errors
def what_if_command(
    *,
    model_dir: Path,
    effects_dirs: tuple[Path, ...],
    data_dir: Path,
    loan_id: str,
    assignments: tuple[str, ...],
    top: int,
    costs_file: Path | None,
) -> None:
    """Re-score a loan with changed inputs: p_recover, expected collections and reasons."""
    from npl_engine.counterfactuals import strategy_model, what_if

    raw: dict[str, str] = {}
    for item in assignments:
        column, sep, value = item.partition("=")
        if not sep or not column.strip():
            msg = f"--set {item!r}: expected COLUMN=VALUE"
            raise NplError(msg)
        raw[column.strip()] = value.strip()
    console = _console(stderr=True)
    say = _steps(console)
    say(f"loading {model_dir}")
    model = strategy_model(model_dir, effects_dirs or None, costs=costs_file)
    say(f"reading and validating {data_dir}")
    loans = read_data(data_dir).loans.collect()
    result = what_if(model, loans, loan_id, raw, top=top)
    out = _console()
    out.print(f"loan {loan_id}")
    out.print(_table(["input", "before", "after"], [(k, *v) for k, v in result.changes.items()]))
    after_c = result.expected_collections_after
    rows = [
        (
            "p_recover",
            f"{result.p_recover_before:.3f}",
            f"{result.p_recover_after:.3f}",
            f"{result.p_recover_after - result.p_recover_before:+.3f}",
        ),
        (
            "expected collections",
            _money(result.expected_collections_before),
            _money(after_c),
            "-" if after_c is None else f"{after_c - result.expected_collections_before:+,.0f}",
        ),
    ]
    out.print(_table(["", "before>", "after>", "change>"], rows))
    if result.cost:
        out.print(f"cost of the action: {_money(result.cost)}")
    for when, codes in (("before", result.reasons_before), ("after", result.reasons_after)):
        mine = codes.filter(pl.col("target") == "p_recover")
        out.print(f"\ntop p_recover reasons {when}")
        reasons = [
            (str(r["rank"]), str(r["text"]), _effect("p_recover", r["contribution"]))
            for r in mine.iter_rows(named=True)
        ]
        out.print(_table(["#>", "reason", "effect>"], reasons))
