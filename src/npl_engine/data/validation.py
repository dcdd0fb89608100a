"""Validation of contract tables: every rule of the data contract as a lazy Polars check.

Each rule is a boolean expression that is true on the rows breaking it. All rules of a table
are counted in one query (one ``select`` of many ``sum()`` expressions); only the rules that
fail are looked at again, in one more query, to fetch example rows. Nothing loops over rows in
Python, so validating a million-loan tape costs about three scans of it (one of them finds
duplicated ``loan_id``), each on Polars' streaming engine, which reads the files in batches:
memory follows the batch and the distinct ``loan_id`` values, not the whole table.

Rules derive from :mod:`npl_engine.data.contract`: types, required columns, enums and ranges
come from the column specs; the rules that tie columns or tables together (uniqueness of
``loan_id``, referential integrity, date order, collateral, settlements, ``as_of_date``) are
written here.
"""

from __future__ import annotations

import difflib
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date
from typing import Final

import numpy as np
import polars as pl

from npl_engine.data.contract import ACTIONS, LOANS, PAYMENTS, TABLES, ColumnSpec, TableSpec
from npl_engine.data.dataset import DatasetKind
from npl_engine.errors import Problem

__all__ = ["RawTable", "ValidationResult", "parse_column", "typed_frame", "validate_tables"]

MAX_EXAMPLES = 5
"""Example rows quoted per problem."""
_MAX_VALUES = 3
"""Offending values quoted per problem (unknown enum values, unreadable text)."""

_ROW = "__npl_row"
_RAW = "__npl_raw__"
_IN_LOANS = "__npl_in_loans"
_LOAN_CUTOFF = "__npl_loan_cutoff"

_STRING_LIKE = (pl.String, pl.Categorical, pl.Enum, pl.Null)

#: Polars engine of every validation query: the tables are read in batches, not held whole.
STREAMING: Final = "streaming"


@dataclass(frozen=True, slots=True)
class RawTable:
    """A contract table as it came from its file, before any cast.

    Parameters
    ----------
    frame
        The table, scanned lazily; columns keep the types of the file (all ``String`` for CSV).
    schema
        Its column names and types, as read from the file's header or metadata.
    source
        How messages name it, usually the file name (``loans.csv``).
    """

    frame: pl.LazyFrame
    schema: pl.Schema
    source: str


@dataclass(frozen=True, slots=True)
class ValidationResult:
    """Outcome of :func:`validate_tables`.

    Parameters
    ----------
    problems
        Every broken rule found; empty when the tables meet the contract.
    frames
        Typed lazy frames (see :func:`typed_frame`) of the tables that could be read.
    as_of_date
        The ``as_of_date`` in force: the user's, else the latest payment or action date
        (``None`` when there is neither).
    """

    problems: list[Problem] = field(default_factory=list)
    frames: dict[str, pl.LazyFrame] = field(default_factory=dict)
    as_of_date: date | None = None


@dataclass(frozen=True, slots=True)
class _Check:
    """One rule on one table: ``bad`` is true on the rows that break it.

    ``rule`` may hold ``{found}``, replaced by offending values taken from ``show``.
    """

    table: str
    column: str | None
    rule: str
    bad: pl.Expr
    show: pl.Expr | None = None


# --- parsing -------------------------------------------------------------------------------


def parse_column(spec: ColumnSpec, source: pl.DataType) -> pl.Expr:
    """Build the expression reading column ``spec.name`` of dtype ``source`` as its contract type.

    Values that cannot be read (text in a number column, a date in another form, an unknown
    enum value, an infinite float, a fractional value in an integer column) become null;
    validation reports them by comparing with the raw column.

    Parameters
    ----------
    spec
        Contract column.
    source
        Polars type the column has in the file (``String`` for every CSV column).

    Returns
    -------
    pl.Expr
        Expression of dtype ``spec.dtype``, named ``spec.name``; no default is filled.

    Notes
    -----
    Dates in text must be ISO ``YYYY-MM-DD``; ``Datetime`` columns (common in Parquet written
    by pandas) are truncated to their date. Integer columns accept integral floats (``3.0``)
    but not ``3.5``. In number columns NaN means missing, as it does in pandas and NumPy, and
    becomes null.
    """
    raw = pl.col(spec.name)
    expr = _PARSERS[spec.kind](raw, source, spec.dtype)
    return expr.cast(spec.dtype).alias(spec.name)


