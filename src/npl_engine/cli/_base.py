"""The command group and what every command shares: errors, console output, decision records.

The ``npl`` command line: a thin layer that parses options, calls the engine and prints.

Every command that reads data validates it first and writes nothing when the input is bad.
Errors meant for the user (:class:`~npl_engine.errors.NplError`) become a message on stderr and
exit code 2; they never show a traceback.
"""

from __future__ import annotations

import functools
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, TypeVar

import click
import polars as pl
from rich.console import Console
from rich.table import Table

from npl_engine import __version__
from npl_engine.errors import NplError

F = TypeVar("F", bound=Callable[..., Any])

EXIT_BAD_INPUT = 2


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


#: ``--model MODEL_DIR``, the same option on every command that reads a trained model.
MODEL_OPTION = click.option(
    "--model",
    "model_dir",
    required=True,
    type=click.Path(path_type=Path),
    help="Model folder written by `npl train`.",
)


#: ``--cluster ADDRESS``: run a command's per-loan work on a Dask cluster (docs/scale.md).
CLUSTER_OPTION = click.option(
    "--cluster",
    "cluster_address",
    default=None,
    envvar="NPL_CLUSTER",
    metavar="ADDRESS",
    help="Run the per-loan work on a Dask cluster: local:N (N worker processes on this "
    "machine) or a scheduler's address, e.g. tcp://10.0.0.5:8786. Default: $NPL_CLUSTER, "
    "else in this process. Same results either way (docs/scale.md).",
)


def _cluster(address: str | None) -> Any:
    """The Dask cluster of ``--cluster`` for the running command, or ``None`` without one.

    The connection (and a ``local:N`` cluster) is closed when the command ends.
    """
    if not address:
        return None
    from npl_engine.distributed import connect

    return click.get_current_context().with_resource(connect(address))


def data_option(help_text: str) -> Callable[[F], F]:
    """``--data DATA_DIR``, the same option on every command that reads a dataset.

    ``help_text`` says which tables of it the command reads.
    """
    return click.option(
        "--data", "data_dir", required=True, type=click.Path(path_type=Path), help=help_text
    )


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(__version__, prog_name="npl")
def main() -> None:
    """npl_engine: price and manage non-performing loan portfolios.

    Data comes as a dataset folder (loans, actions, payments as Parquet or CSV) in the form of
    the data contract (docs/data-contract.md).
    """


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


def _steps(console: Console) -> Callable[[str], None]:
    """A progress callback that prints each step with the time since the start."""
    start = time.perf_counter()

    def say(step: str) -> None:
        console.print(f"[dim]{time.perf_counter() - start:6.1f} s[/dim]  {step}")

    return say


def _pct(x: float | None) -> str:
    return "-" if x is None else f"{x:.1%}"


def _money(x: float | None) -> str:
    return "-" if x is None else f"{x:,.0f}"


def _signed_money(x: float | None) -> str:
    return "-" if x is None else f"{x:+,.0f}"


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
