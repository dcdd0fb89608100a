"""Building decision records: ids, fingerprints, callers and the per-loan rows."""

from __future__ import annotations

import getpass
import hashlib
import secrets
from collections.abc import Iterable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import polars as pl

from npl_engine import __version__
from npl_engine.audit._store import AuditStore, RunRecord, default_audit_path
from npl_engine.data.contract import LOANS

__all__ = [
    "bytes_fingerprint",
    "decision_frame",
    "files_fingerprint",
    "new_run_id",
    "os_caller",
    "record_run",
]

_CHUNK = 1 << 20
#: Table files whose bytes make a dataset's fingerprint.
_DATASET_TABLES = ("loans", "actions", "payments")


def new_run_id(now: datetime | None = None) -> str:
    """A unique run id that sorts by time: ``20261130T101502Z-3f9a1c2b7d``."""
    now = now or datetime.now(UTC)
    return f"{now:%Y%m%dT%H%M%S}Z-{secrets.token_hex(5)}"


def os_caller() -> str:
    """The operating-system user running this process (``unknown`` if it cannot be told)."""
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return "unknown"


def files_fingerprint(folder: str | Path, *, dataset: bool = False) -> str:
    """sha256 of a folder's files: their paths relative to it and their bytes, in name order.

    Parameters
    ----------
    folder
        A model folder, or a dataset folder.
    dataset
        Only the dataset's table files (``loans``, ``actions``, ``payments``), not what else
        the folder holds (such as ``truth/``).
    """
    root = Path(folder)
    digest = hashlib.sha256()
    files = sorted(p for p in root.rglob("*") if p.is_file() and not p.name.startswith("."))
    if dataset:
        files = [p for p in files if p.parent == root and p.stem in _DATASET_TABLES]
    for path in files:
        digest.update(path.relative_to(root).as_posix().encode() + b"\0")
        with path.open("rb") as f:
            while block := f.read(_CHUNK):
                digest.update(block)
    return digest.hexdigest()


def bytes_fingerprint(body: bytes) -> str:
    """sha256 of a request body."""
    return hashlib.sha256(body).hexdigest()


def decision_frame(
    loans: pl.DataFrame,
    outputs: pl.DataFrame,
    reasons: pl.DataFrame | None = None,
) -> pl.DataFrame:
    """Per-loan rows of a decision record: contract loans columns, outputs and reasons as JSON.

    Parameters
    ----------
    loans
        Validated contract ``loans``: the inputs the run used. Extra columns are not recorded.
    outputs
        ``loan_id`` and one column per output (numbers or text), one row per loan.
    reasons
        ``loan_id`` and one column per reason code (e.g. ``reason_1``), or ``None`` when no
        reason codes were computed.

    Returns
    -------
    pl.DataFrame
        The contract columns of ``loans`` in their order, then ``outputs`` (a JSON object per
        loan) and ``reasons`` (a JSON object, or null). Loans absent from ``outputs`` get null
        outputs.
    """
    keep = [c for c in LOANS.names if c in loans.columns]
    frame = loans.select(keep)
    for name, table in (("outputs", outputs), ("reasons", reasons)):
        if table is None:
            frame = frame.with_columns(pl.lit(None, pl.String).alias(name))
            continue
        values = [c for c in table.columns if c != "loan_id"]
        encoded = table.select("loan_id", pl.struct(values).struct.json_encode().alias(name))
        frame = frame.join(encoded, on="loan_id", how="left", maintain_order="left")
    return frame


def record_run(
    *,
    command: str,
    decisions: pl.DataFrame | Iterable[pl.DataFrame],
    input_fingerprint: str,
    model_dir: str | Path | None = None,
    model_fingerprint: str | None = None,
    parameters: dict[str, Any] | None = None,
    caller: str | None = None,
    caller_kind: str = "os_user",
    db: str | Path | None = None,
    store: AuditStore | None = None,
) -> str:
    """Append one run and its per-loan decisions to the audit database, in one transaction.

    Parameters
    ----------
    command
        What ran (``score``, ``value``, ``policy``, ``counterfactual``, ...).
    decisions
        From :func:`decision_frame` (or frames of that form, appended in order).
    input_fingerprint
        sha256 of the input (:func:`files_fingerprint` of the dataset, with ``dataset=True``).
    model_dir
        The model folder used, if any; recorded as the model id (its resolved path).
    model_fingerprint
        sha256 of the model's files; computed from ``model_dir`` when not given.
    parameters
        Options that shaped the outputs (JSON-serialisable).
    caller, caller_kind
        Who asked; by default the operating-system user.
    db
        The database file; default :func:`~npl_engine.audit.default_audit_path`.
    store
        An open store to write to instead of ``db``.

    Returns
    -------
    str
        The new run's id.

    Examples
    --------
    >>> import tempfile
    >>> loans = pl.DataFrame({"loan_id": ["L1"], "segment": ["auto"]})
    >>> rows = decision_frame(loans, pl.DataFrame({"loan_id": ["L1"], "p_recover": [0.25]}))
    >>> with tempfile.TemporaryDirectory() as tmp:
    ...     run_id = record_run(command="score", decisions=rows, input_fingerprint="0" * 64,
    ...                         db=Path(tmp) / "audit.duckdb")
    >>> len(run_id)
    27
    """
    model_id = str(Path(model_dir).resolve()) if model_dir is not None else None
    if model_fingerprint is None and model_dir is not None:
        model_fingerprint = files_fingerprint(model_dir)
    record = RunRecord(
        run_id=new_run_id(),
        recorded_at=datetime.now(UTC),
        caller=caller or os_caller(),
        caller_kind=caller_kind,
        command=command,
        model_id=model_id,
        model_fingerprint=model_fingerprint,
        input_fingerprint=input_fingerprint,
        engine_version=__version__,
        parameters=parameters or {},
        decisions=decisions,
    )
    if store is not None:
        store.append([record])
    else:
        with AuditStore(db if db is not None else default_audit_path()) as opened:
            opened.append([record])
    return record.run_id