def _parse_string(raw: pl.Expr, source: pl.DataType, dtype: pl.DataType) -> pl.Expr:
    if source.is_nested() or isinstance(source, pl.Binary | pl.Object):
        return pl.lit(None, dtype=dtype)
    return raw.cast(pl.String)


def _parse_enum(raw: pl.Expr, source: pl.DataType, dtype: pl.DataType) -> pl.Expr:
    if not isinstance(source, _STRING_LIKE):
        return pl.lit(None, dtype=dtype)
    return raw.cast(pl.String).cast(dtype, strict=False)


def _parse_date(raw: pl.Expr, source: pl.DataType, dtype: pl.DataType) -> pl.Expr:
    if isinstance(source, pl.Date | pl.Null):
        return raw.cast(pl.Date)
    if isinstance(source, pl.Datetime):
        return raw.dt.date()
    if isinstance(source, pl.String):
        return raw.str.to_date("%Y-%m-%d", strict=False)
    return pl.lit(None, dtype=dtype)


def _parse_float(raw: pl.Expr, source: pl.DataType, dtype: pl.DataType) -> pl.Expr:
    if not _numeric_or_text(source):
        return pl.lit(None, dtype=dtype)
    number = raw.cast(pl.Float64, strict=False)
    return pl.when(number.is_finite()).then(number)


def _parse_int(raw: pl.Expr, source: pl.DataType, dtype: pl.DataType) -> pl.Expr:
    if source.is_integer() or isinstance(source, pl.Null):
        return raw.cast(pl.Int64, strict=False)
    if source.is_numeric():
        return _integral(raw.cast(pl.Float64))
    if isinstance(source, pl.String):
        # "3.0" is how pandas writes an integer column that holds nulls.
        return pl.coalesce(
            raw.cast(pl.Int64, strict=False), _integral(raw.cast(pl.Float64, strict=False))
        )
    return pl.lit(None, dtype=dtype)


_PARSERS = {
    "string": _parse_string,
    "enum": _parse_enum,
    "date": _parse_date,
    "float": _parse_float,
    "int": _parse_int,
}


def _numeric_or_text(source: pl.DataType) -> bool:
    return source.is_numeric() or isinstance(source, pl.String | pl.Null)


def _integral(number: pl.Expr) -> pl.Expr:
    """Whole floats as Int64, anything else null."""
    whole = number.is_finite() & (number == number.floor())
    return pl.when(whole).then(number).cast(pl.Int64, strict=False)


def _missing(spec: ColumnSpec, source: pl.DataType) -> pl.Expr:
    """Flag rows whose raw value is absent: null, or NaN in a number column."""
    raw = pl.col(f"{_RAW}{spec.name}")
    if spec.kind in {"float", "int"} and _numeric_or_text(source):
        return raw.is_null() | raw.cast(pl.Float64, strict=False).is_nan().fill_null(value=False)
    return raw.is_null()


def typed_frame(raw: pl.LazyFrame, spec: TableSpec, schema: pl.Schema) -> pl.LazyFrame:
    """Type a raw table as the engine uses it: contract columns, typed, then extra columns.

    Parameters
    ----------
    raw
        The table as read from its file.
    spec
        Its contract table.
    schema
        Schema of ``raw``.

    Returns
    -------
    pl.LazyFrame
        Contract columns in contract order with their contract dtypes (enums as ``pl.Enum``);
        defaults filled where the contract gives one (absent columns and nulls); absent
        optional columns without a default added as nulls; unknown columns kept unchanged,
        after the contract columns, in their original order.
    """
    exprs: list[pl.Expr] = []
    for col in spec.columns:
        if col.name in schema:
            expr = parse_column(col, schema[col.name])
            if col.default is not None:
                expr = expr.fill_null(col.default)
        else:
            value = col.default
            expr = pl.lit(value, dtype=col.dtype)
        exprs.append(expr.alias(col.name))
    exprs += [pl.col(name) for name in schema.names() if name not in spec.names]
    return raw.select(exprs)


# --- rules ---------------------------------------------------------------------------------


def _raw(name: str) -> pl.Expr:
    return pl.col(f"{_RAW}{name}")


def _number(value: float) -> str:
    return f"{value:g}"


