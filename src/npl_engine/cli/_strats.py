"""`npl strats`: the stratification tables of a tape, printed and written for Excel."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click
import polars as pl

from npl_engine.cli._base import _console, _money, _pct, _steps, _table, _user_errors, main
from npl_engine.data import read_dataset
from npl_engine.strats import STANDARD_STRATS


@main.command()
@click.option(
    "--data",
    "data_dir",
    required=True,
    type=click.Path(path_type=Path),
    help="The tape (or book) to stratify (its loans table).",
)
@click.option(
    "--out",
    required=True,
    type=click.Path(path_type=Path),
    help="Folder for NAME.parquet and NAME.csv per table, strats.xlsx and strats.json.",
)
@click.option(
    "--by",
    "by",
    multiple=True,
    help="A table to make (repeatable): one of "
    + ", ".join(STANDARD_STRATS)
    + ", or any non-float column of the loans table. Default: all eight standard tables.",
)
@click.option(
    "--model",
    "model_dir",
    type=click.Path(path_type=Path),
    default=None,
    help="Model folder written by `npl train`: adds p_recover and the expected collections.",
)
@_user_errors
def strats(*, data_dir: Path, out: Path, by: tuple[str, ...], model_dir: Path | None) -> None:
    """Stratify a tape: loans, GBV, share of GBV, balances and collateral cover per group.

    One table per strat, each ending with the tape's total row; with --model, the model's
    GBV-weighted p_recover and expected collections (gross, undiscounted) too. Written as
    Parquet, CSV and one Excel workbook (a sheet per table); see docs/valuation.md.
    """
    from npl_engine.data.writers import atomic_folder
    from npl_engine.strats import Strats, stratify

    console = _console(stderr=True)
    say = _steps(console)
    say(f"reading and validating {data_dir}")
    loans = read_dataset(data_dir).loans
    scores = None
    if model_dir is not None:
        from npl_engine.scoring import RecoveryModel

        say(f"loading {model_dir}")
        model = RecoveryModel.load(model_dir)
        loans = loans.collect().lazy()
        say("scoring the loans")
        scores = model.score(loans).scores
    say("stratifying")
    result = stratify(loans, by=by or None, scores=scores)
    say(f"writing {out}")
    with atomic_folder(out, allowed=Strats.files(list(result.tables))) as staging:
        result.save(staging)
    print_strats(result)
    click.echo(f"wrote {len(result.tables)} tables to {out} (Parquet, CSV and strats.xlsx)")


def print_strats(result: Any) -> None:
    """Print every table of a :class:`~npl_engine.strats.Strats`."""
    console = _console()
    console.print(f"{result.n_loans:,} loans, GBV {result.gbv:,.0f}")
    for name, frame in result.tables.items():
        console.print(_table(*_rows(name, frame, scored=result.scored)))


def _rows(name: str, frame: pl.DataFrame, *, scored: bool) -> tuple[list[str], list[list[str]]]:
    headers = [name, "loans>", "GBV>", "% GBV>", "avg GBV>", "WA GBV>", "coverage>"]
    if scored:
        headers += ["p_recover>", "expected coll.>", "exp. recovery>"]
    rows = []
    for r in frame.iter_rows(named=True):
        row = [
            str(r[name]),
            f"{r['loans']:,}",
            _money(r["gbv"]),
            _pct(r["gbv_share"]),
            _money(r["average_gbv"]),
            _money(r["wa_gbv"]),
            _pct(r["coverage"]),
        ]
        if scored:
            row += [
                _pct(r["p_recover"]),
                _money(r["expected_collections"]),
                _pct(r["expected_recovery"]),
            ]
        rows.append(row)
    return headers, rows
