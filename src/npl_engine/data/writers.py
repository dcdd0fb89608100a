"""Writing a dataset folder atomically: all of it or, on failure, nothing.

:func:`write_dataset` is what most callers need. :func:`atomic_folder` and
:func:`write_tables` are its two halves, for writers that put more beside the tables (the
simulator adds its ``truth/`` folder) and still want the whole folder to appear at once.
:func:`write_table` writes one result table in the format its file name says.
"""

from __future__ import annotations

import shutil
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import polars as pl

from npl_engine.data.contract import TABLES
from npl_engine.data.readers import FORMATS
from npl_engine.errors import NplError
from npl_engine.excel import EXCEL_MAX_ROWS

__all__ = ["TABLE_SUFFIXES", "atomic_folder", "write_dataset", "write_table", "write_tables"]

Frame = pl.DataFrame | pl.LazyFrame


def write_dataset(
    folder: str | Path,
    *,
    loans: Frame,
    actions: Frame | None = None,
    payments: Frame | None = None,
    fmt: str = "parquet",
) -> None:
    """Write tables to a dataset folder as ``NAME.parquet`` or ``NAME.csv``, atomically.

    Parameters
    ----------
    folder
        Target folder. Parents are created. An existing folder is replaced as a whole, but only
        if it holds nothing but dataset table files.
    loans, actions, payments
        The tables; ``None`` leaves a table out. Lazy frames are streamed to disk.
    fmt
        ``"parquet"`` or ``"csv"`` (comma separated, header row, ISO dates, ``.`` decimal,
        empty field for null: the contract's CSV dialect).

    Raises
    ------
    ValueError
        If ``fmt`` is not a supported format.
    NplError
        If ``folder`` is a file, or a folder holding files other than dataset tables (they are
        never deleted).

    Notes
    -----
    The tables are written into a hidden temporary folder beside the target, which is then
    renamed into place, so a reader never sees a half-written dataset and a failure leaves the
    previous content untouched. Frames are written as given: no validation happens here
    (see :func:`npl_engine.data.read_dataset`).

    Examples
    --------
    >>> import tempfile, datetime as dt
    >>> loans = pl.DataFrame({"loan_id": ["L1"], "cutoff_date": [dt.date(2024, 12, 31)]})
    >>> with tempfile.TemporaryDirectory() as tmp:
    ...     write_dataset(Path(tmp) / "tape", loans=loans, fmt="csv")
    ...     print(sorted(p.name for p in (Path(tmp) / "tape").iterdir()))
    ['loans.csv']
    """
    _check_format(fmt)
    with atomic_folder(folder) as staging:
        write_tables(staging, loans=loans, actions=actions, payments=payments, fmt=fmt)


def write_tables(
    folder: str | Path,
    *,
    loans: Frame,
    actions: Frame | None = None,
    payments: Frame | None = None,
    fmt: str = "parquet",
) -> None:
    """Write tables into an existing folder as ``NAME.parquet`` or ``NAME.csv``; not atomic.

    Parameters
    ----------
    folder
        An existing folder, typically the staging folder of :func:`atomic_folder`.
    loans, actions, payments
        The tables; ``None`` leaves a table out. Lazy frames are streamed to disk.
    fmt
        ``"parquet"`` or ``"csv"``.

    Raises
    ------
    ValueError
        If ``fmt`` is not a supported format.
    """
    _check_format(fmt)
    frames = {"loans": loans, "actions": actions, "payments": payments}
    for name, frame in frames.items():
        if frame is not None:
            _write(frame, Path(folder) / f"{name}.{fmt}", fmt=fmt)


@contextmanager
def atomic_folder(folder: str | Path, *, allowed: frozenset[str] = frozenset()) -> Iterator[Path]:
    """Give a staging folder that replaces ``folder`` when the block ends without error.

    Parameters
    ----------
    folder
        Target folder. Parents are created.
    allowed
        Names, besides dataset table files, that an existing ``folder`` may hold and still be
        replaced (for example ``{"truth"}``). Anything else makes the call refuse, so a
        mistyped target never deletes a user's files.

    Yields
    ------
    Path
        An empty hidden folder beside the target, to write into.

    Raises
    ------
    NplError
        If ``folder`` is a file, or holds entries that are neither tables nor ``allowed``.

    Notes
    -----
    On success the staging folder is renamed to ``folder`` (an existing one is moved aside
    first, then deleted); on any error the staging folder is deleted and ``folder`` is left
    as it was.
    """
    target = Path(folder)
    _check_replaceable(target, allowed=allowed)
    target.parent.mkdir(parents=True, exist_ok=True)
    tag = uuid.uuid4().hex[:8]
    staging = target.parent / f".{target.name}.{tag}.tmp"
    staging.mkdir()
    try:
        yield staging
        _swap_in(staging, target, tag=tag)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise


def _check_format(fmt: str) -> None:
    if fmt not in FORMATS:
        msg = f"fmt must be one of {', '.join(FORMATS)}, not {fmt!r}"
        raise ValueError(msg)


def _check_replaceable(target: Path, *, allowed: frozenset[str]) -> None:
    if not target.exists():
        return
    if not target.is_dir():
        msg = f"cannot write a dataset to {target}: it is a file, not a folder"
        raise NplError(msg)
    tables = {f"{name}.{fmt}" for name in TABLES for fmt in FORMATS}
    foreign = sorted(p.name for p in target.iterdir() if p.name not in tables | allowed)
    if foreign:
        msg = (
            f"refusing to replace {target}: it holds files that are not dataset tables"
            f" ({', '.join(foreign[:5])}); remove them or choose another folder"
        )
        raise NplError(msg)


def _write(frame: Frame, path: Path, *, fmt: str) -> None:
    if isinstance(frame, pl.LazyFrame):
        if fmt == "csv":
            frame.sink_csv(path)
        else:
            frame.sink_parquet(path)
    elif fmt == "csv":
        frame.write_csv(path)
    else:
        frame.write_parquet(path)


def _swap_in(staging: Path, target: Path, *, tag: str) -> None:
    """Rename ``staging`` to ``target``, moving an existing target aside first."""
    if not target.exists():
        staging.rename(target)
        return
    old = target.parent / f".{target.name}.{tag}.old"
    target.rename(old)
    try:
        staging.rename(target)
    except BaseException:
        old.rename(target)
        raise
    shutil.rmtree(old, ignore_errors=True)


#: File suffixes :func:`write_table` writes, each naming its format.
TABLE_SUFFIXES: tuple[str, ...] = (".parquet", ".csv", ".json", ".xlsx")


def write_table(
    frame: pl.DataFrame,
    path: str | Path,
    *,
    before_publish: Callable[[], object] | None = None,
) -> Path:
    """Write ``frame`` to ``path`` in the format its suffix names (see :data:`TABLE_SUFFIXES`).

    Parquet, CSV (header row, ISO dates; a struct column as JSON text, a list column as
    comma-separated text), JSON (an array of one object per row) or Excel (one sheet, so at
    most :data:`~npl_engine.excel.EXCEL_MAX_ROWS` rows). The file is written beside ``path``
    and renamed into place, so a reader never sees half a file; ``before_publish`` (e.g.
    appending a decision record) runs between the two, and if it fails nothing is published.

    Returns
    -------
    Path
        ``path``.

    Raises
    ------
    NplError
        If the suffix names no table format, or the table has more rows than an Excel sheet.

    Examples
    --------
    >>> import tempfile
    >>> folder = Path(tempfile.mkdtemp())
    >>> pl.read_csv(write_table(pl.DataFrame({"a": [1, 2]}), folder / "t.csv"))["a"].to_list()
    [1, 2]
    """
    out = Path(path)
    suffix = out.suffix.lower()
    if suffix not in TABLE_SUFFIXES:
        named = f"suffix {out.suffix!r}" if out.suffix else "no suffix"
        msg = f"{out}: {named} names no table format; give a file ending in " + ", ".join(
            TABLE_SUFFIXES
        )
        raise NplError(msg)
    if suffix == ".xlsx" and frame.height > EXCEL_MAX_ROWS:
        msg = (
            f"{out}: {frame.height:,} rows do not fit in an Excel sheet "
            f"(at most {EXCEL_MAX_ROWS:,}); write .parquet or .csv"
        )
        raise NplError(msg)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.tmp")
    try:
        if suffix == ".parquet":
            frame.write_parquet(tmp)
        elif suffix == ".json":
            frame.write_json(tmp)
        else:
            flat = frame.with_columns(
                pl.col(c).struct.json_encode()
                if isinstance(frame.schema[c], pl.Struct)
                else pl.col(c).cast(pl.List(pl.String)).list.join(", ")
                for c in frame.columns
                if isinstance(frame.schema[c], pl.Struct | pl.List)
            )
            if suffix == ".csv":
                flat.write_csv(tmp)
            else:
                flat.write_excel(tmp, autofit=True)
        if before_publish is not None:
            before_publish()
        tmp.replace(out)
    finally:
        tmp.unlink(missing_ok=True)
    return out
