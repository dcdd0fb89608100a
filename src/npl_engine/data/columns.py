"""Column maps: read a seller's table in its own spelling without rewriting it by hand.

A column map (``--columns MAP.toml``) says, for each contract column, which column of the
seller's file holds it, how its dates and numbers are written, and how its codes translate to
the contract's values::

    date_format = "%d/%m/%Y"     # strftime codes; default ISO %Y-%m-%d
    decimal = "."                # "." or ","
    thousands = ","              # "", ",", ".", " " or "'"

    [loans.columns]              # contract column = column in the seller's file
    loan_id = "Loan ID"
    outstanding_principal = "Outstanding Balance"
    cutoff_date = "Cut-off"

    [loans.codes.segment]        # seller's value = contract value
    "Mortgage" = "residential_mortgage"

:func:`load_column_map` parses the file into a typed :class:`ColumnMap`; the dataset readers
apply it (:func:`npl_engine.data.read_dataset` ``columns=``), so every command reads mapped
data through one path.
"""

from __future__ import annotations

import re
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import polars as pl
from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, ValidationError, model_validator

from npl_engine.data.contract import TABLES, ColumnSpec
from npl_engine.errors import Problem, SettingsError

__all__ = ["ColumnMap", "TableMap", "load_column_map", "map_columns", "parse_column_map"]

_MAX_EXAMPLES = 5


class TableMap(BaseModel):
    """How one contract table is spelled in the seller's file.

    Parameters
    ----------
    columns
        Contract column name -> the seller's column name. Columns not listed keep their names.
    codes
        Contract column name -> {seller's value: contract value}, for enum columns. Values not
        listed are read as they are (and fail validation if they are not contract values).
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    columns: dict[str, str] = Field(default_factory=dict)
    codes: dict[str, dict[str, str]] = Field(default_factory=dict)


class ColumnMap(BaseModel):
    """A seller's spelling of the contract tables: column names, date and number formats, codes.

    Parameters
    ----------
    date_format
        ``strftime`` format of dates in text files (``"%d/%m/%Y"`` for ``30/09/2026``).
    decimal
        Decimal separator of numbers in text files.
    thousands
        Thousands separator of numbers in text files (``""`` for none).
    loans, actions, payments
        The map of each table.

    Notes
    -----
    Formats apply to text columns only (every CSV column); a Parquet or Excel column that
    already holds dates or numbers is read as it is.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    date_format: str = "%Y-%m-%d"
    decimal: Literal[".", ","] = "."
    thousands: Literal["", ",", ".", " ", "'"] = ""
    loans: TableMap = Field(default_factory=TableMap)
    actions: TableMap = Field(default_factory=TableMap)
    payments: TableMap = Field(default_factory=TableMap)
    _source: str = PrivateAttr(default="the column map")

    @property
    def source(self) -> str:
        """The file the map was read from, as messages name it."""
        return self._source

    @model_validator(mode="after")
    def _check(self) -> ColumnMap:
        if self.decimal == self.thousands:
            msg = f"decimal and thousands separators are both {self.decimal!r}"
            raise ValueError(msg)
        if "%" not in self.date_format:
            msg = f"date_format {self.date_format!r} has no strftime code such as %d, %m or %Y"
            raise ValueError(msg)
        return self

    def table(self, name: str) -> TableMap:
        """The map of contract table ``name``."""
        found: TableMap = getattr(self, name)
        return found


def load_column_map(path: str | Path) -> ColumnMap:
    """Read and check a column map file.

    Parameters
    ----------
    path
        A TOML file in the format of the module docstring.

    Returns
    -------
    ColumnMap
        The typed map.

    Raises
    ------
    SettingsError
        If the file cannot be read, is not TOML, or names an unknown table, contract column
        or contract value; the message names the file and the key.
    """
    source = str(path)
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        msg = f"{source}: cannot read the column map: {exc}"
        raise SettingsError(msg) from exc
    return parse_column_map(text, source=source)


