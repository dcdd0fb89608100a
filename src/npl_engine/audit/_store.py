"""The decision-record store: an append-only embedded DuckDB database.

Two tables. ``runs`` holds one row per run (a CLI command, or one service request): who asked,
what ran, with which model and on which input. ``decisions`` holds one row per loan of a run:
the contract ``loans`` columns the run read (typed, as validated), the run's outputs for that
loan and, where computed, its reason codes. A run and all its decisions are written in one
transaction, so a reader sees all of a run or nothing of it.

The engine only ever inserts. The schema follows :data:`npl_engine.data.contract.LOANS`: a
contract column added later is added to ``decisions`` when the database is next opened.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, Protocol

import duckdb
import numpy as np
import numpy.typing as npt
import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq

from npl_engine.data.contract import LOANS, ColumnSpec
from npl_engine.errors import NplError

__all__ = [
    "AUDIT_DB_ENV",
    "DECISION_COLUMNS",
    "READ_QUERIES",
    "RUN_COLUMNS",
    "SCHEMA_VERSION",
    "AuditReader",
    "AuditStore",
    "DatabaseInUse",
    "RunRecord",
    "decision_rows",
    "default_audit_path",
    "read_query",
    "run_rows",
]

#: Environment variable naming the audit database (overridden by ``--audit-db``).
AUDIT_DB_ENV = "NPL_AUDIT_DB"
#: Layout version of the database, kept in its ``meta`` table.
SCHEMA_VERSION = 1
#: How long a writer waits for another process holding the database (seconds).
LOCK_WAIT_SECONDS = 10.0
#: Rows per Arrow batch when reading records.
_BATCH_ROWS = 65_536

_DUCK_TYPES = {"string": "VARCHAR", "enum": "VARCHAR", "date": "DATE", "float": "DOUBLE",
               "int": "BIGINT"}  # fmt: skip

#: Columns of ``runs``, with their DuckDB types.
RUN_COLUMNS: tuple[tuple[str, str], ...] = (
    ("run_id", "VARCHAR PRIMARY KEY"),
    ("recorded_at", "TIMESTAMPTZ NOT NULL"),
    ("caller", "VARCHAR NOT NULL"),
    ("caller_kind", "VARCHAR NOT NULL"),
    ("command", "VARCHAR NOT NULL"),
    ("model_id", "VARCHAR"),
    ("model_fingerprint", "VARCHAR"),
    ("input_fingerprint", "VARCHAR NOT NULL"),
    ("engine_version", "VARCHAR NOT NULL"),
    ("n_loans", "BIGINT NOT NULL"),
    ("parameters", "VARCHAR NOT NULL"),
)
#: Columns of ``decisions`` before the contract's loans columns.
DECISION_COLUMNS: tuple[tuple[str, str], ...] = (
    ("run_id", "VARCHAR NOT NULL"),
    ("seq", "BIGINT NOT NULL"),
    ("outputs", "VARCHAR"),
    ("reasons", "VARCHAR"),
)


_RUN_TYPES: dict[str, pl.DataType] = {
    "recorded_at": pl.Datetime("us", "UTC"),
    "n_loans": pl.Int64(),
    "model_id": pl.String(),
    "model_fingerprint": pl.String(),
}


def default_audit_path() -> Path:
    """Where decision records go when no ``--audit-db`` is given.

    Returns
    -------
    Path
        ``$NPL_AUDIT_DB`` if set, else ``$XDG_DATA_HOME/npl_engine/audit.duckdb`` (by default
        ``~/.local/share/npl_engine/audit.duckdb``).
    """
    env = os.environ.get(AUDIT_DB_ENV)
    if env:
        return Path(env).expanduser()
    data_home = os.environ.get("XDG_DATA_HOME") or Path.home() / ".local" / "share"
    return Path(data_home) / "npl_engine" / "audit.duckdb"


@dataclass(frozen=True, slots=True)
class RunRecord:
    """One run and its per-loan decisions, ready to append.

    Parameters
    ----------
    run_id
        Unique id (see :func:`npl_engine.audit.new_run_id`).
    recorded_at
        When the run was recorded (timezone-aware, UTC).
    caller, caller_kind
        Who asked: an API key id (``api_key``) or an operating-system user (``os_user``).
    command
        What ran: ``score``, ``value``, ``policy``, ``serve:score``, ...
    model_id, model_fingerprint
        The model folder used and the sha256 of its files (``None`` when no model was used).
    input_fingerprint
        sha256 of the input: the dataset's files, or the request body.
    engine_version
        npl_engine's version.
    parameters
        Options that shaped the outputs (JSON-serialisable).
    decisions
        One row per loan: the contract ``loans`` columns read (extra columns are not recorded),
        ``outputs`` (JSON text) and ``reasons`` (JSON text or null), in loan order; or an
        iterable of such frames, appended in order (for runs too large to hold as one frame).
    n_loans
        Number of loans; counted from ``decisions`` when it is one frame.
    """

    run_id: str
    recorded_at: datetime
    caller: str
    caller_kind: str
    command: str
    model_id: str | None
    model_fingerprint: str | None
    input_fingerprint: str
    engine_version: str
    parameters: dict[str, Any] = field(default_factory=dict)
    decisions: pl.DataFrame | Iterable[pl.DataFrame] = field(default_factory=pl.DataFrame)
    n_loans: int | None = None

    def run_row(self) -> dict[str, Any]:
        """The ``runs`` row of this record."""
        n = self.n_loans
        if n is None:
            n = self.decisions.height if isinstance(self.decisions, pl.DataFrame) else 0
        return {
            "run_id": self.run_id,
            "recorded_at": self.recorded_at,
            "caller": self.caller,
            "caller_kind": self.caller_kind,
            "command": self.command,
            "model_id": self.model_id,
            "model_fingerprint": self.model_fingerprint,
            "input_fingerprint": self.input_fingerprint,
            "engine_version": self.engine_version,
            "n_loans": n,
            "parameters": json.dumps(self.parameters, sort_keys=True, default=str),
        }


class DatabaseInUse(NplError):  # noqa: N818 - names the state, as NplError does
    """The audit database is held by another process (DuckDB lets one process open it)."""


def _column_type(spec: ColumnSpec) -> str:
    return _DUCK_TYPES[spec.kind]


def _locked(exc: Exception) -> bool:
    text = str(exc).lower()
    return "lock" in text and ("conflicting" in text or "could not set" in text)


def _decision_rows(runs: Sequence[tuple[str, pl.DataFrame]], offset: int) -> pl.DataFrame:
    """The ``decisions`` rows of runs' frames, seq counted from ``offset + 1``."""
    frame = runs[0][1] if len(runs) == 1 else pl.concat([f for _, f in runs], how="vertical")
    sizes = np.array([f.height for _, f in runs], dtype=np.int64)
    return decision_rows(frame, [r for r, _ in runs], sizes, first_seq=offset + 1)