def _range_rule(col: ColumnSpec) -> tuple[str, pl.Expr] | None:
    """Rule text and violation of a column's bounds, if it has any."""
    value = pl.col(col.name)
    parts: list[str] = []
    bad: pl.Expr | None = None
    if col.gt is not None:
        parts.append(f"> {_number(col.gt)}")
        bad = value <= col.gt
    if col.ge is not None:
        parts.append(f"≥ {_number(col.ge)}")
        bad = value < col.ge if bad is None else bad | (value < col.ge)
    if col.le is not None:
        parts.append(f"≤ {_number(col.le)}")
        bad = value > col.le if bad is None else bad | (value > col.le)
    if bad is None:
        return None
    if col.ge is not None and col.le is not None:
        return f"must be between {_number(col.ge)} and {_number(col.le)}", bad
    return "must be " + " and ".join(parts), bad


def _unreadable_rule(col: ColumnSpec, source: pl.DataType) -> str:
    fitting = isinstance(source, _STRING_LIKE) or (
        source.is_numeric() if col.kind in {"float", "int"} else source == col.dtype
    )
    stored = "" if fitting else f"; the file stores it as {source}"
    match col.kind:
        case "enum":
            return f"has unknown value(s) {{found}}; allowed: {', '.join(col.values)}{stored}"
        case "date":
            return f"cannot be read as a date in the form YYYY-MM-DD (found {{found}}){stored}"
        case "float":
            return (
                "cannot be read as a finite number with '.' as decimal separator"
                f" (found {{found}}){stored}"
            )
        case "int":
            return f"cannot be read as a whole number (found {{found}}){stored}"
        case "string":
            return f"cannot be read as text{stored}"


def _always_readable(spec: ColumnSpec, source: pl.DataType) -> bool:
    """Whether every value of a column stored as ``source`` reads as the contract type.

    True when the file already stores the contract type (typical of Parquet), except for
    floats, which may hold infinities.
    """
    return spec.kind in {"string", "date", "int"} and source == spec.dtype


def _column_checks(spec: TableSpec, schema: pl.Schema) -> list[_Check]:
    """Type, required and range rules of every contract column present."""
    checks: list[_Check] = []
    for col in spec.columns:
        if col.name not in schema:
            continue
        source = schema[col.name]
        missing = _missing(col, source)
        if not _always_readable(col, source):
            show = None if source.is_nested() else _raw(col.name).cast(pl.String)
            unreadable = ~missing & pl.col(col.name).is_null()
            rule = _unreadable_rule(col, source)
            checks.append(_Check(spec.name, col.name, rule, unreadable, show))
        if col.required:
            checks.append(_Check(spec.name, col.name, "must not be empty", missing))
        bounds = _range_rule(col)
        if bounds is not None:
            checks.append(_Check(spec.name, col.name, bounds[0], bounds[1]))
    return checks


def _loans_checks(names: set[str], duplicated: pl.Series | None) -> list[_Check]:
    """Rules tying the columns of ``loans`` together; ``duplicated``: loan_ids seen twice."""
    checks: list[_Check] = []
    if "loan_id" in names and duplicated is not None:
        loan_id = pl.col("loan_id")
        checks.append(
            _Check(
                "loans",
                "loan_id",
                "must be unique; these loan_ids appear more than once",
                loan_id.is_not_null() & loan_id.is_in(duplicated.implode()),
            )
        )
    order = (("origination_date", "default_date"), ("default_date", "cutoff_date"))
    for early, late in order:
        if {early, late} <= names:
            rule = f"must be on or before {late}"
            checks.append(_Check("loans", early, rule, pl.col(early) > pl.col(late)))
    if {"collateral_type", "collateral_value"} <= names:
        bad = (pl.col("collateral_type") == "none") & (pl.col("collateral_value") != 0)
        checks.append(
            _Check("loans", "collateral_value", "must be 0 when collateral_type is none", bad)
        )
    return checks


