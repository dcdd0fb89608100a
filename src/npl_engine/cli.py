"""The ``npl`` command line: a thin layer that parses options, calls the engine and prints.

Every command that reads data validates it first and writes nothing when the input is bad.
Errors meant for the user (:class:`~npl_engine.errors.NplError`) become a message on stderr and
exit code 2; they never show a traceback.
"""

from __future__ import annotations

import functools
import json
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict
from datetime import datetime
from pathlib import Path
from typing import Any, TypeVar, cast

import click
import numpy as np
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


def _audit_options(func: F) -> F:
    """Add ``--audit-db`` and ``--no-audit`` to a command that records decisions.

    The database is opened (and created) before the command's work starts, so a file that
    cannot be written, or that another process holds, stops the command at once rather than
    after the work.
    """

    @functools.wraps(func)
    def checked(*args: Any, **kwargs: Any) -> Any:
        if not kwargs.get("no_audit"):
            from npl_engine.audit import AuditStore, default_audit_path

            try:
                AuditStore(kwargs.get("audit_db") or default_audit_path()).close()
            except NplError as exc:
                click.secho(f"error: {exc}", fg="red", err=True)
                sys.exit(EXIT_BAD_INPUT)
        return func(*args, **kwargs)

    command = click.option(
        "--no-audit",
        is_flag=True,
        help="Append no decision record (throwaway runs only; see docs/audit.md).",
    )(checked)
    return click.option(  # type: ignore[return-value]
        "--audit-db",
        type=click.Path(dir_okay=False, path_type=Path),
        default=None,
        help="Audit database to append the decision record to. Default: $NPL_AUDIT_DB, "
        "else ~/.local/share/npl_engine/audit.duckdb.",
    )(command)


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
    help="Folder for the demo's datasets, model and results.",
)
@click.option(
    "--loans",
    "n_loans",
    default=20_000,
    show_default=True,
    type=click.IntRange(1000),
    help="Loans in the historical book (the tape has a quarter as many).",
)
@click.option("--seed", default=42, show_default=True, type=int)
@click.option(
    "--scenarios",
    "scenarios_file",
    default=Path("scenarios/eu_2026.toml"),
    show_default=True,
    type=click.Path(path_type=Path),
)
@click.option(
    "--tranches",
    "tranches_file",
    default=Path("scenarios/gacs_tranches.toml"),
    show_default=True,
    type=click.Path(path_type=Path),
)
@click.pass_context
@_user_errors
def demo(
    ctx: click.Context,
    *,
    out: Path,
    n_loans: int,
    seed: int,
    scenarios_file: Path,
    tranches_file: Path,
) -> None:
    """Run the end-to-end demo on a built-in simulated portfolio.

    Simulates a historical book and a tape offered for sale, validates the tape, trains the
    recovery model on the book, scores the tape and values it under the scenario file (with a
    Monte Carlo and the tranche waterfall): the same commands a user runs, in order.
    """
    console = _console()
    book, tape, model_dir = out / "book", out / "tape", out / "model"
    effects_dir, audit = out / "effects", out / "audit.duckdb"
    steps: list[tuple[str, click.Command, dict[str, Any]]] = [
        ("simulate a historical book", simulate,
         {"out": book, "n_loans": n_loans, "seed": seed, "kind": "book"}),
        ("simulate a tape offered for sale", simulate,
         {"out": tape, "n_loans": max(n_loans // 4, 250), "seed": seed + 1, "kind": "tape"}),
        ("validate the tape", validate, {"dataset": tape, "kind": "tape", "as_of": None}),
        ("train the recovery model on the book", train,
         {"data_dir": book, "out": model_dir, "as_of": None}),
        ("score the tape", score,
         {"model_dir": model_dir, "data_dir": tape, "out": out / "scores", "audit_db": audit}),
        ("value the tape", value,
         {"model_dir": model_dir, "data_dir": tape, "scenarios_file": scenarios_file,
          "out": out / "valuation", "simulations": 500, "seed": seed,
          "tranches_file": tranches_file if tranches_file.exists() else None,
          "audit_db": audit}),
        ("estimate what each collection action does (refutations: npl effects without "
         "--no-refutations)", effects,
         {"data_dir": book, "out": effects_dir, "refutations": False, "seed": seed}),
        ("plan next quarter's actions on the tape", policy,
         {"effects_dir": effects_dir, "data_dir": tape, "budget": 100_000.0,
          "out": out / "plan.parquet", "costs_file": None, "audit_db": audit}),
        ("check fairness on the book", fairness,
         {"model_dir": model_dir, "data_dir": book, "out": out / "fairness"}),
        ("write the report", report_command,
         {"model_dir": model_dir, "data_dir": tape, "scenarios_file": scenarios_file,
          "out": out / "report.html", "fairness_dir": book, "seed": seed,
          "effects_dir": effects_dir}),
    ]  # fmt: skip
    for i, (title, command, params) in enumerate(steps, start=1):
        console.rule(f"[bold]{i}. {title}[/bold]")
        ctx.invoke(command, **params)
    console.rule("[bold]done[/bold]")
    console.print(
        f"Everything is in {out}/: the simulated book and tape (truth in */truth), the model "
        f"and its card ({model_dir / 'model_card.md'}), scores, the valuation, the action "
        f"effects and plan, fairness, and the decision records ({audit}; `npl audit list "
        f"--audit-db {audit}`)."
    )
    console.print(f"Report: {(out / 'report.html').resolve()}")


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
@click.option(
    "--explain",
    "with_reasons",
    is_flag=True,
    help="Add each loan's top 3 reason codes (reason_1..3 for p_recover, "
    "collections_reason_1..3 for expected collections) to scores.parquet. Takes longer.",
)
@_audit_options
@_user_errors
def score(
    *,
    model_dir: Path,
    data_dir: Path,
    out: Path,
    with_reasons: bool,
    audit_db: Path | None = None,
    no_audit: bool = False,
) -> None:
    """Score loans: p_recover, expected collections and the monthly curve of each loan.

    Writes OUT/scores.parquet (one row per loan) and OUT/curves.parquet (one row per loan and
    month) and prints a summary by segment. With --explain, scores.parquet also holds the top
    3 reason codes of each loan (see `npl explain` and docs/explanations.md).
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
    scores = result.scores
    if with_reasons:
        say("explaining: top 3 reason codes per loan")
        scores = _with_reason_codes(model, data.loans, scores)
    say(f"writing {out}")
    with atomic_folder(out, allowed=SCORE_FILES) as staging:
        scores.write_parquet(staging / "scores.parquet")
        result.curves.write_parquet(staging / "curves.parquet")
        # Inside the block: if the record cannot be written, the outputs are not published.
        _record_decisions(
            audit_db,
            no_audit=no_audit,
            command="score",
            loans=data.loans.collect(),
            outputs=result.scores,
            reasons=scores.select("loan_id", pl.col(r"^(collections_)?reason_\d+$"))
            if with_reasons
            else None,
            data_dir=data_dir,
            model_dir=model_dir,
            parameters={"explain": with_reasons},
        )
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


def _with_reason_codes(model: Any, loans: pl.LazyFrame, scores: pl.DataFrame) -> pl.DataFrame:
    """``scores`` with the top 3 reason codes of each loan as text columns."""
    from npl_engine.explain import explain_loans, reason_codes, reason_columns

    codes = reason_codes(explain_loans(model, loans), top=3)
    return scores.join(
        reason_columns(codes, top=3), on="loan_id", how="left", maintain_order="left"
    )


#: Files `npl explain --global` writes.
EXPLAIN_FILES = frozenset({"importance.parquet", "importance.png"})


@main.command("explain")
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
    help="Loans (a tape, or a book: only its loans table is read).",
)
@click.option("--loan-id", default=None, help="Explain this loan: its top reason codes.")
@click.option(
    "--global",
    "global_",
    is_flag=True,
    help="Explain the model: mean |SHAP| of every feature on a sample of the loans.",
)
@click.option(
    "--out",
    default=None,
    type=click.Path(path_type=Path),
    help="With --global: folder for importance.parquet and importance.png.",
)
@click.option(
    "--top",
    default=5,
    show_default=True,
    type=click.IntRange(1, 40),
    help="Reason codes shown per output (--loan-id).",
)
@click.option(
    "--sample",
    default=2000,
    show_default=True,
    type=click.IntRange(1),
    help="Loans drawn for --global.",
)
@click.option("--seed", default=0, show_default=True, type=int, help="Seed of the --global draw.")
@_user_errors
def explain_command(
    *,
    model_dir: Path,
    data_dir: Path,
    loan_id: str | None,
    global_: bool,
    out: Path | None,
    top: int,
    sample: int,
    seed: int,
) -> None:
    r"""Explain the recovery model with SHAP values (see docs/explanations.md).

    \b
    npl explain --model M --data D --loan-id ID [--top 5]
        the loan's p_recover and expected collections, and the features that move each
        away from the model's base, in words;
    npl explain --model M --data D --global --out DIR [--sample 2000] [--seed 0]
        mean |SHAP| of every feature on a sample: DIR/importance.parquet and a chart,
        DIR/importance.png.
    """
    if (loan_id is None) == (not global_):
        msg = "give either --loan-id ID (one loan) or --global (the whole model)"
        raise NplError(msg)
    if global_ and out is None:
        msg = "--global needs --out DIR for importance.parquet and importance.png"
        raise NplError(msg)
    if loan_id is not None and out is not None:
        msg = "--out is for --global; --loan-id only prints"
        raise NplError(msg)
    from npl_engine.scoring import RecoveryModel

    console = _console(stderr=True)
    say = _steps(console)
    say(f"loading {model_dir}")
    model = RecoveryModel.load(model_dir)
    say(f"reading and validating {data_dir}")
    loans = read_dataset(data_dir).loans.collect()
    if loan_id is not None:
        _explain_loan(model, loans, loan_id, top=top)
    else:
        assert out is not None
        n = min(sample, loans.height)
        say(f"explaining a sample of {n:,} loans (seed {seed})")
        _explain_global(model, loans, out, sample=sample, seed=seed)


def _explain_loan(model: Any, loans: pl.DataFrame, loan_id: str, *, top: int) -> None:
    """Print one loan's outputs, bases and reason codes."""
    from npl_engine.explain import explain_loans, reason_codes

    ex = explain_loans(model, loans, loan_ids=[loan_id])
    codes = reason_codes(ex, top=top)
    p = ex.attributions["p_recover"]
    c = ex.attributions["expected_collections"]
    loan = loans.filter(pl.col("loan_id") == loan_id).row(0, named=True)
    exposure = float(ex.features["exposure"][0])
    console = _console()
    console.print(
        f"loan {loan_id}: {loan['segment']}, legal stage {loan['legal_stage']}, "
        f"exposure {exposure:,.0f}"
    )
    console.print(f"p_recover {p.output[0]:.3f}   (base {p.base[0]:.3f}: the model's typical loan)")
    rate = c.output[0] / exposure if exposure else 0.0
    console.print(
        f"expected collections {c.output[0]:,.0f} ({rate:.1%} of exposure)   "
        f"(base {c.base[0]:,.0f}: a typical loan of this exposure)"
    )
    for target, attribution in (("p_recover", p), ("expected_collections", c)):
        mine = codes.filter(pl.col("target") == target)
        rows = [
            (str(r["rank"]), str(r["text"]), _effect(target, r["contribution"]))
            for r in mine.iter_rows(named=True)
        ]
        shown = float(mine["contribution"].sum())
        change = float(attribution.output[0] - attribution.base[0])
        rows.append(("", "all other features", _effect(target, change - shown)))
        rows.append(("", f"{target} minus its base", _effect(target, change)))
        console.print(f"\n{target}: top {top} reasons")
        if mine.height == 0:
            console.print(
                "none: the calibrated probability is flat between the typical loan and this "
                "one, so no feature moves it (see docs/explanations.md)"
            )
            continue
        console.print(_table(["#>", "reason", "effect>"], rows))


def _effect(target: str, contribution: float) -> str:
    """A signed contribution: points of probability, or money."""
    if target == "p_recover":
        return f"{100 * contribution:+.1f} pts"
    return f"{contribution:+,.0f}"


def _explain_global(model: Any, loans: pl.DataFrame, out: Path, *, sample: int, seed: int) -> None:
    """Write and print global importance."""
    from npl_engine.data.writers import atomic_folder
    from npl_engine.explain import global_importance, plot_importance

    importance = global_importance(model, loans, sample=sample, seed=seed)
    with atomic_folder(out, allowed=EXPLAIN_FILES) as staging:
        importance.write_parquet(staging / "importance.parquet")
        plot_importance(importance, staging / "importance.png")
    rows = [
        (
            str(i),
            str(r["label"]),
            str(r["family"]),
            f"{r['p_recover_points']:.2f}",
            f"{r['collections_money']:,.0f}",
            f"{r['collections_share']:.2%}",
        )
        for i, r in enumerate(importance.iter_rows(named=True), start=1)
    ]
    headers = ["#>", "feature", "family", "p_recover (points)>", "collections>", "% of exposure>"]
    _console().print(_table(headers, rows))
    click.echo(f"wrote {out / 'importance.parquet'} and {out / 'importance.png'}")


#: Files `npl value` writes (an existing folder holding only these may be replaced).
VALUE_FILES = frozenset({"valuation.json", "cashflows.parquet", "paths.parquet"})
#: Files `npl expected-loss` writes.
EL_FILES = frozenset({"expected_loss.parquet", "summary.json"})


def _load_portfolio(
    model_dir: Path, data_dir: Path, grid: tuple[float, ...], say: Callable[[str], None]
) -> Any:
    """Load a model, read and validate loans, score them and measure the collateral response."""
    from npl_engine.scoring import RecoveryModel
    from npl_engine.valuation import build_portfolio

    say(f"loading {model_dir}")
    model = RecoveryModel.load(model_dir)
    say(f"reading and validating {data_dir}")
    loans = read_dataset(data_dir).loans.collect()
    say(f"scoring {loans.height:,} loans and measuring their collateral response")
    return model, build_portfolio(model, loans, collateral_grid=grid)


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
    help="The tape to value (its loans table).",
)
@click.option(
    "--scenarios",
    "scenarios_file",
    required=True,
    type=click.Path(path_type=Path),
    help="Scenario file (TOML), e.g. scenarios/eu_2026.toml.",
)
@click.option(
    "--out",
    required=True,
    type=click.Path(path_type=Path),
    help="Folder for valuation.json and cashflows.parquet.",
)
@click.option(
    "--price",
    type=click.FloatRange(0.0, min_open=True),
    default=None,
    help="A price paid at cut-off: adds the IRR and MOIC at that price.",
)
@click.option(
    "--target-irr",
    type=click.FloatRange(-1.0, min_open=True),
    default=None,
    help="Annual discount rate; overrides the scenario file's target_irr.",
)
@click.option(
    "--tranches",
    "tranches_file",
    type=click.Path(path_type=Path),
    default=None,
    help="Tranche structure (TOML), e.g. scenarios/gacs_tranches.toml.",
)
@click.option(
    "--simulations",
    type=click.IntRange(0),
    default=0,
    show_default=True,
    help="Monte Carlo paths (0 = none).",
)
@click.option("--seed", default=0, show_default=True, type=int, help="Seed of the Monte Carlo.")
@_audit_options
@_user_errors
def value(
    *,
    model_dir: Path,
    data_dir: Path,
    scenarios_file: Path,
    out: Path,
    price: float | None,
    target_irr: float | None,
    tranches_file: Path | None,
    simulations: int,
    seed: int,
    audit_db: Path | None = None,
    no_audit: bool = False,
) -> None:
    """Price a tape under weighted scenarios: present value at the target IRR, IRR at a price.

    Writes OUT/valuation.json and OUT/cashflows.parquet (scenario, month, gross, costs, net,
    discount factor, present value); with --simulations, the Monte Carlo percentiles too.
    """
    from rich.progress import Progress

    from npl_engine.data.writers import atomic_folder
    from npl_engine.scenarios import load_scenarios
    from npl_engine.valuation import (
        MonteCarloSettings,
        collateral_grid_for,
        simulate_paths,
        value_portfolio,
    )

    console = _console(stderr=True)
    say = _steps(console)
    scenario_set = load_scenarios(scenarios_file)
    tranche_structure = _load_tranches(tranches_file)
    grid = collateral_grid_for(scenario_set, monte_carlo=bool(simulations))
    model, portfolio = _load_portfolio(model_dir, data_dir, grid, say)
    say("valuing scenarios")
    try:
        valuation = value_portfolio(portfolio, scenario_set, target_irr=target_irr, price=price)
    except ValueError as exc:
        raise NplError(str(exc)) from exc
    extra: dict[str, Any] = {}
    paths = None
    if simulations:
        settings = MonteCarloSettings(n_paths=simulations, seed=seed)
        with Progress(console=console, transient=True) as bar:
            task = bar.add_task(f"Monte Carlo, {simulations:,} paths", total=simulations)
            paths = simulate_paths(
                portfolio,
                scenario_set,
                settings,
                recovery_threshold=model.definition.threshold,
                target_irr=target_irr,
                price=price,
                progress=lambda done, _: bar.update(task, completed=done),
            )
        extra["simulation"] = paths.to_dict(scenario_set.names)
    if tranche_structure is not None:
        extra["tranches"] = _run_tranches(tranche_structure, valuation, paths, price)
    result = valuation.to_dict() | extra
    say(f"writing {out}")
    with atomic_folder(out, allowed=VALUE_FILES) as staging:
        (staging / "valuation.json").write_text(json.dumps(result, indent=2) + "\n")
        valuation.cash_flows.write_parquet(staging / "cashflows.parquet")
        if paths is not None:
            pl.DataFrame(
                {
                    "path": np.arange(paths.net.shape[0]),
                    "scenario": [scenario_set.names[i] for i in paths.scenario],
                    "factor": paths.factor,
                    "net_collections": paths.net.sum(axis=1),
                    "price": paths.price,
                    "irr_at_price": paths.irr_at_price,
                }
            ).write_parquet(staging / "paths.parquet")
        _record_decisions(
            audit_db,
            no_audit=no_audit,
            command="value",
            loans=read_dataset(data_dir).loans.collect(),
            outputs=pl.DataFrame(
                {
                    "loan_id": portfolio.loan_id,
                    "exposure": portfolio.exposure,
                    "p_recover": portfolio.p_recover,
                    "expected_collections": portfolio.borrower.sum(axis=1)
                    + portfolio.collateral.sum(axis=1),
                }
            ),
            data_dir=data_dir,
            model_dir=model_dir,
            parameters={
                "scenarios": _file_ref(scenarios_file),
                "tranches": _file_ref(tranches_file),
                "price": price,
                "target_irr": target_irr,
                "simulations": simulations,
                "seed": seed,
                "weighted_price": result["weighted"]["price"],
            },
        )
    _print_valuation(result)
    click.echo(f"wrote {out / 'valuation.json'} and {out / 'cashflows.parquet'}")


def _pct(x: float | None) -> str:
    return "-" if x is None else f"{x:.1%}"


def _money(x: float | None) -> str:
    return "-" if x is None else f"{x:,.0f}"


def _print_valuation(result: dict[str, Any]) -> None:
    """Print the price table (and the Monte Carlo percentiles, if any)."""
    console = _console()
    console.print(
        f"GBV {result['gbv']:,.0f} ({result['n_loans']:,} loans); target IRR "
        f"{result['target_irr']:.1%}; horizon {result['horizon_months']} months"
    )
    with_price = result["price"] is not None
    headers = ["scenario", "weight>", "gross>", "costs>", "net>", "price>", "% GBV>"]
    if with_price:
        headers += ["IRR at price>", "MOIC>"]
    rows = []
    for s in [*result["scenarios"], result["weighted"]]:
        row = [
            s["name"],
            f"{s['weight']:.2f}",
            _money(s["gross_collections"]),
            _money(s["costs"]),
            _money(s["net_collections"]),
            _money(s["price"]),
            _pct(s["price_pct_gbv"]),
        ]
        if with_price:
            row += [_pct(s["irr_at_price"]), "-" if s["moic"] is None else f"{s['moic']:.2f}x"]
        rows.append(row)
    console.print(_table(headers, rows))
    sim = result.get("simulation")
    if sim:
        q = sim["percentiles"]
        rows = [
            ["net collections", *(_money(q["net_collections"][k]) for k in q["price"])],
            ["price", *(_money(q["price"][k]) for k in q["price"])],
        ]
        if with_price:
            rows.append(["IRR at price", *(_pct(q["irr_at_price"][k]) for k in q["price"])])
        console.print(f"Monte Carlo: {sim['n_paths']:,} paths (seed {sim['seed']})")
        console.print(_table(["", *(f"{k.upper()}>" for k in q["price"])], rows))


@main.command("expected-loss")
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
    help="A book or a tape (its loans table).",
)
@click.option(
    "--scenarios",
    "scenarios_file",
    required=True,
    type=click.Path(path_type=Path),
    help="Scenario file (TOML): scenarios, weights and costs.",
)
@click.option(
    "--out",
    required=True,
    type=click.Path(path_type=Path),
    help="Folder for expected_loss.parquet and summary.json.",
)
@_user_errors
def expected_loss_command(
    *, model_dir: Path, data_dir: Path, scenarios_file: Path, out: Path
) -> None:
    """Expected loss per loan (workout LGD × EAD), scenario-weighted, by segment and stage.

    LGD = 1 − PV(net collections) / EAD, discounted at each loan's contractual rate.
    """
    from npl_engine.data.writers import atomic_folder
    from npl_engine.scenarios import load_scenarios
    from npl_engine.valuation import collateral_grid_for, expected_loss

    console = _console(stderr=True)
    say = _steps(console)
    scenario_set = load_scenarios(scenarios_file)
    grid = collateral_grid_for(scenario_set, monte_carlo=False)
    _, portfolio = _load_portfolio(model_dir, data_dir, grid, say)
    say("discounting each loan's net collections under each scenario")
    try:
        el = expected_loss(portfolio, scenario_set)
    except ValueError as exc:
        raise NplError(str(exc)) from exc
    say(f"writing {out}")
    summary = {
        "scenarios": [{"name": s.name, "weight": s.weight} for s in scenario_set.scenarios],
        "by_segment": el.by_segment.to_dicts(),
        "by_legal_stage": el.by_legal_stage.to_dicts(),
    }
    with atomic_folder(out, allowed=EL_FILES) as staging:
        el.loans.write_parquet(staging / "expected_loss.parquet")
        (staging / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    out_console = _console()
    for title, frame in (("segment", el.by_segment), ("legal stage", el.by_legal_stage)):
        key = frame.columns[0]
        rows = [
            [str(r[key]), f"{r['loans']:,}", _money(r["ead"]), _money(r["el"]), _pct(r["el_rate"])]
            for r in frame.iter_rows(named=True)
        ]
        out_console.print(_table([title, "loans>", "EAD>", "expected loss>", "EL / EAD>"], rows))
    click.echo(f"wrote {out / 'expected_loss.parquet'} and {out / 'summary.json'}")


def _load_tranches(path: Path | None) -> Any:
    """Parse a tranche file, if given (before any long work, so a bad file fails fast)."""
    if path is None:
        return None
    from npl_engine.valuation import load_tranches

    return load_tranches(path)


def _run_tranches(structure: Any, valuation: Any, paths: Any, price: float | None) -> Any:
    """Run the waterfall per scenario (and over Monte Carlo paths) at the price paid."""
    from npl_engine.valuation import tranche_report

    paid = price if price is not None else valuation.weighted.price
    return tranche_report(structure, valuation, paths, price=paid)


#: Files `npl effects` writes (an existing folder holding only these may be replaced).
EFFECTS_FILES = frozenset(
    {"effects.json", "cate.parquet", "effect_model.joblib", "effect_model.json", "costs.json"}
)


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
        "method": "EconML DRLearner (LightGBM nuisances, cross-fitted); AIPW average effects",
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
@click.option(
    "--data",
    "data_dir",
    required=True,
    type=click.Path(path_type=Path),
    help="Loans to plan for: a tape, or a book (only its loans table is read).",
)
@click.option("--budget", required=True, type=click.FloatRange(0.0), help="Total action cost.")
@click.option("--out", required=True, type=click.Path(path_type=Path), help="Plan file (.parquet).")
@click.option(
    "--costs",
    "costs_file",
    default=None,
    type=click.Path(path_type=Path),
    help="TOML file with a [costs] table. Default: costs learned from the book by `npl effects`.",
)
@_audit_options
@_user_errors
def policy(
    *,
    effects_dir: Path,
    data_dir: Path,
    budget: float,
    out: Path,
    costs_file: Path | None,
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
    say("predicting effects and solving the budgeted plan")
    ids, uplift, cost, bau = policy_inputs(model, data.loans, costs)
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


# -- decision records ------------------------------------------------------------------------


def _file_ref(path: Path | None) -> dict[str, str] | None:
    """A settings file as a decision record cites it: its path and the sha256 of its bytes."""
    if path is None:
        return None
    from npl_engine.audit import bytes_fingerprint

    return {"path": str(path), "sha256": bytes_fingerprint(path.read_bytes())}


def _record_decisions(
    audit_db: Path | None,
    *,
    no_audit: bool,
    command: str,
    loans: pl.DataFrame,
    outputs: pl.DataFrame,
    data_dir: Path,
    model_dir: Path,
    parameters: dict[str, Any],
    reasons: pl.DataFrame | None = None,
) -> str | None:
    """Append a run's decision record (see docs/audit.md) and say where; ``None`` if disabled."""
    if no_audit:
        return None
    from npl_engine.audit import (
        decision_frame,
        default_audit_path,
        files_fingerprint,
        record_run,
    )

    db = audit_db if audit_db is not None else default_audit_path()
    run_id = record_run(
        command=command,
        decisions=decision_frame(loans, outputs, reasons),
        input_fingerprint=files_fingerprint(data_dir, dataset=True),
        model_dir=model_dir,
        parameters=parameters,
        db=db,
    )
    click.echo(f"decision record {run_id} appended to {db}", err=True)
    return run_id


def _audit_db_option(func: F) -> F:
    return click.option(
        "--audit-db",
        type=click.Path(dir_okay=False, path_type=Path),
        default=None,
        help="Audit database to read. Default: $NPL_AUDIT_DB, else "
        "~/.local/share/npl_engine/audit.duckdb.",
    )(func)


@main.group()
def audit() -> None:
    """Read the decision records (see docs/audit.md): list runs, show one, export for review."""


@audit.command("list")
@_audit_db_option
@click.option("--limit", default=20, show_default=True, type=click.IntRange(1), help="Runs shown.")
@click.option("--command", "command_name", default=None, help="Only runs of this command.")
@_user_errors
def audit_list(*, audit_db: Path | None, limit: int, command_name: str | None) -> None:
    """List the latest runs, newest first."""
    from npl_engine.audit import AuditStore, default_audit_path

    db = audit_db if audit_db is not None else default_audit_path()
    with AuditStore(db, read_only=True) as store:
        runs = store.runs(limit=limit, command=command_name)
    rows = [
        (
            str(r["run_id"]),
            r["recorded_at"].strftime("%Y-%m-%d %H:%M:%S"),
            str(r["caller"]),
            str(r["command"]),
            f"{r['n_loans']:,}",
            (r["model_fingerprint"] or "-")[:12],
        )
        for r in runs.iter_rows(named=True)
    ]
    console = _console()
    console.print(f"{db}: {len(rows)} latest run(s)")
    console.print(_table(["run id", "time (UTC)", "caller", "command", "loans>", "model"], rows))


@audit.command("show")
@click.argument("record_id")
@_audit_db_option
@click.option("--limit", default=10, show_default=True, type=click.IntRange(1), help="Loans shown.")
@_user_errors
def audit_show(*, record_id: str, audit_db: Path | None, limit: int) -> None:
    """Show a run (RECORD_ID = run id) or one loan's decision (RECORD_ID = run_id:seq)."""
    from npl_engine.audit import AuditStore, default_audit_path

    run_id, _, seq_text = record_id.partition(":")
    if seq_text and not seq_text.isdigit():
        msg = f"{record_id!r} is neither a run id nor a decision id (run_id:number)"
        raise NplError(msg)
    db = audit_db if audit_db is not None else default_audit_path()
    with AuditStore(db, read_only=True) as store:
        run = store.run(run_id)
        if run is None:
            msg = f"no run {run_id!r} in {db}; `npl audit list` shows the latest"
            raise NplError(msg)
        seq = int(seq_text) if seq_text else None
        decisions = store.decisions(run_id, seq=seq, limit=None if seq else limit)
    if seq is not None and decisions.height == 0:
        msg = f"run {run_id} has {run['n_loans']:,} loan(s); there is no decision {seq}"
        raise NplError(msg)
    console = _console()
    for key, val in run.items():
        console.print(f"{key:>18}: {val}")
    rows = [
        (f"{run_id}:{r['seq']}", str(r["loan_id"]), str(r["outputs"]), str(r["reasons"] or "-"))
        for r in decisions.iter_rows(named=True)
    ]
    if seq is None and run["n_loans"] > decisions.height:
        console.print(f"first {decisions.height:,} of {run['n_loans']:,} decisions:")
    console.print(_table(["decision id", "loan_id", "outputs", "reasons"], rows))
    if seq is not None:
        inputs = decisions.drop("run_id", "seq", "outputs", "reasons").row(0, named=True)
        console.print(_table(["input", "value"], [(k, str(v)) for k, v in inputs.items()]))


@audit.command("export")
@click.option("--out", required=True, type=click.Path(dir_okay=False, path_type=Path))
@click.option("--run", "run_id", default=None, help="Only this run. Default: every run.")
@_audit_db_option
@_user_errors
def audit_export(*, out: Path, run_id: str | None, audit_db: Path | None) -> None:
    """Write decision records to one Parquet file: one row per loan decision, with its run."""
    from npl_engine.audit import AuditStore, default_audit_path

    if out.suffix != ".parquet":
        msg = f"--out {out}: give a .parquet file"
        raise NplError(msg)
    db = audit_db if audit_db is not None else default_audit_path()
    with AuditStore(db, read_only=True) as store:
        if run_id is not None and store.run(run_id) is None:
            msg = f"no run {run_id!r} in {db}; `npl audit list` shows the latest"
            raise NplError(msg)
        n = store.export(out, run_id=run_id)
    click.echo(f"wrote {n:,} decision(s) to {out}")


#: Files `npl fairness` writes (an existing folder holding only these may be replaced).
FAIRNESS_FILES = frozenset({"fairness.json", "fairness.parquet"})


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
    help="A book (loans, actions, payments) whose outcomes are known.",
)
@click.option(
    "--out",
    required=True,
    type=click.Path(path_type=Path),
    help="Folder for fairness.json and fairness.parquet.",
)
@click.option(
    "--effects",
    "effects_dir",
    default=None,
    type=click.Path(path_type=Path),
    help="Folder written by `npl effects`: adds the action plan's decisions (settlement offered, "
    "legal action spared).",
)
@click.option(
    "--budget",
    type=click.FloatRange(0.0),
    default=None,
    help="With --effects: the plan's total action cost. Default: no limit.",
)
@click.option(
    "--as-of",
    "as_of",
    type=click.DateTime(formats=["%Y-%m-%d"]),
    default=None,
    help="Day the history was extracted (YYYY-MM-DD). Default: latest payment or action date.",
)
@click.option(
    "--top-share",
    default=0.2,
    show_default=True,
    type=click.FloatRange(0.0, 1.0, min_open=True, max_open=True),
    help="'prioritised' decision: this share of the loans with the highest p_recover.",
)
@click.option(
    "--min-ratio",
    default=0.8,
    show_default=True,
    type=click.FloatRange(0.0, 1.0, min_open=True),
    help="Four-fifths rule: flag a decision rate below this × the most favoured group's.",
)
@click.option(
    "--max-calibration-gap",
    default=0.03,
    show_default=True,
    type=click.FloatRange(0.0, 1.0, min_open=True),
    help="Flag a group whose calibration gap differs from the other groups' by this much.",
)
@click.option(
    "--z-threshold",
    default=3.0,
    show_default=True,
    type=click.FloatRange(0.0, min_open=True),
    help="A flag also needs the difference to be this many standard errors from zero.",
)
@click.option(
    "--min-group-size",
    default=50,
    show_default=True,
    type=click.IntRange(2),
    help="Smaller groups are shown but never flagged.",
)
@_user_errors
def fairness(
    *,
    model_dir: Path,
    data_dir: Path,
    out: Path,
    effects_dir: Path | None,
    budget: float | None,
    as_of: datetime | None,
    top_share: float,
    min_ratio: float,
    max_calibration_gap: float,
    z_threshold: float,
    min_group_size: int,
) -> None:
    """Check the recovery model for unfair treatment by gender, age band and region.

    On a book with known outcomes, per group: mean p_recover, realised recovery rate, AUC,
    calibration (predicted vs realised) and the rate of favourable decisions with its ratio to
    the most favoured group. Flags where the four-fifths rule or the calibration threshold is
    crossed beyond noise (see docs/fairness.md). Writes OUT/fairness.json and
    OUT/fairness.parquet.
    """
    from npl_engine.data.writers import atomic_folder
    from npl_engine.fairness import FairnessSettings, fairness_report, policy_decisions
    from npl_engine.scoring import RecoveryModel

    settings = FairnessSettings(
        top_share=top_share,
        min_ratio=min_ratio,
        max_calibration_gap=max_calibration_gap,
        z_threshold=z_threshold,
        min_group_size=min_group_size,
    )
    if budget is not None and effects_dir is None:
        msg = "--budget is for the action plan: give --effects DIR too"
        raise NplError(msg)
    console = _console(stderr=True)
    say = _steps(console)
    say(f"loading {model_dir}")
    model = RecoveryModel.load(model_dir)
    costs, effects_model = None, None
    if effects_dir is not None:
        costs = _effect_costs(effects_dir)
        say(f"loading {effects_dir}")
        from npl_engine.causal import ActionEffectModel

        effects_model = ActionEffectModel.load(effects_dir)
    say(f"reading and validating {data_dir}")
    book = read_dataset(data_dir, kind="book", as_of_date=as_of.date() if as_of else None)
    decisions = None
    if effects_model is not None:
        say("planning actions (the decisions compared between groups)")
        decisions = policy_decisions(effects_model, book.loans, costs, budget=budget)
    say("scoring the book and comparing groups")
    report = fairness_report(model, book, settings=settings, decisions=decisions)
    say(f"writing {out}")
    with atomic_folder(out, allowed=FAIRNESS_FILES) as staging:
        (staging / "fairness.json").write_text(json.dumps(report.to_dict(), indent=2) + "\n")
        report.groups.write_parquet(staging / "fairness.parquet")
    _print_fairness(report)
    click.echo(f"wrote {out / 'fairness.json'} and {out / 'fairness.parquet'}")


def _effect_costs(effects_dir: Path) -> Any:
    """Action costs saved by `npl effects` beside its model."""
    from npl_engine.causal._policy import ActionCosts

    path = effects_dir / "costs.json"
    if not path.exists():
        msg = f"{effects_dir} holds no costs.json: rerun `npl effects`"
        raise NplError(msg)
    raw = json.loads(path.read_text())
    return ActionCosts(fixed=raw["fixed"], per_exposure=raw["per_exposure"])


def _print_fairness(report: Any) -> None:
    """One table per attribute, then the flags."""
    console = _console()
    o = report.overall
    console.print(
        f"{report.n_loans:,} loans, {report.n_labelled:,} with the recovery window observed; "
        f"overall predicted {o['predicted']:.1%}, realised {o['realised']:.1%}"
    )
    names = list(report.decisions)

    def num(x: Any, fmt: str) -> str:
        return "-" if x is None else format(x, fmt)

    for attribute in ("gender", "age_band", "region"):
        frame = report.groups.filter(pl.col("attribute") == attribute)
        if frame.height == 0:
            console.print(f"{attribute}: no loan records it")
            continue
        rows = []
        for r in frame.iter_rows(named=True):
            row = [
                str(r["group"]),
                f"{r['n']:,}",
                f"{r['n_labelled']:,}",
                num(r["mean_p_recover"], ".3f"),
                num(r["predicted"], ".3f"),
                num(r["realised"], ".3f"),
                num(r["gap_vs_rest"], "+.3f") + (" !" if r["calibration_flag"] else ""),
                num(r["auc"], ".3f"),
            ]
            for d in names:
                flag = " !" if r[f"{d}_flag"] else ""
                row.append(f"{num(r[f'{d}_rate'], '.1%')} ({num(r[f'{d}_ratio'], '.2f')}){flag}")
            rows.append(row)
        headers = ["group", "loans>", "labelled>", "mean p_recover>", "predicted>", "realised>",
                   "gap vs rest>", "AUC>", *[f"{d} (ratio)>" for d in names]]  # fmt: skip
        console.print(f"\n[bold]{attribute}[/bold]")
        console.print(_table(headers, rows))
    if report.flags:
        for f in report.flags:
            click.secho(f"flag: {f['message']}", fg="yellow")
    else:
        click.echo("no flag raised")


def _strategy_model(model_dir: Path, effects_dirs: Sequence[Path], costs_file: Path | None) -> Any:
    """The scoring model plus the effect models in ``effects_dirs`` (one per outcome)."""
    from npl_engine.causal import ActionEffectModel
    from npl_engine.causal._policy import ActionCosts, load_costs
    from npl_engine.counterfactuals import StrategyModel
    from npl_engine.scoring import RecoveryModel

    by_outcome: dict[str, Any] = {}
    for folder in effects_dirs:
        effect_model = ActionEffectModel.load(folder)
        outcome = effect_model.settings.outcome if effect_model.settings else "recovery_rate"
        if outcome not in ("recovered", "recovery_rate"):
            msg = (
                f"{folder}: effects on {outcome!r} cannot move p_recover or expected "
                "collections; give effects on 'recovered' (and 'recovery_rate')"
            )
            raise NplError(msg)
        if outcome in by_outcome:
            msg = f"two --effects folders estimate effects on {outcome!r}; give one"
            raise NplError(msg)
        by_outcome[outcome] = effect_model
    if by_outcome and "recovered" not in by_outcome:
        msg = (
            "the --effects folder estimates effects on the recovery rate only; counterfactuals "
            "move p_recover: add a folder from `npl effects --outcome recovered`"
        )
        raise NplError(msg)
    costs = None
    if costs_file is not None:
        costs = load_costs(costs_file)
    else:
        for folder in effects_dirs:
            if (folder / "costs.json").is_file():
                raw = json.loads((folder / "costs.json").read_text())
                costs = ActionCosts(fixed=raw["fixed"], per_exposure=raw["per_exposure"])
                break
    return StrategyModel(
        recovery=RecoveryModel.load(model_dir),
        effects=by_outcome.get("recovered"),
        collection_effects=by_outcome.get("recovery_rate"),
        costs=costs,
    )


_MODEL_OPTION = click.option(
    "--model",
    "model_dir",
    required=True,
    type=click.Path(path_type=Path),
    help="Model folder written by `npl train`.",
)
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
@_MODEL_OPTION
@_EFFECTS_OPTION
@click.option(
    "--data",
    "data_dir",
    required=True,
    type=click.Path(path_type=Path),
    help="Loans (a tape, or a book: only its loans table is read).",
)
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
    type=click.Path(path_type=Path),
    help="Write the results: FILE.json (settings, summary, loans, counterfactuals) or "
    "FILE.parquet (counterfactual rows).",
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
    change in expected collections. With --borrower-side, what-ifs about the borrower are
    reported separately. Counterfactuals explain the model, not the world.
    """
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeElapsedColumn

    from npl_engine.counterfactuals import (
        CounterfactualSettings,
        counterfactuals,
        read_loan_ids,
        summarize,
        write_result,
    )

    if (loan_id is None) == (loan_ids_file is None):
        msg = "give either --loan-id ID (one loan) or --loan-ids FILE (many)"
        raise NplError(msg)
    if out is not None and out.suffix not in (".json", ".parquet"):
        msg = f"{out}: --out must end in .json or .parquet"
        raise NplError(msg)
    settings = CounterfactualSettings(
        n=n_counterfactuals,
        target=target,
        uplift=uplift,
        borrower_side=borrower_side,
        discount_range=(float(discount_range[0]), float(discount_range[1])),
        time_budget_seconds=time_budget,
        seed=seed,
    )
    ids = [loan_id] if loan_id is not None else read_loan_ids(cast("Path", loan_ids_file))
    console = _console(stderr=True)
    say = _steps(console)
    say(f"loading {model_dir}" + "".join(f" and {e}" for e in effects_dirs))
    model = _strategy_model(model_dir, effects_dirs, costs_file)
    say(f"reading and validating {data_dir}")
    loans = read_dataset(data_dir).loans.collect()
    say(f"searching counterfactuals for {len(ids):,} loan(s)")
    columns = (BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    with Progress(*columns, console=console, transient=True, disable=len(ids) == 1) as bar:
        task = bar.add_task("counterfactuals", total=len(ids))
        result = counterfactuals(
            model, loans, ids, settings, progress=lambda done: bar.update(task, completed=done)
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
            "settings": {k: str(v) for k, v in asdict(settings).items()},
        },
    )
    if out is not None:
        say(f"writing {out}")
        write_result(result, out)
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
    if loan["status"] != "found":
        console.print(loan["message"])
        return
    titles = {
        "servicer": "servicer levers",
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


def _signed_money(x: float | None) -> str:
    return "-" if x is None else f"{x:+,.0f}"


def _print_counterfactual_summary(summary: dict[str, Any]) -> None:
    """Batch: feasible share, levers, cost and uplift."""
    rows = [
        ("loans", f"{summary['n_loans']:,}"),
        ("already at the target", f"{summary['already_meet_target']:,}"),
        ("with a servicer lever", _pct(summary["share_with_servicer_lever"])),
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
@_MODEL_OPTION
@_EFFECTS_OPTION
@click.option(
    "--data",
    "data_dir",
    required=True,
    type=click.Path(path_type=Path),
    help="Loans (a tape, or a book: only its loans table is read).",
)
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
    from npl_engine.counterfactuals import parse_changes, what_if

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
    model = _strategy_model(model_dir, effects_dirs, costs_file)
    say(f"reading and validating {data_dir}")
    loans = read_dataset(data_dir).loans.collect()
    if loans.filter(pl.col("loan_id") == loan_id).height == 0:
        msg = f"loans: column loan_id has no row {loan_id!r}"
        raise NplError(msg)
    result = what_if(model, loans, loan_id, parse_changes(loans, loan_id, raw), top=top)
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


@main.command()
@click.option(
    "--model",
    "model_dir",
    required=True,
    type=click.Path(path_type=Path),
    help="Model folder written by `npl train`.",
)
@click.option(
    "--effects",
    "effects_dir",
    default=None,
    type=click.Path(path_type=Path),
    help="Folder written by `npl effects`: enables /v1/recommend.",
)
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=8000, show_default=True, type=click.IntRange(0, 65535))
@click.option(
    "--keys-file",
    default=None,
    type=click.Path(dir_okay=False, path_type=Path),
    help="API key file (`npl keys create`). Default: $NPL_API_KEYS_FILE, else "
    "~/.config/npl_engine/api_keys.json. $NPL_API_KEY adds one more key.",
)
@click.option(
    "--no-auth",
    is_flag=True,
    help="Serve without API keys (only on a machine of your own; never on a network).",
)
@click.option(
    "--max-loans",
    default=1000,
    show_default=True,
    type=click.IntRange(1, 100_000),
    help="Loans per /v1/score request at most.",
)
@_audit_options
@_user_errors
def serve(
    *,
    model_dir: Path,
    effects_dir: Path | None,
    host: str,
    port: int,
    keys_file: Path | None,
    no_auth: bool,
    max_loans: int,
    audit_db: Path | None,
    no_audit: bool,
) -> None:
    """Serve real-time scoring over HTTP (FastAPI; OpenAPI docs at /docs; see docs/service.md).

    POST /v1/score, POST /v1/recommend, GET /v1/model, GET /healthz, GET /readyz. Every score
    and recommendation is recorded in the audit database before it is returned.
    """
    from npl_engine.audit import default_audit_path
    from npl_engine.service import ApiKeys, ServiceSettings, default_keys_file, serve

    keys = None
    if not no_auth:
        path = keys_file if keys_file is not None else default_keys_file()
        keys = ApiKeys.load(path)
        if not keys.hashes:
            msg = (
                f"no API keys: {path} holds none and $NPL_API_KEY is not set. Create one with "
                "`npl keys create --name NAME`, or pass --no-auth for a local trial"
            )
            raise NplError(msg)
    settings = ServiceSettings(
        model_dir=model_dir,
        effects_dir=effects_dir,
        audit_db=None if no_audit else (audit_db or default_audit_path()),
        keys=keys,
        max_loans=max_loans,
        max_body_bytes=max(2 * 2**20, max_loans * 4096),
    )
    click.echo(f"serving {model_dir} on http://{host}:{port} (docs: /docs)", err=True)
    serve(settings, host=host, port=port)


@main.group()
def keys() -> None:
    """API keys of the scoring service (`npl serve`): create and list them."""


def _keys_file_option(func: F) -> F:
    return click.option(
        "--keys-file",
        default=None,
        type=click.Path(dir_okay=False, path_type=Path),
        help="Key file. Default: $NPL_API_KEYS_FILE, else ~/.config/npl_engine/api_keys.json.",
    )(func)


@keys.command("create")
@click.option("--name", required=True, help="Who or what the key is for, e.g. collections-app.")
@_keys_file_option
@_user_errors
def keys_create(*, name: str, keys_file: Path | None) -> None:
    """Create an API key: prints it once; the key file keeps only its hash."""
    from npl_engine.service import create_key, default_keys_file

    path = keys_file if keys_file is not None else default_keys_file()
    key_id, key = create_key(path, name=name)
    click.echo(f"created key {key_id} ({name}) in {path}; it is shown only now:", err=True)
    click.echo(key)


@keys.command("list")
@_keys_file_option
@_user_errors
def keys_list(*, keys_file: Path | None) -> None:
    """List the keys of a key file (ids, names, dates; never the keys)."""
    from npl_engine.service import default_keys_file, read_key_records

    path = keys_file if keys_file is not None else default_keys_file()
    rows = [
        (str(r["id"]), str(r.get("name", "")), str(r.get("created_at", "")))
        for r in read_key_records(path)
    ]
    _console().print(f"{path}: {len(rows)} key(s)")
    _console().print(_table(["id", "name", "created"], rows))


@main.command("report")
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
    help="The tape to report on (its loans table).",
)
@click.option(
    "--scenarios",
    "scenarios_file",
    required=True,
    type=click.Path(path_type=Path),
    help="Scenario file (TOML), e.g. scenarios/eu_2026.toml.",
)
@click.option(
    "--out",
    required=True,
    type=click.Path(dir_okay=False, path_type=Path),
    help="The HTML file to write, e.g. report.html.",
)
@click.option(
    "--effects",
    "effects_dir",
    default=None,
    type=click.Path(path_type=Path),
    help="Folder written by `npl effects`: adds action effects and the plan's value.",
)
@click.option(
    "--fairness-book",
    "fairness_dir",
    default=None,
    type=click.Path(path_type=Path),
    help="A book with known outcomes: adds the fairness checks (as `npl fairness`).",
)
@click.option(
    "--budget",
    type=click.FloatRange(0.0),
    default=None,
    help="With --effects: the plan's total action cost. Default: no limit.",
)
@click.option(
    "--simulations",
    type=click.IntRange(0),
    default=500,
    show_default=True,
    help="Monte Carlo paths (0 = none).",
)
@click.option("--seed", default=0, show_default=True, type=int)
@click.option("--title", default="NPL portfolio report", show_default=True)
@_user_errors
def report_command(
    *,
    model_dir: Path,
    data_dir: Path,
    scenarios_file: Path,
    out: Path,
    effects_dir: Path | None,
    fairness_dir: Path | None,
    budget: float | None,
    simulations: int,
    seed: int,
    title: str,
) -> None:
    """Write one self-contained HTML report: charts of the portfolio, prices, drivers and more.

    Portfolio composition, expected collections by segment and scenario, price by scenario and
    its Monte Carlo distribution, SHAP importance, action effects and the plan's value (with
    --effects), fairness (with --fairness-book) and the model card. The file opens offline and
    makes no network request (see docs/report.md).
    """
    from npl_engine.report import gather, render, write_report
    from npl_engine.scenarios import load_scenarios
    from npl_engine.scoring import RecoveryModel

    if out.suffix.lower() not in (".html", ".htm"):
        msg = f"--out {out}: give an .html file"
        raise NplError(msg)
    if budget is not None and effects_dir is None:
        msg = "--budget is for the action plan: give --effects DIR too"
        raise NplError(msg)
    console = _console(stderr=True)
    say = _steps(console)
    scenario_set = load_scenarios(scenarios_file)
    say(f"loading {model_dir}")
    model = RecoveryModel.load(model_dir)
    say(f"reading and validating {data_dir}")
    tape = read_dataset(data_dir)
    book = None
    if fairness_dir is not None:
        say(f"reading and validating {fairness_dir}")
        book = read_dataset(fairness_dir, kind="book")
    data = gather(
        model,
        tape,
        scenario_set,
        title=title,
        effects_dir=effects_dir,
        fairness_book=book,
        simulations=simulations,
        budget=budget,
        seed=seed,
        progress=say,
    )
    say(f"writing {out}")
    write_report(render(data), out)
    click.echo(f"wrote {out} ({out.stat().st_size / 1e6:.1f} MB); open it in any browser")
