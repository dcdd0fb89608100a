"""Import commands: bring a tape from another format into the data contract."""

from __future__ import annotations

from pathlib import Path

import click

from npl_engine.cli._base import _console, _money, _table, _user_errors, main


@main.group(name="import")
def import_group() -> None:
    """Bring a tape in another format into the data contract (docs/import.md)."""


@import_group.command(name="eba")
@click.option(
    "--in",
    "source",
    required=True,
    type=click.Path(path_type=Path),
    help="EBA NPL template set: a folder of CSV files (counterparty.csv, loan.csv, ...) or an "
    ".xlsx workbook with one sheet per template.",
)
@click.option(
    "--out",
    required=True,
    type=click.Path(path_type=Path),
    help="Dataset folder to write: loans, plus import_report.json and import_report.md.",
)
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["parquet", "csv"]),
    default="parquet",
    show_default=True,
    help="File format of the loans table.",
)
@click.option(
    "--borrower-id",
    "borrower_id",
    type=click.Choice(["counterparty", "group"]),
    default="counterparty",
    show_default=True,
    help="borrower_id from the borrower's Counterparty Identifier (1.02), or its Counterparty "
    "Group Identifier (1.00) where given.",
)
@_user_errors
def eba(*, source: Path, out: Path, fmt: str, borrower_id: str) -> None:
    """Map an EBA NPL template set to a dataset in the data contract, with a mapping report.

    Joins the counterparty, relationship, loan, collateral and enforcement templates by their
    identifiers, converts codes and units, and writes the contract's loans table. Every
    problem (missing mandatory field, unknown code, orphan collateral, duplicate identifier)
    is listed with its template, field and identifiers, and nothing is written.
    """
    from npl_engine.data.eba import import_eba

    console = _console()
    with _console(stderr=True).status(f"importing {source}"):
        result = import_eba(
            source, borrower_id="group" if borrower_id == "group" else "counterparty"
        )
        result.save(out, fmt=fmt)
    loans = result.loans
    gbv = float((loans["outstanding_principal"] + loans["accrued_interest"]).sum())
    console.print(f"[green]wrote {out}: {loans.height:,} loans, GBV {_money(gbv)}[/green]")
    rows = [
        (c.column, c.source, f"{c.rows_derived:,}") for c in result.report.columns if c.rows_derived
    ]
    if rows:
        console.print(_table(["column", "derived from", "rows>"], rows))
    if result.report.not_mapped:
        console.print("not mapped (no EBA field): " + ", ".join(result.report.not_mapped))
    console.print(f"mapping report: {out / 'import_report.md'} (and .json)")
