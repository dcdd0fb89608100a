"""The command group and what every command shares: errors, console output, decision records.

The ``npl`` command line: a thin layer that parses options, calls the engine and prints.

Every command that reads data validates it first and writes nothing when the input is bad.
Errors meant for the user (:class:`~npl_engine.errors.NplError`) become a message on stderr and
exit code 2; they never show a traceback.
"""

from __future__ import annotations

import contextlib
import functools
import queue
import sys
import threading
import time
import warnings
from collections.abc import Callable, Iterator, Sequence
from datetime import date
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import click
import polars as pl
from rich.console import Console
from rich.table import Table

from npl_engine import __version__
from npl_engine.errors import AssumedDefaultWarning, NplError

if TYPE_CHECKING:
    from npl_engine.data import Dataset, DatasetKind

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


#: ``--chunk-rows N``: work through the tape N loans at a time (docs/scale.md#out-of-core).
CHUNK_ROWS_OPTION = click.option(
    "--chunk-rows",
    "chunk_rows",
    default=None,
    type=click.IntRange(0),
    metavar="N",
    help="Work through the tape N loans at a time, writing each chunk's rows as it goes, so "
    "memory follows N, not the tape; 0: the whole tape in memory. Default: 250,000 when the "
    "tape has more loans, else in memory. Same outputs either way (docs/scale.md).",
)


def _cluster(address: str | None) -> Any:
    """The Dask cluster of ``--cluster`` for the running command, or ``None`` without one.

    The connection (and a ``local:N`` cluster) is closed when the command ends.
    """
    if not address:
        return None
    from npl_engine.distributed import connect

    return click.get_current_context().with_resource(connect(address))


def _remember_columns(ctx: click.Context, _param: click.Parameter, value: Path | None) -> None:
    if value is not None:
        ctx.meta[_COLUMNS_KEY] = value


_COLUMNS_KEY = "npl_engine.columns"

#: ``--columns MAP.toml``, on every command that reads a dataset; :func:`read_data` applies it.
COLUMNS_OPTION = click.option(
    "--columns",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    expose_value=False,
    callback=_remember_columns,
    help="Column map for data in the seller's own spelling: column names, date format, "
    "decimal and thousands separators, code translations (see docs/import.md).",
)


#: ``--scenarios FILE``, the same option on every command that prices or plans.
SCENARIOS_OPTION = click.option(
    "--scenarios",
    "scenarios_file",
    required=True,
    type=click.Path(path_type=Path),
    help="Scenario file (TOML): pricing assumptions, costs and weighted scenarios, e.g. "
    "scenarios/eu_2026.toml.",
)


def data_option(help_text: str) -> Callable[[F], F]:
    """``--data DATA_DIR`` and ``--columns MAP.toml``, on every command that reads a dataset.

    ``help_text`` says which tables of it the command reads. Read the dataset with
    :func:`read_data`, which applies the column map.
    """
    data = click.option(
        "--data", "data_dir", required=True, type=click.Path(path_type=Path), help=help_text
    )

    def decorate(func: F) -> F:
        return data(COLUMNS_OPTION(func))

    return decorate


def read_data(path: Path, *, kind: DatasetKind | None = None, as_of: date | None = None) -> Dataset:
    """Read a dataset with the command's ``--columns`` map, if one was given."""
    from npl_engine.data import read_dataset
    from npl_engine.data.columns import load_column_map

    context = click.get_current_context(silent=True)
    map_path = None if context is None else context.find_root().meta.get(_COLUMNS_KEY)
    columns = None if map_path is None else load_column_map(map_path)
    return read_dataset(path, kind=kind, as_of=as_of, columns=columns)


def _show_error(exc: click.ClickException) -> None:
    """Print a click error as every other error: usage and hint first, then ``error: ...``."""
    if isinstance(exc, click.exceptions.NoArgsIsHelpError):
        exc.show()  # a group called without a command: its help, not an error
        return
    if isinstance(exc, click.UsageError) and exc.ctx is not None:
        ctx = exc.ctx
        hint = ""
        if ctx.command.get_help_option(ctx) is not None:
            names = ctx.command.get_help_option_names(ctx)
            hint = f"Try '{ctx.command_path} {max(names, key=len)}' for help.\n"
        click.echo(f"{ctx.get_usage()}\n{hint}", err=True, color=ctx.color)
    click.secho(f"error: {exc.format_message()}", fg="red", err=True)


_show_warning = warnings.showwarning