def _event_checks(
    spec: TableSpec, names: set[str], *, joined: bool, as_of_date: date | None
) -> list[_Check]:
    """Rules of ``actions`` and ``payments``: links to loans, dates, settlements."""
    checks: list[_Check] = []
    date_col = "payment_date" if spec is PAYMENTS else "action_date"
    if joined:
        checks.append(
            _Check(
                spec.name,
                "loan_id",
                "must exist in loans; no loan has these loan_ids",
                pl.col("loan_id").is_not_null() & pl.col(_IN_LOANS).is_null(),
            )
        )
        if spec is PAYMENTS and date_col in names:
            checks.append(
                _Check(
                    spec.name,
                    date_col,
                    "must be after the loan's cutoff_date",
                    pl.col(date_col) <= pl.col(_LOAN_CUTOFF),
                )
            )
    if as_of_date is not None and date_col in names:
        checks.append(
            _Check(
                spec.name,
                date_col,
                f"is after as_of_date {as_of_date.isoformat()}; nothing can be recorded after"
                " the day the history was extracted",
                pl.col(date_col) > as_of_date,
            )
        )
    if spec is ACTIONS and {"action_type", "settlement_discount"} <= names:
        bad = pl.col("settlement_discount").is_not_null() & (
            pl.col("action_type") != "settlement_offer"
        )
        checks.append(
            _Check(
                spec.name,
                "settlement_discount",
                "must be empty unless action_type is settlement_offer",
                bad,
            )
        )
    return checks


# --- running the checks --------------------------------------------------------------------


def _check_frame(table: RawTable, spec: TableSpec) -> pl.LazyFrame:
    """Raw and parsed contract columns side by side, one row per row of the file."""
    exprs: list[pl.Expr] = []
    for col in spec.columns:
        if col.name in table.schema:
            exprs.append(pl.col(col.name).alias(f"{_RAW}{col.name}"))
            exprs.append(parse_column(col, table.schema[col.name]))
    return table.frame.select(exprs)


def _example_id(names: set[str]) -> pl.Expr:
    row = pl.format("row {}", pl.col(_ROW))
    if "loan_id" not in names:
        return row
    return pl.when(pl.col("loan_id").is_not_null()).then(pl.col("loan_id")).otherwise(row)


def _quote(values: list[str], n_distinct: int) -> str:
    text = ", ".join(repr(v) for v in values)
    if n_distinct > len(values):
        text += f" and {n_distinct - len(values)} more"
    return text


def _problems(
    frame: pl.LazyFrame,
    failed: list[tuple[_Check, int]],
    example_id: pl.Expr,
) -> list[Problem]:
    """Fetch examples for the failed checks (one query) and turn them into problems."""
    if not failed:
        return []
    exprs: list[pl.Expr] = []
    for i, (check, _) in enumerate(failed):
        ids = example_id.filter(check.bad).unique(maintain_order=True).head(MAX_EXAMPLES)
        exprs.append(ids.implode().alias(f"e{i}"))
        if check.show is not None:
            shown = check.show.filter(check.bad).drop_nulls()
            exprs.append(
                shown.unique(maintain_order=True).head(_MAX_VALUES).implode().alias(f"s{i}")
            )
            exprs.append(shown.n_unique().alias(f"k{i}"))
    # Numbered here, not in the counting query, where a row index would slow the scan; the
    # frame keeps the rows of the file in order (joins add columns, never rows).
    numbered = frame.with_row_index(_ROW, offset=1)
    row = numbered.select(exprs).collect(engine=STREAMING).row(0, named=True)
    problems: list[Problem] = []
    for i, (check, n_rows) in enumerate(failed):
        rule = check.rule
        if check.show is not None:
            rule = rule.replace("{found}", _quote(row[f"s{i}"], row[f"k{i}"]))
        problems.append(Problem(check.table, check.column, rule, n_rows, tuple(row[f"e{i}"])))
    return problems


def _run(
    frame: pl.LazyFrame,
    checks: list[_Check],
    names: set[str],
    extras: Mapping[str, pl.Expr] | None = None,
) -> tuple[list[Problem], dict[str, object]]:
    """Count every check in one query; fetch examples of those that fail.

    Returns the problems and the values of ``extras`` (aggregations computed alongside).
    """
    extras = dict(extras or {})
    counts = [c.bad.sum().alias(f"n{i}") for i, c in enumerate(checks)]
    aggs = [e.alias(f"x_{k}") for k, e in extras.items()]
    query = frame.select(counts + aggs)
    row = query.collect(engine=STREAMING).row(0, named=True) if counts + aggs else {}
    failed = [(c, int(row[f"n{i}"])) for i, c in enumerate(checks) if row[f"n{i}"]]
    problems = _problems(frame, failed, _example_id(names))
    return problems, {k: row[f"x_{k}"] for k in extras}


def _unreadable(table: str, source: str, exc: Exception) -> Problem:
    first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return Problem(table, None, f"cannot read {source}: {first}")


