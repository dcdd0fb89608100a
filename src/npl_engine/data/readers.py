"""Reading a dataset folder: find its table files, scan them lazily, validate and type them.

A dataset is a folder holding up to three tables, ``loans``, ``actions`` and ``payments``, each
as ``NAME.parquet`` or ``NAME.csv``. Files are scanned, never loaded whole: the frames of the
returned :class:`~npl_engine.data.dataset.Dataset` are lazy and read the files again when
collected.
"""

from __future__ import annotations

import re
import warnings
from datetime import date
from pathlib import Path

import polars as pl

from npl_engine.data.columns import ColumnMap, map_columns
from npl_engine.data.contract import TABLES
from npl_engine.data.dataset import Dataset, DatasetKind
from npl_engine.data.validation import RawTable, _table_order, validate_tables
from npl_engine.errors import AssumedDefaultWarning, ContractError, Problem

__all__ = ["FORMATS", "infer_kind", "read_dataset", "table_files", "validate_dataset"]

FORMATS: tuple[str, ...] = ("parquet", "csv")
"""File formats a table may come in, by extension."""

_KINDS: tuple[DatasetKind, ...] = ("book", "tape")
_NEEDS: dict[DatasetKind, tuple[str, ...]] = {
    "book": ("loans", "actions", "payments"),
    "tape": ("loans",),
}
_SEPARATORS = {";": "';'", "\t": "a tab", "|": "'|'"}
_DUPLICATED = re.compile(r"(?P<base>.+)_duplicated_\d+")


def table_files(folder: str | Path) -> dict[str, list[Path]]:
    """Files found for each contract table in a dataset folder.

    Parameters
    ----------
    folder
        The dataset folder.

    Returns
    -------
    dict[str, list[Path]]
        For each table name, the existing files among ``NAME.parquet`` and ``NAME.csv``
        (empty when the table is absent; two entries is an error that validation reports).
    """
    root = Path(folder)
    return {
        name: [root / f"{name}.{fmt}" for fmt in FORMATS if (root / f"{name}.{fmt}").is_file()]
        for name in TABLES
    }


def infer_kind(folder: str | Path) -> DatasetKind:
    """Guess the kind of dataset a folder holds, for when the user does not say.

    Parameters
    ----------
    folder
        The dataset folder.

    Returns
    -------
    DatasetKind
        ``"book"`` if an ``actions`` or ``payments`` file is present, else ``"tape"``.
    """
    files = table_files(folder)
    return "book" if files["actions"] or files["payments"] else "tape"