def decision_rows(
    frame: pl.DataFrame,
    run_ids: Sequence[str],
    sizes: npt.ArrayLike,
    *,
    first_seq: int = 1,
) -> pl.DataFrame:
    """Rows of the ``decisions`` table for consecutive runs whose loans are held in one frame.

    Parameters
    ----------
    frame
        Per-loan rows in the form :attr:`RunRecord.decisions` takes (contract loans columns,
        ``outputs``, ``reasons``), the loans of ``run_ids[0]`` first.
    run_ids, sizes
        Each run's id and number of rows, in frame order.
    first_seq
        ``seq`` of each run's first row.

    Returns
    -------
    pl.DataFrame
        Run id, seq, outputs, reasons, then the contract loans columns (enums as text): what
        :meth:`AuditStore.append_rows` inserts.
    """
    sizes = np.asarray(sizes, dtype=np.int64)
    if int(sizes.sum()) != frame.height:
        msg = f"{frame.height} decision rows for runs of {int(sizes.sum())} loans"
        raise ValueError(msg)
    starts = np.repeat(np.cumsum(sizes) - sizes, sizes)
    seq = np.arange(frame.height, dtype=np.int64) - starts + first_seq
    ids = np.repeat(np.array(run_ids, dtype=object), sizes)
    text = {n: pl.col(n) if n in frame.columns else pl.lit(None, pl.String)
            for n in ("outputs", "reasons")}  # fmt: skip
    return frame.select(
        pl.Series("run_id", ids, dtype=pl.String),
        pl.Series("seq", seq),
        text["outputs"].alias("outputs"),
        text["reasons"].alias("reasons"),
        *[
            pl.col(c).cast(pl.String) if LOANS.column(c).kind == "enum" else pl.col(c)
            for c in LOANS.names
            if c in frame.columns
        ],
    )


def run_rows(records: Sequence[RunRecord]) -> pl.DataFrame:
    """Rows of the ``runs`` table for records (each record's :meth:`RunRecord.run_row`)."""
    return pl.DataFrame([r.run_row() for r in records], schema_overrides=_RUN_TYPES)