def _structure(spec: TableSpec, schema: pl.Schema) -> list[Problem]:
    """Missing required columns, with a hint when a near name is present."""
    problems: list[Problem] = []
    present = schema.names()
    for name in spec.required:
        if name in schema:
            continue
        rule = "required column is missing"
        close = difflib.get_close_matches(name, present, n=1, cutoff=0.8)
        if close:
            rule += f" (the file has {close[0]!r})"
        problems.append(Problem(spec.name, name, rule))
    return problems


def _loan_keys(loans: RawTable) -> pl.LazyFrame:
    """One row per distinct loan_id: its cutoff_date and a marker that it exists."""
    exprs = [parse_column(LOANS.column("loan_id"), loans.schema["loan_id"])]
    if "cutoff_date" in loans.schema:
        cutoff = parse_column(LOANS.column("cutoff_date"), loans.schema["cutoff_date"])
    else:
        cutoff = pl.lit(None, dtype=pl.Date)
    exprs.append(cutoff.alias(_LOAN_CUTOFF))
    return (
        loans.frame.select(exprs)
        .drop_nulls("loan_id")
        .group_by("loan_id")
        .agg(pl.col(_LOAN_CUTOFF).min(), pl.lit(True).alias(_IN_LOANS))
    )


def _validate_events(
    table: RawTable,
    spec: TableSpec,
    *,
    keys: pl.LazyFrame | None,
    as_of_date: date | None,
) -> tuple[list[Problem], date | None]:
    """Problems of ``actions`` or ``payments``, and their latest date."""
    problems = _structure(spec, table.schema)
    names = set(table.schema.names()) & set(spec.names)
    frame = _check_frame(table, spec)
    joined = keys is not None and "loan_id" in names
    if joined and keys is not None:
        frame = frame.join(keys, on="loan_id", how="left", maintain_order="left")
    checks = _column_checks(spec, table.schema)
    checks += _event_checks(spec, names, joined=joined, as_of_date=as_of_date)
    date_col = "payment_date" if spec is PAYMENTS else "action_date"
    extras = {"latest": pl.col(date_col).max()} if date_col in names else {}
    try:
        found, values = _run(frame, checks, names, extras)
    except (pl.exceptions.PolarsError, OSError) as exc:
        return [*problems, _unreadable(spec.name, table.source, exc)], None
    latest = values.get("latest")
    return problems + found, latest if isinstance(latest, date) else None


def _common_cutoff(frame: pl.LazyFrame) -> tuple[_Check, int] | None:
    """Loans off the tape's most common cutoff_date, if the tape has more than one."""
    counts = (
        frame.group_by("cutoff_date")
        .len()
        .drop_nulls("cutoff_date")
        .sort(["len", "cutoff_date"], descending=[True, False])
        .collect(engine=STREAMING)
    )
    if counts.height <= 1:
        return None
    common: date = counts["cutoff_date"][0]
    n_off = int(counts["len"][1:].sum())
    rule = (
        f"must be one common date for a tape; found {counts.height} dates, most loans on"
        f" {common.isoformat()}"
    )
    return _Check("loans", "cutoff_date", rule, pl.col("cutoff_date") != common), n_off


def _cutoff_after(as_of_date: date) -> _Check:
    rule = (
        f"is after as_of_date {as_of_date.isoformat()}; a loan's workout cannot start after"
        " the day the history was extracted"
    )
    return _Check("loans", "cutoff_date", rule, pl.col("cutoff_date") > as_of_date)


def _duplicated_ids(frame: pl.LazyFrame) -> pl.Series:
    """The loan_ids found on more than one row, without holding the tape.

    A streaming pass collects a 64-bit hash of every loan_id (8 bytes a loan, far less than a
    hash table of the ids themselves); the hashes seen twice are then checked against the ids,
    so a collision of two different ids is never reported.
    """
    hashes = np.sort(
        frame.select(pl.col("loan_id").drop_nulls().hash(0))
        .collect(engine=STREAMING)
        .to_series()
        .to_numpy()
    )
    repeated = np.unique(hashes[1:][hashes[1:] == hashes[:-1]])
    if not repeated.size:
        return pl.Series("loan_id", [], dtype=pl.String)
    return (
        frame.select("loan_id")
        .filter(pl.col("loan_id").hash(0).is_in(pl.Series(repeated).implode()))
        .group_by("loan_id")
        .len()
        .filter(pl.col("len") > 1)
        .collect(engine=STREAMING)
        .get_column("loan_id")
    )


