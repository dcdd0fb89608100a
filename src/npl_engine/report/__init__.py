"""The visual report: one self-contained HTML file for an investment committee.

Portfolio composition, expected collections curves, price by scenario and its Monte Carlo
distribution, SHAP importance, action effects and the plan's value, fairness and the model card,
as inline SVG charts in a page that makes no network request. See ``docs/report.md``.
"""

from __future__ import annotations

import uuid
from pathlib import Path

from npl_engine.report._build import ReportData, gather
from npl_engine.report._html import render

__all__ = ["ReportData", "gather", "render", "write_report"]


def write_report(html: str, path: str | Path) -> Path:
    """Write ``html`` to ``path`` whole or not at all (a temporary file renamed into place)."""
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.{uuid.uuid4().hex}.tmp")
    try:
        tmp.write_text(html, encoding="utf-8")
        tmp.replace(out)
    finally:
        tmp.unlink(missing_ok=True)
    return out
