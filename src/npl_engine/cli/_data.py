"""Data commands: validate a dataset against the contract, simulate a book or a tape."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import datetime
from pathlib import Path
from typing import Any, TypeVar, cast

import click
from rich.console import Console

from npl_engine.cli._base import COLUMNS_OPTION, _console, _table, _user_errors, main, read_data
from npl_engine.data import DatasetKind, DatasetSummary, infer_kind, summarize
from npl_engine.errors import NplError, SettingsError

F = TypeVar("F", bound=Callable[..., Any])


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
        as_of=as_of.date() if as_of is not None else None,
    )
    if model_dir is not None:
        from npl_engine.scoring import RecoveryModel

        model = RecoveryModel.load(model_dir)
        try:
            model.check_columns(data.loans)
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


def _world_options(func: F) -> F:
    """The options of `npl simulate` that change the simulated world (docs/simulator.md)."""
    date_type = click.DateTime(formats=["%Y-%m-%d"])
    options = [
        click.option(
            "--segments",
            default=None,
            metavar="SEG[=W],...",
            help="Segments to simulate, e.g. credit_card (one segment) or "
            "sme_unsecured,consumer_unsecured,credit_card (unsecured only), each with an "
            "optional weight (auto=1,credit_card=3). Default: the mixed book.",
        ),
        click.option(
            "--borrower-payment-months",
            type=click.IntRange(0, 60),
            default=60,
            show_default=True,
            help="Borrower payments stop this many months after cut-off (fixed-term plans); "
            "collateral sales run on to month 60.",
        ),
        click.option(
            "--no-collateral-sales",
            is_flag=True,
            help="No collateral is ever sold (loans keep their collateral).",
        ),
        click.option(
            "--guarantor-share",
            type=click.FloatRange(0.0, 1.0),
            default=0.0,
            show_default=True,
            help="Share of loans whose settlement is paid by a guarantor.",
        ),
        click.option(
            "--exposure-tail",
            type=click.FloatRange(1.0),
            default=None,
            help="Pareto index of a heavy tail of loan sizes (1.5: about 1 loan in 1,000 "
            "above 60 times its segment's typical size). Default: log-normal sizes.",
        ),
        click.option(
            "--action-rate",
            type=click.FloatRange(0.0, min_open=True),
            default=1.0,
            show_default=True,
            help="Multiplies the odds of each collection action against none.",
        ),
        click.option(
            "--action-effect-scale",
            type=click.FloatRange(0.0),
            default=1.0,
            show_default=True,
            help="Scales every action's effect on collections (0: actions change nothing).",
        ),
        click.option(
            "--cutoff-from",
            type=date_type,
            default=None,
            help="Book: first cut-off month (YYYY-MM-DD). Default: 2016-01-31.",
        ),
        click.option(
            "--cutoff-to",
            type=date_type,
            default=None,
            help="Book: last cut-off month; equal to --cutoff-from for cut-offs in one month. "
            "Default: 2022-12-31.",
        ),
        click.option(
            "--as-of",
            "as_of",
            type=date_type,
            default=None,
            help="Book: day the history is extracted; close to --cutoff-to for a short "
            "history. Default: 2025-12-31.",
        ),
    ]
    for option in reversed(options):
        func = option(func)
    return func


def _world_settings(
    *,
    segments: str | None,
    borrower_payment_months: int,
    no_collateral_sales: bool,
    guarantor_share: float,
    exposure_tail: float | None,
    action_rate: float,
    action_effect_scale: float,
    cutoff_from: datetime | None,
    cutoff_to: datetime | None,
    as_of: datetime | None,
) -> dict[str, Any]:
    """The `SimulationSettings` keywords of the world options (dates only where given)."""
    dates = {
        "book_cutoff_first": cutoff_from,
        "book_cutoff_last": cutoff_to,
        "as_of_date": as_of,
    }
    return {
        **{key: value.date() for key, value in dates.items() if value is not None},
        "segment_mix": None if segments is None else _segment_mix(segments),
        "borrower_payment_months": borrower_payment_months,
        "collateral_sales": not no_collateral_sales,
        "guarantor_share": guarantor_share,
        "exposure_tail_index": exposure_tail,
        "action_rate": action_rate,
        "action_effect_scale": action_effect_scale,
    }


def _segment_mix(text: str) -> dict[str, float]:
    """``seg,seg`` keeps the default relative shares; ``seg=w`` sets a weight."""
    from npl_engine.data.simulator import SEGMENT_MIX

    mix: dict[str, float] = {}
    for item in filter(None, (part.strip() for part in text.split(","))):
        name, _, weight = item.partition("=")
        name = name.strip()
        if name not in SEGMENT_MIX:
            msg = f"--segments: unknown segment {name!r}; known: {', '.join(SEGMENT_MIX)}"
            raise SettingsError(msg)
        try:
            mix[name] = float(weight) if weight else SEGMENT_MIX[name]
        except ValueError:
            msg = f"--segments: weight of {name!r} is not a number: {weight!r}"
            raise SettingsError(msg) from None
    if not mix:
        msg = "--segments: name at least one segment"
        raise SettingsError(msg)
    return mix


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
@click.option(
    "--chunk-loans",
    default=1_000_000,
    show_default=True,
    type=click.IntRange(1),
    help="Draw and write N loans at a time, each chunk from its own seed derived from --seed, "
    "so memory stays bounded (about 4 GiB per million loans). The first N loans are those "
    "of a dataset of N loans with the same seed; the chunks after them differ from what one "
    "piece would have drawn.",
)
@_world_options
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
    chunk_loans: int,
    **world: Any,
) -> None:
    """Simulate an NPL book or tape whose ground truth is known (see docs/simulator.md).

    The folder holds the dataset in contract form; truth/ beside the tables holds each loan's
    true recovery probability, expected monthly collections and action effects. The world
    options below change the world (and its truth) away from the default mixed book.
    """
    from npl_engine.data.simulator import (
        Simulation,
        SimulationSettings,
        simulate_chunks,
        write_simulation,
    )

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
        chunk_loans=chunk_loans,
        **_world_settings(**world),
    )
    rows = {"loans": 0, "payments": 0, "actions": 0}

    def counted(chunks: Iterator[Simulation]) -> Iterator[Simulation]:
        for chunk in chunks:
            for name, frame in (("loans", chunk.loans), ("payments", chunk.payments),
                                ("actions", chunk.actions)):  # fmt: skip
                rows[name] += 0 if frame is None else frame.height
            yield chunk
            del chunk, frame  # not held while the next chunk is drawn

    chunks = counted(simulate_chunks(settings))
    if n_loans <= chunk_loans:
        with console.status(f"simulating {n_loans:,} loans ({kind}, seed {seed})"):
            sim = next(chunks)
        with console.status(f"writing {out}"):
            write_simulation(sim, out, fmt=fmt)
    else:
        status = f"simulating {n_loans:,} loans ({kind}, seed {seed}) and writing {out}"
        with console.status(f"{status}, {chunk_loans:,} at a time"):
            write_simulation(chunks, out, fmt=fmt)
    click.echo(
        f"wrote {kind} {out}: {rows['loans']:,} loans, {rows['payments']:,} payments, "
        f"{rows['actions']:,} actions; truth in {out / 'truth'}"
    )