def _validate_loans(
    table: RawTable, *, kind: DatasetKind, as_of_date: date | None
) -> tuple[list[Problem], bool]:
    """Problems of ``loans``, and whether the table could be read at all."""
    problems = _structure(LOANS, table.schema)
    names = set(table.schema.names()) & set(LOANS.names)
    frame = _check_frame(table, LOANS)
    duplicated = None
    if "loan_id" in names:
        try:
            duplicated = _duplicated_ids(frame)
        except (pl.exceptions.PolarsError, OSError) as exc:
            return [*problems, _unreadable("loans", table.source, exc)], False
    checks = _column_checks(LOANS, table.schema) + _loans_checks(names, duplicated)
    if as_of_date is not None and "cutoff_date" in names:
        checks.append(_cutoff_after(as_of_date))
    extras: dict[str, pl.Expr] = {"n": pl.len()}
    if kind == "tape" and "cutoff_date" in names:
        # Two dates or more iff the earliest is not the latest (n_unique would not stream).
        extras["cutoff_min"] = pl.col("cutoff_date").min()
        extras["cutoff_max"] = pl.col("cutoff_date").max()
    try:
        found, values = _run(frame, checks, names, extras)
        if values.get("n") == 0:
            found.append(Problem("loans", None, "has no rows"))
        if values.get("cutoff_min") != values.get("cutoff_max"):
            off = _common_cutoff(frame)
            if off is not None:
                found += _problems(frame, [off], _example_id(names))
    except (pl.exceptions.PolarsError, OSError) as exc:
        return [*problems, _unreadable("loans", table.source, exc)], False
    return problems + found, True


def validate_tables(
    tables: Mapping[str, RawTable],
    *,
    kind: DatasetKind,
    as_of_date: date | None = None,
) -> ValidationResult:
    """Check contract tables against every rule of the data contract.

    Parameters
    ----------
    tables
        The tables present, by contract name (``loans``, ``actions``, ``payments``). Which
        tables a kind of dataset needs is checked by the reader, not here.
    kind
        ``book`` or ``tape``; a tape must have one common ``cutoff_date``.
    as_of_date
        The day the history was extracted; ``None`` to take the latest payment or action date.

    Returns
    -------
    ValidationResult
        All problems found (none stops the others from being looked for), typed lazy frames,
        and the ``as_of_date`` in force.

    Notes
    -----
    Rules that link tables (``loan_id`` must exist in loans, payments after the loan's
    ``cutoff_date``) are checked only when ``loans`` can be read and has ``loan_id``. No
    payment or action may fall after ``as_of_date``, and no loan may have its ``cutoff_date``
    after it; a default ``as_of_date`` (the latest payment or action date) meets the first
    rule by construction. Each table costs one counting query and, only where a rule fails,
    one query for examples.
    """
    problems: list[Problem] = []
    loans = tables.get("loans")
    keys: pl.LazyFrame | None = None
    loans_readable = False
    if loans is not None:
        found, loans_readable = _validate_loans(loans, kind=kind, as_of_date=as_of_date)
        problems += found
        if loans_readable and "loan_id" in loans.schema:
            keys = _loan_keys(loans)

    latest: list[date] = []
    for spec in (ACTIONS, PAYMENTS):
        table = tables.get(spec.name)
        if table is None:
            continue
        found, last = _validate_events(table, spec, keys=keys, as_of_date=as_of_date)
        problems += found
        if last is not None:
            latest.append(last)
    effective = as_of_date if as_of_date is not None else max(latest, default=None)

    if (
        as_of_date is None
        and effective is not None
        and loans is not None
        and loans_readable
        and "cutoff_date" in loans.schema
    ):
        # The default as_of_date is known only now; check loans against it.
        names = set(loans.schema.names()) & set(LOANS.names)
        found, _ = _run(_check_frame(loans, LOANS), [_cutoff_after(effective)], names)
        problems += found

    frames = {
        name: typed_frame(table.frame, TABLES[name], table.schema) for name, table in tables.items()
    }
    problems.sort(key=_table_order)
    return ValidationResult(problems=problems, frames=frames, as_of_date=effective)


def _table_order(problem: Problem) -> tuple[int, int]:
    """Sort key: folder-level problems first, then tables and columns in contract order."""
    spec = TABLES.get(problem.table)
    if spec is None:
        return (0, 0)
    column = spec.names.index(problem.column) + 1 if problem.column in spec.names else 0
    return (list(TABLES).index(problem.table) + 1, column)
