"""The ``npl`` command line: a thin layer that parses options, calls the engine and prints.

Every command that reads data validates it first and writes nothing when the input is bad.
Errors meant for the user (:class:`~npl_engine.errors.NplError`) become a message on stderr and
exit code 2; they never show a traceback.
"""

from __future__ import annotations

import functools
import sys
import time
from collections.abc import Callable, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any, TypeVar, cast

import click
import polars as pl
from rich.console import Console
from rich.table import Table

from npl_engine import __version__
from npl_engine.data import DatasetKind, DatasetSummary, infer_kind, read_dataset, summarize
from npl_engine.errors import NplError

__all__ = ["main"]

F = TypeVar("F", bound=Callable[..., Any])

EXIT_BAD_INPUT = 2
#: Files `npl score` writes (an existing folder holding only these may be replaced).
SCORE_FILES = frozenset({"scores.parquet", "curves.parquet"})


def _console(*, stderr: bool = False) -> Console:
    """A console for tables: piped output is 160 columns wide so tables are never squeezed."""
    stream = sys.stderr if stderr else sys.stdout
    width = None if stream.isatty() else 160
    return Console(highlight=False, stderr=stderr, width=width, soft_wrap=True)


def _user_errors(func: F) -> F:
    """Turn :class:`NplError` into a clear message and exit code 2."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return func(*args, **kwargs)
        except NplError as exc:
            click.secho(f"error: {exc}", fg="red", err=True)
            sys.exit(EXIT_BAD_INPUT)

    return wrapper  # type: ignore[return-value]


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(__version__, prog_name="npl")
def main() -> None:
    """npl_engine: price and manage non-performing loan portfolios.

    Data comes as a dataset folder (loans, actions, payments as Parquet or CSV) in the form of
    the data contract (docs/data-contract.md).
    """


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
@_user_errors
def validate(dataset: Path, kind: str | None, as_of: datetime | None) -> None:
    """Check DATASET against the data contract and summarise it.

    Prints every problem found (table, column, rule, number of rows, example loan_ids) and
    exits with code 2 if the dataset breaks the contract.
    """
    console = _console()
    if kind is None and dataset.is_dir():
        kind = infer_kind(dataset)
        why = "actions or payments files present" if kind == "book" else "loans only"
        console.print(f"kind: {kind} (assumed: {why}; choose with --kind)")
    data = read_dataset(
        dataset,
        kind=cast("DatasetKind | None", kind),
        as_of_date=as_of.date() if as_of is not None else None,
    )
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


def _table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> Table:
    """Build a rich table; a header ending in ">" marks a right-aligned column of figures.

    Figures are never cut short: their columns are at least as wide as their longest value.
    """
    table = Table()
    for i, header in enumerate(headers):
        if header.endswith(">"):
            width = max((len(row[i]) for row in rows), default=0)
            table.add_column(header[:-1], justify="right", no_wrap=True, min_width=width)
        else:
            width = max((len(row[i]) for row in rows), default=0)
            table.add_column(header, overflow="fold", min_width=min(width, 30))
    for row in rows:
        table.add_row(*row)
    return table


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
    type=click.Choice(["parquet", "csv"]),
    default="parquet",
    show_default=True,
    help="File format of the dataset's tables (the truth is always Parquet).",
)
@click.option(
    "--missing-rate",
    default=0.05,
    show_default=True,
    type=click.FloatRange(0.0, 1.0, max_open=True),
    help="Share of values missing at random in each optional borrower column.",
)
@_user_errors
def simulate(
    *, out: Path, n_loans: int, seed: int, kind: str, fmt: str, missing_rate: float
) -> None:
    """Simulate an NPL book or tape whose ground truth is known (see docs/simulator.md).

    The folder holds the dataset in contract form; truth/ beside the tables holds each loan's
    true recovery probability, expected monthly collections and action effects.
    """
    from npl_engine.data.simulator import SimulationSettings, write_simulation
    from npl_engine.data.simulator import simulate as run_simulation

    console = _console(stderr=True)
    settings = SimulationSettings(
        n_loans=n_loans, seed=seed, kind=cast("DatasetKind", kind), missing_rate=missing_rate
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


@main.command()
@click.option(
    "--out",
    default=Path("demo_out"),
    show_default=True,
    type=click.Path(path_type=Path),
    help="Folder for the demo's datasets and results.",
)
@click.option("--loans", "n_loans", default=20_000, show_default=True, type=click.IntRange(100))
@click.option("--seed", default=42, show_default=True, type=int)
@_user_errors
def demo(*, out: Path, n_loans: int, seed: int) -> None:
    """Run the end-to-end demo on a built-in simulated portfolio.

    Simulates a historical book and a tape offered for sale (a quarter of the book's size),
    validates both against the data contract and prints a portfolio summary of each.
    """
    from npl_engine.data.simulator import SimulationSettings, write_simulation
    from npl_engine.data.simulator import simulate as run_simulation

    console = _console()
    steps: tuple[tuple[DatasetKind, int, int], ...] = (
        ("book", n_loans, seed),
        ("tape", max(n_loans // 4, 100), seed + 1),
    )
    for kind, n, s in steps:
        folder = out / kind
        with console.status(f"simulating a {kind} of {n:,} loans"):
            write_simulation(
                run_simulation(SimulationSettings(n_loans=n, seed=s, kind=kind)), folder
            )
        data = read_dataset(folder, kind=kind)
        console.rule(f"[bold]{kind}[/bold]: {folder} (valid)")
        _print_summary(console, summarize(data))
    console.print(
        f"\nNext: [bold]npl validate {out / 'tape'}[/bold]; the simulator's ground truth is in "
        f"{out / 'book' / 'truth'}."
    )


def _steps(console: Console) -> Callable[[str], None]:
    """A progress callback that prints each step with the time since the start."""
    start = time.perf_counter()

    def say(step: str) -> None:
        console.print(f"[dim]{time.perf_counter() - start:6.1f} s[/dim]  {step}")

    return say


@main.command()
@click.option(
    "--data",
    "data_dir",
    required=True,
    type=click.Path(path_type=Path),
    help="A book: loans, actions and payments in contract form.",
)
@click.option(
    "--out",
    required=True,
    type=click.Path(path_type=Path),
    help="Model folder to write (replaced if it holds an earlier model).",
)
@click.option(
    "--as-of",
    "as_of",
    type=click.DateTime(formats=["%Y-%m-%d"]),
    default=None,
    help="Day the history was extracted (YYYY-MM-DD). Default: latest payment or action date.",
)
@click.option(
    "--horizon-months",
    default=24,
    show_default=True,
    type=click.IntRange(1, 600),
    help="Recovery: collections within this many months after cut-off ...",
)
@click.option(
    "--threshold",
    default=0.5,
    show_default=True,
    type=click.FloatRange(0.0, 1.0, min_open=True),
    help="... reach this share of the exposure.",
)
@click.option(
    "--valuation-horizon",
    default=60,
    show_default=True,
    type=click.IntRange(1, 600),
    help="Months of the expected collections curve.",
)
@click.option("--seed", default=0, show_default=True, type=int)
@click.option("--no-baselines", is_flag=True, help="Skip the logistic and random-forest baselines.")
@_user_errors
def train(
    *,
    data_dir: Path,
    out: Path,
    as_of: datetime | None,
    horizon_months: int,
    threshold: float,
    valuation_horizon: int,
    seed: int,
    no_baselines: bool,
) -> None:
    """Train the recovery model on a book and write a model folder with its model card."""
    from npl_engine.scoring import RecoveryDefinition, RecoveryModel

    console = _console(stderr=True)
    say = _steps(console)
    say(f"reading and validating {data_dir}")
    book = read_dataset(data_dir, kind="book", as_of_date=as_of.date() if as_of else None)
    definition = RecoveryDefinition(
        horizon_months=horizon_months,
        threshold=threshold,
        valuation_horizon_months=valuation_horizon,
    )
    model = RecoveryModel(definition=definition, baselines=not no_baselines, seed=seed)
    model.fit(book, progress=say)
    say(f"writing {out}")
    model.save(out)
    rows = [
        (
            name,
            f"{m['auc']:.4f}",
            f"{m['brier']:.4f}",
            f"{m['log_loss']:.4f}",
            f"{m['calibration_error']:.4f}",
        )
        for name, m in model.metrics_["classification"].items()
    ]
    _console().print(
        _table(["model (out of fold)", "AUC>", "Brier>", "log loss>", "calibration error>"], rows)
    )
    click.echo(f"wrote model {out} (model card: {out / 'model_card.md'})")


@main.command()
@click.option(
    "--model",
    "model_dir",
    required=True,
    type=click.Path(path_type=Path),
    help="Model folder written by `npl train`.",
)
@click.option(
    "--data",
    "data_dir",
    required=True,
    type=click.Path(path_type=Path),
    help="Loans to score (a tape, or a book: only its loans table is read).",
)
@click.option(
    "--out",
    required=True,
    type=click.Path(path_type=Path),
    help="Folder for scores.parquet and curves.parquet.",
)
@_user_errors
def score(*, model_dir: Path, data_dir: Path, out: Path) -> None:
    """Score loans: p_recover, expected collections and the monthly curve of each loan.

    Writes OUT/scores.parquet (one row per loan) and OUT/curves.parquet (one row per loan and
    month) and prints a summary by segment.
    """
    from npl_engine.data.writers import atomic_folder
    from npl_engine.scoring import RecoveryModel

    console = _console(stderr=True)
    say = _steps(console)
    say(f"loading {model_dir}")
    model = RecoveryModel.load(model_dir)
    say(f"reading and validating {data_dir}")
    data = read_dataset(data_dir)
    say("scoring")
    result = model.score(data.loans)
    say(f"writing {out}")
    with atomic_folder(out, allowed=SCORE_FILES) as staging:
        result.scores.write_parquet(staging / "scores.parquet")
        result.curves.write_parquet(staging / "curves.parquet")
    segments = (
        result.scores.join(data.loans.select("loan_id", "segment").collect(), on="loan_id")
        .group_by("segment")
        .agg(
            pl.len().alias("loans"),
            pl.col("exposure").sum(),
            pl.col("p_recover").mean(),
            pl.col("expected_collections").sum(),
        )
        .sort("segment")
    )
    s = result.scores
    rows = [
        _portfolio_row(
            str(r["segment"]),
            loans=r["loans"],
            exposure=r["exposure"],
            p_recover=r["p_recover"],
            collections=r["expected_collections"],
        )
        for r in segments.iter_rows(named=True)
    ]
    rows.append(
        _portfolio_row(
            "total",
            loans=s.height,
            exposure=float(s["exposure"].sum()),
            p_recover=s["p_recover"].mean(),  # type: ignore[arg-type]
            collections=float(s["expected_collections"].sum()),
        )
    )
    headers = ["segment", "loans>", "exposure>", "mean p_recover>", "expected collections>"]
    _console().print(_table([*headers, "recovery rate>"], rows))
    click.echo(f"wrote {out / 'scores.parquet'} and {out / 'curves.parquet'}")


def _portfolio_row(
    name: str, *, loans: int, exposure: float, p_recover: float, collections: float
) -> tuple[str, ...]:
    """One row of a portfolio table: counts, money and the recovery rate."""
    rate = collections / exposure if exposure else 0.0
    return (
        name,
        f"{loans:,}",
        f"{exposure:,.0f}",
        f"{p_recover:.3f}",
        f"{collections:,.0f}",
        f"{rate:.1%}",
    )