def parse_column_map(text: str, *, source: str = "<string>") -> ColumnMap:
    r"""Parse and check the text of a column map file.

    Parameters
    ----------
    text
        TOML text.
    source
        Name of the file, for messages.

    Returns
    -------
    ColumnMap
        The typed map.

    Raises
    ------
    SettingsError
        As :func:`load_column_map`.

    Examples
    --------
    >>> m = parse_column_map('date_format = "%d/%m/%Y"\n[loans.columns]\nloan_id = "ID"')
    >>> m.loans.columns
    {'loan_id': 'ID'}
    >>> parse_column_map('[loans.columns]\nbalance = "Balance"', source="map.toml")
    Traceback (most recent call last):
    ...
    npl_engine.errors.SettingsError: map.toml: loans.columns.balance: not a column of the contract's loans table
    """  # noqa: E501 - doctest output is one line
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        msg = f"{source}: invalid TOML: {exc}"
        raise SettingsError(msg) from exc
    try:
        column_map = ColumnMap.model_validate(data)
    except ValidationError as exc:
        lines = []
        for error in exc.errors():
            key = ".".join(str(part) for part in error["loc"]) or "(file)"
            lines.append(f"{source}: {key}: {error['msg']}")
        raise SettingsError("\n".join(lines)) from exc
    problems = _contract_problems(column_map, source)
    if problems:
        raise SettingsError("\n".join(problems))
    column_map._source = source
    return column_map


def _contract_problems(column_map: ColumnMap, source: str) -> list[str]:
    """Keys of the map that name no contract column or no contract value."""
    problems: list[str] = []
    for name, spec in TABLES.items():
        table = column_map.table(name)
        problems.extend(
            f"{source}: {name}.columns.{column}: not a column of the contract's {name} table"
            for column in table.columns
            if column not in spec.names
        )
        sources = list(table.columns.values())
        problems.extend(
            f"{source}: {name}.columns: {seller!r} is given for more than one contract column"
            for seller in sorted({s for s in sources if sources.count(s) > 1})
        )
        for column, codes in table.codes.items():
            if column not in spec.names:
                problems.append(
                    f"{source}: {name}.codes.{column}: not a column of the contract's {name} table"
                )
                continue
            col = spec.column(column)
            if col.kind != "enum":
                problems.append(
                    f"{source}: {name}.codes.{column}: codes translate enum columns only;"
                    f" {column} is a {col.kind}"
                )
                continue
            for seller, value in codes.items():
                if value not in col.values:
                    problems.append(
                        f"{source}: {name}.codes.{column}.{seller}: {value!r} is not a contract"
                        f" value; allowed: {', '.join(col.values)}"
                    )
    return problems


@dataclass(frozen=True, slots=True)
class _Conversion:
    """One mapped text column: the expression reading it, and the key naming its format."""

    column: str
    parsed: pl.Expr
    raw: pl.Expr
    key: str


def map_columns(
    frame: pl.LazyFrame,
    schema: pl.Schema,
    *,
    table: str,
    column_map: ColumnMap,
    file_name: str,
) -> tuple[pl.LazyFrame, pl.Schema, list[Problem]]:
    """Rename and convert a seller's table into the contract's spelling.

    Parameters
    ----------
    frame
        The table as scanned from its file (CSV columns are all text).
    schema
        Its schema.
    table
        Contract table name.
    column_map
        The map.
    file_name
        Name of the table file, for messages.

    Returns
    -------
    tuple[pl.LazyFrame, pl.Schema, list[Problem]]
        The renamed frame with dates as ISO text and numbers with ``.`` as decimal separator
        (so contract validation reads them), its schema, and a problem for every mapped
        column missing from the file or value that the map's formats cannot read (naming the
        map file, the key and example rows).
    """
    spec = TABLES[table]
    source = column_map.source
    tmap = column_map.table(table)
    problems: list[Problem] = []
    renames: dict[str, str] = {}
    for column, seller in tmap.columns.items():
        if seller in schema:
            renames[seller] = column
        else:
            rule = (
                f"{source} maps it to {seller!r} ({table}.columns.{column}), which is not in the"
                f" header of {file_name}"
            )
            problems.append(Problem(table, column, rule))
    clash = [c for c in renames.values() if c in schema and c not in renames]
    for column in clash:
        rule = (
            f"{file_name} has a column {column!r} and {source} maps {tmap.columns[column]!r} to it;"
            " drop one of them"
        )
        problems.append(Problem(table, column, rule))
    frame = frame.rename(renames)
    schema = pl.Schema({renames.get(name, name): dtype for name, dtype in schema.items()})

    conversions: list[_Conversion] = []
    for col in spec.columns:
        if col.name not in schema or not isinstance(schema[col.name], pl.String):
            continue
        conversion = _conversion(col, tmap, column_map, table=table)
        if conversion is not None:
            conversions.append(conversion)
    if conversions:
        problems += _unreadable(frame, conversions, source=source, file_name=file_name, table=table)
        frame = frame.with_columns(
            pl.when(c.raw.is_null()).then(None).otherwise(c.parsed).alias(c.column)
            for c in conversions
        )
    return frame, frame.collect_schema(), problems


