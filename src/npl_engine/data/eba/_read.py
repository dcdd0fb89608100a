"""Reading a template set: a folder of CSV files or a workbook, one template per file or sheet."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import polars as pl

from npl_engine.data.eba._templates import TEMPLATES, Template, field_key
from npl_engine.errors import NplError

__all__ = ["TemplateSet", "TemplateTable", "read_template_set"]


@dataclass(frozen=True, slots=True)
class TemplateTable:
    """One template as read: every value as text, recognised headers renamed to field labels.

    Parameters
    ----------
    template
        The template.
    frame
        Its rows; recognised columns carry their field's label, others their own header.
    source
        Where it came from (``loan.csv``, or ``tape.xlsx[Loan]``).
    unknown
        Headers that are no field the importer reads.
    """

    template: Template
    frame: pl.DataFrame
    source: str
    unknown: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class TemplateSet:
    """The templates found, and the files or sheets that are no template."""

    tables: dict[str, TemplateTable]
    ignored: tuple[str, ...]


def _template_for(name: str) -> Template | None:
    key = field_key(name)
    for template in TEMPLATES.values():
        if key in template.keys:
            return template
    return None


def _as_text(frame: pl.DataFrame) -> pl.DataFrame:
    """Every column as text: dates as ISO, numbers as written by Polars, empty text as null."""
    exprs = []
    for name, dtype in frame.schema.items():
        col = pl.col(name)
        if isinstance(dtype, pl.Datetime):
            col = col.dt.date()
        if isinstance(dtype, pl.Float64 | pl.Float32):
            # Whole numbers from a spreadsheet come as floats: write 12 rather than 12.0.
            whole = col.is_finite() & (col == col.floor()) & (col.abs() < 2**53)
            col = (
                pl.when(whole)
                .then(col.cast(pl.Int64).cast(pl.String))
                .otherwise(col.cast(pl.String))
            )
        text = col.cast(pl.String).str.strip_chars()
        exprs.append(pl.when(text == "").then(None).otherwise(text).alias(name))
    return frame.select(exprs)


def _recognise(template: Template, frame: pl.DataFrame, source: str) -> TemplateTable:
    renames: dict[str, str] = {}
    unknown: list[str] = []
    for header in frame.columns:
        key = field_key(header)
        match = next((f for f in template.fields if key in f.keys), None)
        if match is None:
            unknown.append(header)
            continue
        if match.label in renames.values():
            first = next(h for h, label in renames.items() if label == match.label)
            msg = (
                f"{template.title} ({source}): columns {first!r} and {header!r} are both field"
                f" {match.name}; keep one"
            )
            raise NplError(msg)
        renames[header] = match.label
    frame = _as_text(frame).rename(renames)
    return TemplateTable(template, frame, source, tuple(unknown))


def read_template_set(path: str | Path) -> TemplateSet:
    """Read an EBA template set.

    Parameters
    ----------
    path
        A folder holding one CSV file per template (``loan.csv``, ``counterparty.csv``, ...),
        or an Excel workbook (``.xlsx``) holding one sheet per template. Files and sheets are
        recognised by name (see :data:`TEMPLATES` and docs/import.md).

    Returns
    -------
    TemplateSet
        The templates found, every value as text.

    Raises
    ------
    NplError
        If the path does not exist, a file cannot be read, or two files mean one template.
    """
    source = Path(path)
    if not source.exists():
        msg = f"{source} does not exist; give a folder of template CSV files or an .xlsx workbook"
        raise NplError(msg)
    raw: dict[str, pl.DataFrame] = {}
    if source.is_dir():
        for file in sorted(source.glob("*.csv")):
            try:
                raw[file.name] = pl.read_csv(file, infer_schema=False)
            except (pl.exceptions.PolarsError, OSError) as exc:
                msg = f"cannot read {file}: {str(exc).strip().splitlines()[0]}"
                raise NplError(msg) from exc
        names = {name: Path(name).stem for name in raw}
    elif source.suffix.lower() in {".xlsx", ".xlsm", ".xls"}:
        try:
            sheets = pl.read_excel(source, sheet_id=0, engine="calamine")
        except Exception as exc:
            msg = f"cannot read {source} as an Excel workbook: {str(exc).strip().splitlines()[0]}"
            raise NplError(msg) from exc
        raw = {f"{source.name}[{sheet}]": frame for sheet, frame in sheets.items()}
        names = {f"{source.name}[{sheet}]": sheet for sheet in sheets}
    else:
        msg = f"{source} is neither a folder of template CSV files nor an .xlsx workbook"
        raise NplError(msg)

    tables: dict[str, TemplateTable] = {}
    ignored: list[str] = []
    for label, frame in raw.items():
        template = _template_for(names[label])
        if template is None:
            ignored.append(label)
            continue
        if template.name in tables:
            msg = f"{tables[template.name].source} and {label} are both {template.title}; keep one"
            raise NplError(msg)
        tables[template.name] = _recognise(template, frame, label)
    return TemplateSet(tables, tuple(ignored))