class AuditStore:
    """An open audit database.

    Parameters
    ----------
    path
        The DuckDB file; created with its tables (and parent folders) if absent.
    read_only
        Open for reading only (``npl audit``); a missing file is then an error.
    wait_seconds
        How long to retry while another process holds the database.

    Notes
    -----
    DuckDB lets one process write a database file at a time; other processes wait here for up
    to ``wait_seconds`` and then get a :class:`~npl_engine.errors.NplError` naming the file. The
    service keeps its database open while it runs. A connection is not safe to share between
    threads; the service writes from one thread.
    """

    def __init__(
        self, path: str | Path, *, read_only: bool = False, wait_seconds: float = LOCK_WAIT_SECONDS
    ) -> None:
        self.path = Path(path).expanduser()
        if read_only and not self.path.exists():
            msg = f"no audit database at {self.path}: nothing has been recorded there yet"
            raise NplError(msg)
        if not read_only:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        self._con = self._connect(read_only=read_only, wait_seconds=wait_seconds)
        if not read_only:
            self._create()

    def _connect(self, *, read_only: bool, wait_seconds: float) -> duckdb.DuckDBPyConnection:
        deadline = time.monotonic() + wait_seconds
        while True:
            try:
                # No progress bar: DuckDB draws one on stdout for queries over 2 s (reading a
                # run of a million loans), into the tables and CSV the commands print.
                con = duckdb.connect(str(self.path), read_only=read_only)
                con.execute("SET enable_progress_bar = false")
            except duckdb.Error as exc:
                if not _locked(exc):
                    msg = f"cannot open the audit database {self.path}: {exc}"
                    raise NplError(msg) from exc
                if time.monotonic() >= deadline:
                    msg = (
                        f"the audit database {self.path} is in use by another process (for "
                        "example `npl serve`); wait for it, give another file with --audit-db, "
                        "or skip recording with --no-audit"
                    )
                    raise DatabaseInUse(msg) from exc
                time.sleep(0.2)
                continue
            con.execute("SET TimeZone = 'UTC'")
            return con

    def _create(self) -> None:
        con = self._con
        con.execute("CREATE TABLE IF NOT EXISTS meta (key VARCHAR PRIMARY KEY, value VARCHAR)")
        con.execute(
            "INSERT INTO meta VALUES ('schema_version', ?) ON CONFLICT DO NOTHING",
            [str(SCHEMA_VERSION)],
        )
        runs = ", ".join(f"{n} {t}" for n, t in RUN_COLUMNS)
        con.execute(f"CREATE TABLE IF NOT EXISTS runs ({runs})")
        loans = [(c.name, _column_type(c)) for c in LOANS.columns]
        decisions = ", ".join(f'"{n}" {t}' for n, t in (*DECISION_COLUMNS, *loans))
        con.execute(f"CREATE TABLE IF NOT EXISTS decisions ({decisions})")
        # A contract column added since the database was created: add it (null in old rows).
        present = {row[0] for row in con.execute("DESCRIBE decisions").fetchall()}
        for name, kind in loans:
            if name not in present:
                con.execute(f'ALTER TABLE decisions ADD COLUMN "{name}" {kind}')

    def close(self) -> None:
        """Close the connection (and release the file for other processes)."""
        self._con.close()

    def __enter__(self) -> AuditStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- writing -------------------------------------------------------------------------

    def append(self, records: Sequence[RunRecord]) -> None:
        """Append runs and their decisions, all in one transaction.

        Parameters
        ----------
        records
            Runs to append. Their ids must be new.

        Raises
        ------
        NplError
            If a run id already exists or the write fails; nothing of ``records`` is kept.

        Notes
        -----
        Frames go to DuckDB as Arrow tables, one ``INSERT ... SELECT`` per frame: no loop over
        loans. If the process dies before the commit, DuckDB discards the transaction when the
        file is next opened; earlier runs are untouched.
        """
        if not records:
            return

        def write() -> None:
            rows: list[dict[str, Any]] = []
            # Runs given as one frame each: one insert for all.
            pending: list[tuple[str, pl.DataFrame]] = []
            for record in records:
                row = record.run_row()
                if isinstance(record.decisions, pl.DataFrame):
                    pending.append((record.run_id, record.decisions))
                    row["n_loans"] = record.decisions.height
                else:
                    n = 0
                    for chunk in record.decisions:
                        self._insert("decisions", _decision_rows([(record.run_id, chunk)], n))
                        n += chunk.height
                    row["n_loans"] = n
                rows.append(row)
            if pending:
                self._insert("decisions", _decision_rows(pending, 0))
            self._insert("runs", pl.DataFrame(rows, schema_overrides=_RUN_TYPES))

        self._transaction(write)

    def append_rows(self, runs: pl.DataFrame, decisions: pl.DataFrame) -> None:
        """Append runs and decisions given as table rows, all in one transaction.

        For many small runs at once (the service's batches hold one run per request): the
        rows are built where the runs are computed (:func:`run_rows`, :func:`decision_rows`),
        and only inserted here.

        Raises
        ------
        NplError
            As :meth:`append`.
        ValueError
            If the runs' ``n_loans`` do not add up to the rows of ``decisions``.
        """
        if runs.is_empty():
            return
        expected = int(runs["n_loans"].sum())
        if expected != decisions.height:
            msg = f"{decisions.height} decision rows for runs of {expected} loans"
            raise ValueError(msg)

        def write() -> None:
            self._insert("decisions", decisions)
            self._insert("runs", runs)

        self._transaction(write)

    def _transaction(self, write: Callable[[], None]) -> None:
        """Run ``write`` in one transaction; DuckDB errors become NplError, nothing kept."""
        con = self._con
        con.begin()
        try:
            write()
            con.commit()
        except BaseException as exc:
            con.rollback()
            if isinstance(exc, duckdb.ConstraintException):
                msg = f"audit database {self.path}: a run id was recorded twice: {exc}"
                raise NplError(msg) from exc
            if isinstance(exc, duckdb.Error):
                msg = f"cannot write to the audit database {self.path}: {exc}"
                raise NplError(msg) from exc
            raise

    def _insert(self, table: str, frame: pl.DataFrame) -> None:
        # DuckDB reads the Arrow table from this local variable by its name (a replacement
        # scan): a millisecond less per insert than registering a view and dropping it, which
        # the service pays on every batch. Columns are matched by name.
        _npl_rows = frame.to_arrow()  # read by name in the query below
        self._con.execute(f"INSERT INTO {table} BY NAME SELECT * FROM _npl_rows")

    # -- reading -------------------------------------------------------------------------

    def reader(self) -> AuditReader:
        """A reader on its own connection to this database, for another thread.

        DuckDB reads committed transactions only, so a reader sees whole runs while this
        store goes on appending (the service answers ``npl audit`` so; see
        :func:`~npl_engine.audit.serve_readers`).
        """
        con = self._con.cursor()
        con.execute("SET TimeZone = 'UTC'")
        return AuditReader(con, self.path, on_close=con.close)

    def _reading(self) -> AuditReader:
        return AuditReader(self._con, self.path)

    def runs(self, *, limit: int | None = None, command: str | None = None) -> pl.DataFrame:
        """Runs, newest first."""
        return self._reading().runs(limit=limit, command=command)

    def run(self, run_id: str) -> dict[str, Any] | None:
        """One run's row, or ``None`` if there is no such run."""
        return self._reading().run(run_id)

    def decisions(
        self, run_id: str, *, seq: int | None = None, limit: int | None = None
    ) -> pl.DataFrame:
        """Decisions of a run (one if ``seq`` is given), in loan order."""
        return self._reading().decisions(run_id, seq=seq, limit=limit)

    def export(self, out: str | Path, *, run_id: str | None = None) -> int:
        """Write decisions with their run's fields to one Parquet file; return the row count.

        See :meth:`AuditReader.export`.
        """
        return self._reading().export(out, run_id=run_id)


