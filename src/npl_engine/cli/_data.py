"""Data commands: validate a dataset against the contract, simulate a book or a tape."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import cast

import click
from rich.console import Console

from npl_engine.cli._base import COLUMNS_OPTION, _console, _table, _user_errors, main, read_data
from npl_engine.data import DatasetKind, DatasetSummary, infer_kind, summarize
from npl_engine.errors import NplError


@main.command()
@click.argument("dataset", type=click.Path(path_type=Path))
@click.option(
    "--kind",
    type=click.Choice(["book", "tape"]),
    default=None,
    help="book: loans + actions + payments; tape: loans only, one common cut-off date. "
    "Default: book if an actions or payments file is present, else tape.",
)
@click.option(
    "--as-of",
    "as_of",
    type=click.DateTime(formats=["%Y-%m-%d"]),
    default=None,
    help="Day the history was extracted (YYYY-MM-DD). Default: latest payment or action date.",
)
@COLUMNS_OPTION
@click.option(
    "--model",
    "model_dir",
    default=None,
    type=click.Path(path_type=Path),
    help="Model folder written by `npl train`: also check that DATASET holds every column "
    "the model needs, so that scoring and pricing it will not refuse it.",
)
@_user_errors
def validate(
    dataset: Path, kind: str | None, as_of: datetime | None, model_dir: Path | None
) -> None:
    """Check DATASET against the data contract and summarise it.

    Prints every problem found (table, column, rule, number of rows, example loan_ids) and
    exits with code 2 if the dataset breaks the contract, or, with --model, lacks a column
    that model was trained with.
    """
    console = _console()
    if kind is None and dataset.is_dir():
        kind = infer_kind(dataset)
        why = "actions or payments files present" if kind == "book" else "loans only"
        console.print(f"kind: {kind} (assumed: {why}; choose with --kind)")
    data = read_data(
        dataset,
        kind=cast("DatasetKind | None", kind),
        as_of_date=as_of.date() if as_of is not None else None,
    )
    if model_dir is not None:
        from npl_engine.scoring import RecoveryModel

        model = RecoveryModel.load(model_dir)
        try:
            model.check_columns(data.loans.collect())
        except NplError as exc:
            msg = f"{dataset} is a valid {kind}, but not for the model {model_dir}: {exc}"
            raise NplError(msg) from None
        console.print(f"[green]{dataset} holds every column the model {model_dir} needs[/green]")
    console.print(f"[green]{dataset} is a valid {kind}[/green]")
    _print_summary(console, summarize(data))


def _print_summary(console: Console, summary: DatasetSummary) -> None:
    """Print the cut-off range, the size of each table, then loans and GBV by segment."""
    cutoff = "-" if summary.cutoff_min is None else summary.cutoff_min.isoformat()
    if summary.cutoff_max is not None and summary.cutoff_max != summary.cutoff_min:
        cutoff += f" to {summary.cutoff_max.isoformat()}"
    as_of = summary.as_of_date.isoformat() if summary.as_of_date else "-"
    console.print(f"cut-off date: {cutoff}    as_of_date: {as_of}")
    tables = [
        ("loans", f"{summary.n_loans:,}", f"{summary.gbv:,.2f}", "exposure (GBV)"),
        ("payments", f"{summary.n_payments:,}", f"{summary.payments_total:,.2f}", "amount"),
        ("actions", f"{summary.n_actions:,}", f"{summary.actions_cost:,.2f}", "cost"),
    ]
    console.print(_table(["table", "rows>", "total>", "of"], tables))
    segments = [
        (
            s.segment,
            f"{s.n_loans:,}",
            f"{s.gbv:,.2f}",
            f"{s.gbv / summary.gbv if summary.gbv else 0.0:.1%}",
        )
        for s in summary.segments
    ]
    console.print(_table(["segment", "loans>", "GBV>", "share of GBV>"], segments))


@main.command()
@click.option(
    "--out",
    required=True,
    type=click.Path(path_type=Path),
    help="Folder to write: the dataset's tables, and the ground truth under truth/.",
)
@click.option("--loans", "n_loans", default=10_000, show_default=True, type=click.IntRange(1))
@click.option("--seed", default=0, show_default=True, type=int, help="Same seed, same bytes.")
@click.option(
    "--kind",
    type=click.Choice(["book", "tape"]),
    default="book",
    show_default=True,
    help="book: loans + actions + payments, cut-offs 2016-2022, history to 2025-12-31; "
    "tape: loans only, one cut-off (2026-09-30).",
)
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["parquet", "csv", "eba"]),
    default="parquet",
    show_default=True,
    help="File format of the dataset's tables (the truth is always Parquet); eba writes a "
    "tape as an EBA NPL template set, for `npl import eba` (docs/import.md).",
)
@click.option(
    "--missing-rate",
    default=0.05,
    show_default=True,
    type=click.FloatRange(0.0, 1.0, max_open=True),
    help="Share of values missing at random in each optional borrower column.",
)
@click.option(
    "--realised-months",
    default=0,
    show_default=True,
    type=click.IntRange(0, 60),
    help="Tape only: also write the actions and payments its loans make over the N months "
    "after the cut-off (the tape observed later, for `npl backtest`); loans and truth unchanged.",
)
@_user_errors
def simulate(
    *,
    out: Path,
    n_loans: int,
    seed: int,
    kind: str,
    fmt: str,
    missing_rate: float,
    realised_months: int,
) -> None:
    """Simulate an NPL book or tape whose ground truth is known (see docs/simulator.md).

    The folder holds the dataset in contract form; truth/ beside the tables holds each loan's
    true recovery probability, expected monthly collections and action effects.
    """
    from npl_engine.data.simulator import SimulationSettings, write_simulation
    from npl_engine.data.simulator import simulate as run_simulation

    if fmt == "eba" and kind != "tape":
        msg = "--format eba writes a tape as an EBA template set: add --kind tape"
        raise NplError(msg)
    console = _console(stderr=True)
    if realised_months and kind != "tape":
        raise click.UsageError("--realised-months is for --kind tape (a book has its history)")
    settings = SimulationSettings(
        n_loans=n_loans,
        seed=seed,
        kind=cast("DatasetKind", kind),
        missing_rate=missing_rate,
        realised_months=realised_months,
    )
    with console.status(f"simulating {n_loans:,} loans ({kind}, seed {seed})"):
        sim = run_simulation(settings)
    with console.status(f"writing {out}"):
        write_simulation(sim, out, fmt=fmt)
    n_pay = 0 if sim.payments is None else sim.payments.height
    n_act = 0 if sim.actions is None else sim.actions.height
    click.echo(
        f"wrote {kind} {out}: {sim.loans.height:,} loans, {n_pay:,} payments, "
        f"{n_act:,} actions; truth in {out / 'truth'}"
    )