def _open(
    name: str, path: Path, *, columns: ColumnMap | None = None
) -> tuple[RawTable | None, list[Problem]]:
    """Scan one table file, read its header and apply the column map; problems if it cannot."""
    try:
        if path.suffix == ".parquet":
            frame = pl.scan_parquet(path)
        else:
            # Everything as text: validation, not the CSV parser, decides what a value means,
            # so a bad value becomes a problem naming its column instead of a parser error.
            frame = pl.scan_csv(path, infer_schema=False)
        schema = frame.collect_schema()
    except (pl.exceptions.PolarsError, OSError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        return None, [Problem(name, None, f"cannot read {path.name}: {first}")]

    if path.suffix == ".csv" and len(schema) == 1:
        header = schema.names()[0]
        found = [label for sep, label in _SEPARATORS.items() if sep in header]
        if found:
            rule = (
                f"{path.name} is not comma separated: its header reads as one column"
                f" {header[:60]!r}, separated by {found[0]}; save it with ',' as separator"
            )
            return None, [Problem(name, None, rule)]

    problems = []
    for column in schema.names():
        match = _DUPLICATED.fullmatch(column)
        if match and match["base"] in schema:
            rule = f"appears more than once in the header of {path.name}"
            problems.append(Problem(name, match["base"], rule))
    if columns is not None:
        try:
            frame, schema, unread = map_columns(
                frame, schema, table=name, column_map=columns, file_name=path.name
            )
        except (pl.exceptions.PolarsError, OSError) as exc:
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            return None, [Problem(name, None, f"cannot read {path.name}: {first}")]
        problems += unread
    return RawTable(frame=frame, schema=schema, source=path.name), problems


def _load(
    path: str | Path,
    *,
    kind: DatasetKind | None,
    as_of: date | None,
    columns: ColumnMap | None = None,
) -> tuple[Dataset | None, list[Problem]]:
    """Read and validate a dataset folder; the dataset is ``None`` when it has problems."""
    folder = Path(path)
    if kind is not None and kind not in _KINDS:
        msg = f"kind must be 'book' or 'tape', not {kind!r}"
        raise ValueError(msg)
    if not folder.exists():
        return None, [Problem("dataset", None, f"folder {folder} does not exist")]
    if not folder.is_dir():
        rule = f"{folder} is not a folder; a dataset is a folder holding loans.parquet or loans.csv"
        return None, [Problem("dataset", None, rule)]
    kind = kind or infer_kind(folder)

    problems: list[Problem] = []
    tables: dict[str, RawTable] = {}
    files = table_files(folder)
    known = {p.name for paths in files.values() for p in paths}
    others = sorted(
        p.name for p in folder.iterdir() if p.name not in known and not p.name.startswith(".")
    )
    for name, paths in files.items():
        if len(paths) > 1:
            rule = f"both {paths[0].name} and {paths[1].name} are present; keep only one"
            problems.append(Problem(name, None, rule))
        elif paths:
            table, found = _open(name, paths[0], columns=columns)
            problems += found
            if table is not None:
                tables[name] = table
        elif name in _NEEDS[kind]:
            rule = f"file is missing: expected {name}.parquet or {name}.csv in {folder}"
            if kind == "book" and name != "loans":
                rule += " (a book needs loans, actions and payments; a tape needs only loans)"
            if others:
                rule += f"; the folder holds {', '.join(others[:5])}"
            problems.append(Problem(name, None, rule))

    result = validate_tables(tables, kind=kind, as_of_date=as_of)
    # A value the column map cannot read is reported once, by the map, not again as empty.
    mapped = {(p.table, p.column) for p in problems if p.column is not None}
    problems += [p for p in result.problems if (p.table, p.column) not in mapped]
    if problems:
        return None, sorted(problems, key=_table_order)
    for note in assumed_defaults(folder, tables):
        warnings.warn(note, AssumedDefaultWarning, stacklevel=3)
    dataset = Dataset(
        loans=result.frames["loans"],
        actions=result.frames.get("actions"),
        payments=result.frames.get("payments"),
        as_of_date=result.as_of_date,
        source=folder,
    )
    return dataset, []


def assumed_defaults(folder: Path, tables: dict[str, RawTable]) -> list[str]:
    """What was assumed for each absent optional column that feeds a number, in words.

    One line per column the contract gives a default for (``accrued_interest``,
    ``collateral_value``, ``senior_liens``) that a table's file does not hold.
    """
    notes = []
    for name, table in tables.items():
        for col in TABLES[name].columns:
            if col.default is not None and col.name not in table.schema:
                taken = f"{col.default:g}"
                notes.append(
                    f"{folder}: {name} has no {col.name} column: taken as {taken} for every "
                    f"{name.removesuffix('s')} ({col.if_absent})"
                )
    return notes


def validate_dataset(
    path: str | Path,
    *,
    kind: DatasetKind | None = None,
    as_of: date | None = None,
    columns: ColumnMap | None = None,
) -> list[Problem]:
    """Every way a dataset folder breaks the data contract, without raising.

    Parameters
    ----------
    path
        The dataset folder.
    kind
        ``"book"`` (needs loans, actions and payments) or ``"tape"`` (needs loans, one common
        ``cutoff_date``); ``None`` to infer it with :func:`infer_kind`.
    as_of
        The day the history was extracted (the dataset's ``as_of_date``); ``None`` for the latest payment or action date.
    columns
        The seller's spelling of the tables (see :mod:`npl_engine.data.columns`); ``None``
        when the files use the contract's names and formats.

    Returns
    -------
    list[Problem]
        All problems found, folder-level first, then by table; empty when the dataset is valid.

    Examples
    --------
    >>> validate_dataset("no/such/folder")
    [Problem(table='dataset', column=None, rule='folder no/such/folder does not exist', n_rows=0, examples=())]
    """  # noqa: E501 - doctest output is one line
    return _load(path, kind=kind, as_of=as_of, columns=columns)[1]


def read_dataset(
    path: str | Path,
    *,
    kind: DatasetKind | None = None,
    as_of: date | None = None,
    columns: ColumnMap | None = None,
) -> Dataset:
    """Read a dataset folder, check it against the data contract and type it.

    Parameters
    ----------
    path
        Folder holding ``loans`` and, for a book, ``actions`` and ``payments``, each as
        ``NAME.parquet`` or ``NAME.csv``.
    kind
        ``"book"`` or ``"tape"``; ``None`` infers it: a book when an ``actions`` or
        ``payments`` file is present.
    as_of
        The day the history was extracted (the dataset's ``as_of_date``). ``None`` takes the
        latest date in ``payments`` and ``actions`` (``None`` when there are none, as for most
        tapes).
    columns
        The seller's spelling of the tables: column names, date and number formats, code
        translations (see :mod:`npl_engine.data.columns`); ``None`` when the files use the
        contract's.

    Returns
    -------
    Dataset
        Lazy frames with contract columns in contract order and contract types (enums as
        ``pl.Enum``), ``accrued_interest``, ``collateral_value`` and ``senior_liens`` filled with
        0 where absent or null, absent optional columns added as nulls, and unknown columns
        kept after the contract columns.

    Raises
    ------
    ContractError
        When the folder or any table breaks the contract; it lists every problem found.

    Notes
    -----
    CSV files are comma separated with a header row, ISO dates (``YYYY-MM-DD``), ``.`` as
    decimal separator and an empty field for null. Validation scans each table about twice;
    the frames returned scan the files again each time they are collected.

    Examples
    --------
    >>> read_dataset("no/such/folder")
    Traceback (most recent call last):
    ...
    npl_engine.errors.ContractError: the dataset breaks the data contract (1 problem(s)):
      - dataset: folder no/such/folder does not exist
    """
    dataset, problems = _load(path, kind=kind, as_of=as_of, columns=columns)
    if dataset is None:
        raise ContractError(problems)
    return dataset