def _conversion(
    col: ColumnSpec, tmap: TableMap, column_map: ColumnMap, *, table: str
) -> _Conversion | None:
    raw = pl.col(col.name).str.strip_chars()
    raw = pl.when(raw == "").then(None).otherwise(raw)
    where = ""
    if col.name in tmap.columns:
        where = f" ({table}.columns.{col.name} = {tmap.columns[col.name]!r})"
    if col.kind == "date" and column_map.date_format != "%Y-%m-%d":
        parsed = raw.str.to_date(column_map.date_format, strict=False).dt.strftime("%Y-%m-%d")
        key = f"date_format {column_map.date_format!r}{where}"
        return _Conversion(col.name, parsed, raw, key)
    if col.kind in {"float", "int"} and (column_map.decimal != "." or column_map.thousands):
        # Digits grouped by threes, or not grouped at all: with "." as thousands separator,
        # "100000.0" is a mistake to report, not one million.
        digits = r"\d+"
        if column_map.thousands:
            digits = rf"(?:\d{{1,3}}(?:{re.escape(column_map.thousands)}\d{{3}})+|\d+)"
        pattern = rf"^[+-]?{digits}(?:{re.escape(column_map.decimal)}\d+)?$"
        text: pl.Expr = pl.when(raw.str.contains(pattern)).then(raw)
        if column_map.thousands:
            text = text.str.replace_all(column_map.thousands, "", literal=True)
        if column_map.decimal != ".":
            text = text.str.replace_all(column_map.decimal, ".", literal=True)
        number = text.cast(pl.Float64, strict=False)
        parsed = pl.when(number.is_not_null()).then(text)
        key = f"decimal {column_map.decimal!r} and thousands {column_map.thousands!r}{where}"
        return _Conversion(col.name, parsed, raw, key)
    if col.kind == "enum" and col.name in tmap.codes:
        # Values without a translation are kept: contract validation names them.
        parsed = raw.replace(tmap.codes[col.name])
        return _Conversion(col.name, parsed, raw, f"{table}.codes.{col.name}")
    return None


def _unreadable(
    frame: pl.LazyFrame,
    conversions: list[_Conversion],
    *,
    source: str,
    file_name: str,
    table: str,
) -> list[Problem]:
    """A problem per mapped column holding values that the map's formats cannot read."""
    bad = {c.column: c.raw.is_not_null() & c.parsed.is_null() for c in conversions}
    counts = frame.select(e.sum().alias(k) for k, e in bad.items()).collect().row(0, named=True)
    failed = [c for c in conversions if counts[c.column]]
    if not failed:
        return []
    numbered = frame.with_row_index("__row", offset=2)  # row 1 is the header
    exprs = []
    for c in failed:
        mask = bad[c.column]
        exprs.append(c.raw.filter(mask).head(_MAX_EXAMPLES).implode().alias(f"v_{c.column}"))
        exprs.append(pl.col("__row").filter(mask).head(_MAX_EXAMPLES).implode().alias(c.column))
    row = numbered.select(exprs).collect().row(0, named=True)
    problems = []
    for c in failed:
        values = ", ".join(repr(v) for v in row[f"v_{c.column}"][:3])
        rows = tuple(f"{file_name} row {r}" for r in row[c.column])
        rule = f"cannot be read with the {c.key} of {source} (found {values})"
        problems.append(Problem(table, c.column, rule, int(counts[c.column]), rows))
    return problems