def _show_note(  # noqa: PLR0917 - the signature of warnings.showwarning
    message: Warning | str,
    category: type[Warning],
    filename: str,
    lineno: int,
    file: Any = None,
    line: str | None = None,
) -> None:
    """Print what the engine assumed (an absent optional column) as a ``note:`` line."""
    if issubclass(category, AssumedDefaultWarning):
        click.secho(f"note: {message}", fg="yellow", err=True)
    else:
        _show_warning(message, category, filename, lineno, file, line)


class _Group(click.Group):
    """The ``npl`` group: click's own errors (bad option, missing argument) also start ``error:``.

    What the engine assumed for an absent optional column is printed as a ``note:`` line.

    Click prints its usage errors as ``Error: ...``; here they are caught and printed like the
    engine's errors, with click's exit code (2 for usage errors).
    """

    def main(  # type: ignore[override]
        self, args: Sequence[str] | None = None, prog_name: str | None = None, **extra: Any
    ) -> Any:
        """Run the command line; errors are printed as ``error: ...``, then the process exits."""
        if extra.get("standalone_mode") is False:
            return super().main(args, prog_name, **extra)
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("default", AssumedDefaultWarning)
                warnings.showwarning = _show_note
                code = super().main(args, prog_name, standalone_mode=False, **extra)
        except click.ClickException as exc:
            _show_error(exc)
            sys.exit(exc.exit_code)
        except click.Abort:
            click.secho("error: aborted", fg="red", err=True)
            sys.exit(1)
        sys.exit(code if isinstance(code, int) else 0)


@click.group(
    cls=_Group,
    context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100},
)
@click.version_option(__version__, prog_name="npl")
def main() -> None:
    """npl_engine: price and manage non-performing loan portfolios.

    Data comes as a dataset folder (loans, actions, payments as Parquet or CSV) in the form of
    the data contract (docs/data-contract.md).
    """


# -- one-file outputs ------------------------------------------------------------------------

#: Formats a table can be written in by ``--out FILE``, named by the file's suffix.
TABLE_SUFFIXES: tuple[str, ...] = (".parquet", ".csv", ".json", ".xlsx")


def check_out_file(out: Path, *, suffixes: Sequence[str] = TABLE_SUFFIXES) -> Path:
    """Check that ``--out FILE`` names a format the command writes; call it before any work.

    Raises
    ------
    NplError
        If the suffix names no format in ``suffixes`` (a file is never written in a format
        other than the one its name says).
    """
    if out.suffix.lower() not in suffixes:
        named = f"suffix {out.suffix!r}" if out.suffix else "no suffix"
        msg = (
            f"--out {out}: {named} names no format this command writes; "
            f"give a file ending in {', '.join(suffixes)}"
        )
        raise NplError(msg)
    return out


def write_table(
    frame: pl.DataFrame, out: Path, *, before_publish: Callable[[], object] | None = None
) -> None:
    """``--out FILE``: :func:`npl_engine.data.writers.write_table` after the suffix check."""
    from npl_engine.data.writers import write_table as write

    check_out_file(out)
    write(frame, out, before_publish=before_publish)


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
    data_dir: Path,
    model_dir: Path,
    parameters: dict[str, Any],
    loans: pl.DataFrame | pl.LazyFrame | None = None,
    outputs: pl.DataFrame | pl.LazyFrame | None = None,
    reasons: pl.DataFrame | pl.LazyFrame | None = None,
    chunk_rows: int | None = None,
    decisions: Iterator[pl.DataFrame] | None = None,
) -> str | None:
    """Append a run's decision record (see docs/audit.md) and say where; ``None`` if disabled.

    With ``chunk_rows``, ``loans``, ``outputs`` and ``reasons`` (in the same loan order, e.g.
    scans of the tape and of the files a chunked run wrote) are read and recorded that many
    loans at a time: the same record, without holding the tape. ``decisions`` (frames of
    :func:`~npl_engine.audit.decision_frame`, in loan order) stands for all three.
    """
    if no_audit:
        return None
    from npl_engine.audit import (
        decision_frame,
        default_audit_path,
        files_fingerprint,
        record_run,
    )

    db = audit_db if audit_db is not None else default_audit_path()
    rows: pl.DataFrame | Iterator[pl.DataFrame]
    if decisions is not None:
        rows = decisions
    elif loans is None or outputs is None:
        msg = "a decision record needs the loans and outputs, or the decision frames"
        raise ValueError(msg)
    elif chunk_rows:
        rows = _decision_chunks(loans.lazy(), outputs.lazy(), reasons, chunk_rows)
    else:
        rows = decision_frame(_collected(loans), _collected(outputs), _collected(reasons))
    run_id = record_run(
        command=command,
        decisions=rows,
        input_fingerprint=files_fingerprint(data_dir, dataset=True),
        model_dir=model_dir,
        parameters=parameters,
        db=db,
    )
    click.echo(f"decision record {run_id} appended to {db}", err=True)
    return run_id


