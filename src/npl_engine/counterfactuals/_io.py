"""Reading loan-id lists and writing counterfactual results (the package's only file I/O)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from npl_engine.counterfactuals._search import CounterfactualResult, summarize
from npl_engine.errors import NplError

__all__ = ["read_loan_ids", "write_result"]


def read_loan_ids(path: str | Path) -> list[str]:
    """Loan ids from a text file: one per line; blank lines and a ``loan_id`` header skipped.

    Raises
    ------
    NplError
        If the file cannot be read, holds no id, or repeats one (naming the line).
    """
    path = Path(path)
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        msg = f"{path}: cannot read the loan-id file: {exc}"
        raise NplError(msg) from exc
    ids: list[str] = []
    seen: dict[str, int] = {}
    for number, line in enumerate(lines, start=1):
        value = line.strip().strip('"')
        if not value or (not ids and value == "loan_id"):
            continue
        if value in seen:
            msg = f"{path}: line {number} repeats loan_id {value!r} (first on line {seen[value]})"
            raise NplError(msg)
        seen[value] = number
        ids.append(value)
    if not ids:
        msg = f"{path}: no loan_id in the file (one per line)"
        raise NplError(msg)
    return ids


def write_result(result: CounterfactualResult, path: str | Path) -> Path:
    """Write counterfactuals as JSON (everything) or Parquet (the counterfactual rows).

    The format follows the suffix (``.json`` or ``.parquet``). The file is written beside its
    target and renamed into place, so a reader never sees half a file and a failure leaves any
    earlier file as it was.
    """
    path = Path(path)
    if path.suffix not in (".json", ".parquet"):
        msg = f"{path}: --out must end in .json or .parquet"
        raise NplError(msg)
    if path.is_dir():
        msg = f"{path} is a folder; --out takes a file name ending in .json or .parquet"
        raise NplError(msg)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    try:
        if path.suffix == ".parquet":
            result.counterfactuals.write_parquet(tmp)
        else:
            body: dict[str, Any] = {
                "settings": {
                    k: getattr(result.settings, k) for k in result.settings.__dataclass_fields__
                },
                "summary": summarize(result),
                "loans": result.loans.to_dicts(),
                "counterfactuals": result.counterfactuals.to_dicts(),
            }
            tmp.write_text(json.dumps(body, indent=2, default=str) + "\n", encoding="utf-8")
        tmp.replace(path)
    finally:
        tmp.unlink(missing_ok=True)
    return path
