"""Excel workbooks a buyer opens: frames as formatted sheets, written whole or not at all.

One writer, :func:`write_workbook`, used by the stratification tables and by the valuation's
workbook. Sheets hold one or more tables each (stacked, each under its title); money is shown
with thousands separators, shares and rates as percentages; headers are frozen.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Mapping, Sequence
from pathlib import Path

import polars as pl

__all__ = [
    "EXCEL_MAX_ROWS",
    "MAX_SHEET_NAME",
    "is_percent_column",
    "sheet_name",
    "write_workbook",
]

MAX_SHEET_NAME = 31
"""Excel's limit on the length of a sheet name."""

EXCEL_MAX_ROWS = 1_048_575
"""Data rows an Excel sheet holds below its header row."""

_PERCENT_NAMES = re.compile(
    r"(^|_)(share|pct|pct_gbv|rate|coverage|irr|yield|recovery|p_recover|p_loss|change_pct|lgd|"
    r"coupon|loss_share)(_|$)"
)
_BAD_SHEET_CHARS = re.compile(r"[\[\]:*?/\\]")

Tables = pl.DataFrame | Sequence[tuple[str, pl.DataFrame]]


def is_percent_column(name: str) -> bool:
    """Whether a column holds a share or a rate (shown as a percentage in a workbook).

    >>> [is_percent_column(c) for c in ("gbv_share", "price_pct_gbv", "target_irr", "gbv")]
    [True, True, True, False]
    """
    return bool(_PERCENT_NAMES.search(name))


def sheet_name(name: str) -> str:
    r"""``name`` as a valid Excel sheet name: at most 31 characters, none of ``[]:*?/\``.

    >>> sheet_name("months_since_default/extra")
    'months_since_default_extra'
    """
    return _BAD_SHEET_CHARS.sub("_", name)[:MAX_SHEET_NAME] or "sheet"


def _formats(frame: pl.DataFrame) -> dict[str, str]:
    out: dict[str, str] = {}
    for name, dtype in frame.schema.items():
        if dtype.is_float():
            out[name] = "0.0%" if is_percent_column(name) else "#,##0.00"
        elif dtype.is_integer():
            out[name] = "#,##0" if name not in ("month", "order", "run", "path") else "0"
    return out


def write_workbook(path: str | Path, sheets: Mapping[str, Tables]) -> Path:
    """Write ``sheets`` to one ``.xlsx`` workbook, atomically.

    Parameters
    ----------
    path
        The workbook to write; parents are created, an existing file is replaced.
    sheets
        Sheet name to content: a frame, or a sequence of ``(title, frame)`` pairs stacked on
        the sheet, each under its title with two blank rows between them. Names are made
        valid with :func:`sheet_name`.

    Returns
    -------
    Path
        ``path``.

    Notes
    -----
    Float columns whose names mark a share or a rate (:func:`is_percent_column`) are formatted
    as percentages, other floats with thousands separators and two decimals; the underlying
    cells keep full precision. The file is written beside the target under a temporary name
    and renamed into place, so no reader ever sees half a workbook.

    Examples
    --------
    >>> import tempfile
    >>> frame = pl.DataFrame({"segment": ["auto"], "gbv": [1.5e6], "gbv_share": [1.0]})
    >>> with tempfile.TemporaryDirectory() as tmp:
    ...     out = write_workbook(Path(tmp) / "book.xlsx", {"segment": frame})
    ...     sorted(pl.read_excel(out, sheet_id=0))
    ['segment']
    """
    from xlsxwriter import Workbook  # noqa: PLC0415 - only commands that write Excel need it

    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.{uuid.uuid4().hex}.tmp")
    try:
        with Workbook(str(tmp)) as book:
            bold = book.add_format({"bold": True})
            for name, content in sheets.items():
                sheet = book.add_worksheet(sheet_name(name))
                if isinstance(content, pl.DataFrame):
                    content.write_excel(
                        book,
                        sheet,
                        column_formats=_formats(content),  # type: ignore[arg-type]
                        autofit=True,
                        freeze_panes=(1, 0),
                    )
                    continue
                row = 0
                for title, frame in content:
                    sheet.write(row, 0, title, bold)
                    frame.write_excel(
                        book,
                        sheet,
                        position=(row + 1, 0),
                        column_formats=_formats(frame),  # type: ignore[arg-type]
                        autofit=True,
                    )
                    row += frame.height + 4
        tmp.replace(out)
    finally:
        tmp.unlink(missing_ok=True)
    return out
