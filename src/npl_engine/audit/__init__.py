"""Decision records: what ran, for whom, on which model and input, and what it decided per loan.

Every scoring, valuation, policy and counterfactual run (CLI or service) appends a record to an
embedded DuckDB database, in one transaction. :func:`open_reader` reads them, through the
service's socket while ``npl serve`` holds the file. See ``docs/audit.md``.
"""

from npl_engine.audit._record import (
    bytes_fingerprint,
    decision_frame,
    files_fingerprint,
    new_run_id,
    os_caller,
    record_run,
)
from npl_engine.audit._socket import ReaderSocket, open_reader, serve_readers, socket_path
from npl_engine.audit._store import (
    AUDIT_DB_ENV,
    SCHEMA_VERSION,
    AuditReader,
    AuditStore,
    DatabaseInUse,
    RunRecord,
    decision_rows,
    default_audit_path,
    run_rows,
)

__all__ = [
    "AUDIT_DB_ENV",
    "SCHEMA_VERSION",
    "AuditReader",
    "AuditStore",
    "DatabaseInUse",
    "ReaderSocket",
    "RunRecord",
    "bytes_fingerprint",
    "decision_frame",
    "decision_rows",
    "default_audit_path",
    "files_fingerprint",
    "new_run_id",
    "open_reader",
    "os_caller",
    "record_run",
    "run_rows",
    "serve_readers",
    "socket_path",
]