#: The reading queries, by name: what a reader of the service's socket may ask for.
READ_QUERIES = ("runs", "run", "decisions", "export")


def read_query(query: str, args: dict[str, Any]) -> tuple[str, list[Any]]:
    """SQL and parameters of a reading query (one of :data:`READ_QUERIES`).

    Raises
    ------
    ValueError
        If ``query`` is unknown or an argument is missing or of the wrong type.
    """

    def text(name: str, *, optional: bool = False) -> str | None:
        value = args.get(name)
        if (value is None and optional) or isinstance(value, str):
            return value
        msg = f"{query}: {name} must be text"
        raise ValueError(msg)

    def count(name: str) -> int | None:
        value = args.get(name)
        if value is None or (isinstance(value, int) and not isinstance(value, bool)):
            return value
        msg = f"{query}: {name} must be a whole number"
        raise ValueError(msg)

    if query == "runs":
        command, limit = text("command", optional=True), count("limit")
        sql = f"SELECT * FROM runs {'WHERE command = ?' if command else ''} "
        sql += "ORDER BY recorded_at DESC, run_id DESC"
        sql += f" LIMIT {int(limit)}" if limit is not None else ""
        return sql, [command] if command else []
    if query == "run":
        return "SELECT * FROM runs WHERE run_id = ?", [text("run_id")]
    if query == "decisions":
        run_id, seq, limit = text("run_id"), count("seq"), count("limit")
        sql = "SELECT * FROM decisions WHERE run_id = ?"
        params: list[Any] = [run_id]
        if seq is not None:
            sql += " AND seq = ?"
            params.append(seq)
        sql += " ORDER BY seq"
        sql += f" LIMIT {int(limit)}" if limit is not None else ""
        return sql, params
    if query == "export":
        run_id = text("run_id", optional=True)
        run_fields = ", ".join(f"r.{n}" for n, _ in RUN_COLUMNS)
        loans = ", ".join(f'd."{c}"' for c in LOANS.names)
        where = "WHERE d.run_id = ?" if run_id else ""
        sql = (
            f"SELECT {run_fields}, d.seq, d.run_id || ':' || d.seq AS decision_id, "
            f"d.outputs, d.reasons, {loans} FROM decisions d JOIN runs r USING (run_id) "
            f"{where} ORDER BY r.recorded_at, d.run_id, d.seq"
        )
        return sql, [run_id] if run_id else []
    msg = f"unknown query {query!r}; one of {', '.join(READ_QUERIES)}"
    raise ValueError(msg)