class _RecordInBackground:
    """A decision record appended on its own thread from frames handed over as a run goes on.

    The record is one DuckDB transaction fed chunk by chunk (``record_run`` consumes an
    iterable of decision frames); the run's next chunk is computed meanwhile. :meth:`put`
    blocks while two frames wait, so memory stays bounded; :meth:`finish` commits and raises
    the recorder's error, if any; :meth:`abort` rolls the record back.
    """

    _DONE = object()

    def __init__(self, start: Callable[[Iterator[pl.DataFrame]], Any]) -> None:
        self._queue: queue.Queue[Any] = queue.Queue(maxsize=2)
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, args=(start,), name="npl-record")
        self._thread.start()

    def _frames(self) -> Iterator[pl.DataFrame]:
        while True:
            item = self._queue.get()
            if item is self._DONE:
                return
            if isinstance(item, BaseException):
                raise item
            yield item

    def _run(self, start: Callable[[Iterator[pl.DataFrame]], Any]) -> None:
        try:
            start(self._frames())
        except BaseException as error:  # handed to the run's thread
            self._error = error

    def _hand_over(self, item: Any) -> None:
        while self._thread.is_alive():
            try:
                self._queue.put(item, timeout=0.2)
            except queue.Full:
                continue
            return

    def put(self, frame: pl.DataFrame) -> None:
        """Hand over the next decision frame; raises the recorder's error if it stopped."""
        self._hand_over(frame)
        if not self._thread.is_alive():
            self.finish()

    def finish(self) -> None:
        """Commit the record (after the last frame) and wait; raises the recorder's error."""
        self._hand_over(self._DONE)
        self._thread.join()
        if self._error is not None:
            raise self._error

    def abort(self) -> None:
        """Roll the record back (the run failed) and wait; the recorder's error is dropped."""
        self._hand_over(NplError("the run stopped before its decision record was complete"))
        self._thread.join()


@contextlib.contextmanager
def _record_while_running(
    audit_db: Path | None,
    *,
    no_audit: bool,
    command: str,
    data_dir: Path,
    model_dir: Path,
    parameters: dict[str, Any],
) -> Iterator[Callable[[pl.DataFrame], None] | None]:
    """Append a run's decision record while it runs: yields ``put(decision_frame)``.

    Frames handed to ``put`` (in loan order) make the record :func:`_record_decisions` would
    append from the whole run's loans; it is committed when the block ends without error and
    rolled back otherwise. Yields ``None`` (record nothing) with ``no_audit``.
    """
    if no_audit:
        yield None
        return

    def start(frames: Iterator[pl.DataFrame]) -> None:
        _record_decisions(
            audit_db,
            no_audit=False,
            command=command,
            decisions=frames,
            data_dir=data_dir,
            model_dir=model_dir,
            parameters=parameters,
        )

    recorder = _RecordInBackground(start)
    try:
        yield recorder.put
    except BaseException:
        recorder.abort()
        raise
    recorder.finish()


def _collected(frame: pl.DataFrame | pl.LazyFrame | None) -> Any:
    return frame.collect() if isinstance(frame, pl.LazyFrame) else frame


def _decision_chunks(
    loans: pl.LazyFrame,
    outputs: pl.LazyFrame,
    reasons: pl.DataFrame | pl.LazyFrame | None,
    chunk_rows: int,
) -> Iterator[pl.DataFrame]:
    """The decision frames of consecutive chunks of loans, their outputs and reasons."""
    from npl_engine.audit import decision_frame
    from npl_engine.data import loan_chunks

    for piece in loan_chunks(loans, chunk_rows):
        start, size = piece.start, piece.stop - piece.start
        yield decision_frame(
            piece.loans.collect(),
            outputs.slice(start, size).collect(),
            None if reasons is None else reasons.lazy().slice(start, size).collect(),
        )


def _audit_db_option(func: F) -> F:
    return click.option(
        "--audit-db",
        type=click.Path(dir_okay=False, path_type=Path),
        default=None,
        help="Audit database to read. Default: $NPL_AUDIT_DB, else "
        "~/.local/share/npl_engine/audit.duckdb.",
    )(func)