class _Source(Protocol):
    """Where a reader's queries go: a DuckDB connection, or the service's reader socket."""

    def batches(self, query: str, args: dict[str, Any]) -> pa.RecordBatchReader: ...


class AuditReader:
    """Reads decision records: from a DuckDB connection, or through a running service.

    Get one from :func:`~npl_engine.audit.open_reader` (which goes through the service when
    ``npl serve`` holds the file), or :meth:`AuditStore.reader`.

    Parameters
    ----------
    source
        A DuckDB connection, or any object answering ``batches(query, args)`` with the rows of
        :func:`read_query` as Arrow record batches.
    path
        The database file (for messages).
    via
        How the records are read: ``None`` for the file itself, else a description (such as
        ``the running service``).
    """

    def __init__(
        self,
        source: duckdb.DuckDBPyConnection | _Source,
        path: Path,
        *,
        via: str | None = None,
        on_close: Callable[[], None] | None = None,
    ) -> None:
        self._source = source
        self.path = path
        self.via = via
        self._on_close = on_close

    def batches(self, query: str, args: dict[str, Any]) -> pa.RecordBatchReader:
        """The rows of a reading query (:func:`read_query`), as Arrow record batches."""
        if isinstance(self._source, duckdb.DuckDBPyConnection):
            sql, params = read_query(query, args)
            return self._source.sql(sql, params=params).to_arrow_reader(_BATCH_ROWS)
        return self._source.batches(query, args)

    def _frame(self, query: str, args: dict[str, Any]) -> pl.DataFrame:
        frame = pl.from_arrow(self.batches(query, args).read_all())
        assert isinstance(frame, pl.DataFrame)
        return frame

    def runs(self, *, limit: int | None = None, command: str | None = None) -> pl.DataFrame:
        """Runs, newest first."""
        return self._frame("runs", {"limit": limit, "command": command})

    def run(self, run_id: str) -> dict[str, Any] | None:
        """One run's row, or ``None`` if there is no such run."""
        frame = self._frame("run", {"run_id": run_id})
        return frame.row(0, named=True) if frame.height else None

    def decisions(
        self, run_id: str, *, seq: int | None = None, limit: int | None = None
    ) -> pl.DataFrame:
        """Decisions of a run (one if ``seq`` is given), in loan order."""
        return self._frame("decisions", {"run_id": run_id, "seq": seq, "limit": limit})

    def export(self, out: str | Path, *, run_id: str | None = None) -> int:
        """Write decisions with their run's fields to one Parquet file; return the row count.

        The file is written beside ``out`` and renamed into place, so it appears whole or not
        at all. Columns: the run's fields, ``seq``, ``decision_id`` (``run_id:seq``),
        ``outputs``, ``reasons``, then the loans columns. Rows are written as they are read,
        a batch at a time.
        """
        out = Path(out)
        out.parent.mkdir(parents=True, exist_ok=True)
        tmp = out.with_name(f".{out.name}.tmp")
        batches = self.batches("export", {"run_id": run_id})
        count = 0
        try:
            with pq.ParquetWriter(tmp, batches.schema) as writer:
                for batch in batches:
                    writer.write_batch(batch)
                    count += batch.num_rows
            tmp.replace(out)
        finally:
            tmp.unlink(missing_ok=True)
        return count

    def close(self) -> None:
        """Release the connection (a reader from :meth:`AuditStore.reader` closes its own)."""
        if self._on_close is not None:
            self._on_close()
            self._on_close = None

    def __enter__(self) -> AuditReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
