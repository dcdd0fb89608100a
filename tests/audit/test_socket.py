"""Reading decision records through the socket of the process that holds the database."""

from __future__ import annotations

import os
import socket
import stat
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import polars as pl
import pytest
from polars.testing import assert_frame_equal

from npl_engine.audit import (
    AuditStore,
    DatabaseInUse,
    decision_frame,
    open_reader,
    record_run,
    socket_path,
)
from npl_engine.data.simulator import SimulationSettings, simulate
from npl_engine.errors import NplError

REPO = Path(__file__).resolve().parents[2]

# Holds the database as the service's recording process does (serving readers or not) until
# its stdin closes.
_HOLDER = textwrap.dedent(
    """
    import sys
    from npl_engine.audit import AuditStore, serve_readers

    store = AuditStore(sys.argv[1])
    readers = serve_readers(store) if sys.argv[2] == "serve" else None
    print("holding", flush=True)
    sys.stdin.read()
    if readers is not None:
        readers.close()
    store.close()
    """
)


def _holder(db: Path, mode: str) -> Iterator[subprocess.Popen[str]]:
    process = subprocess.Popen(
        [sys.executable, "-c", _HOLDER, str(db), mode],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": str(REPO / "src")},
    )
    assert process.stdout is not None
    assert process.stdin is not None
    try:
        assert process.stdout.readline().strip() == "holding"
        yield process
    finally:
        process.stdin.close()
        process.wait(timeout=30)


def _record(db: Path, n: int, seed: int) -> str:
    loans = simulate(SimulationSettings(n_loans=n, seed=seed, kind="tape")).loans
    outputs = loans.select("loan_id", p_recover=pl.col("outstanding_principal") / 1e6)
    return record_run(
        command="score",
        decisions=decision_frame(loans, outputs),
        input_fingerprint="b" * 64,
        caller="examiner",
        db=db,
    )


@pytest.fixture
def recorded(tmp_path: Path) -> tuple[Path, list[str]]:
    """A database of two runs (30 and 12 loans), readable only by its owner."""
    db = tmp_path / "audit.duckdb"
    runs = [_record(db, 30, 1), _record(db, 12, 2)]
    db.chmod(0o600)
    return db, runs


def test_records_read_through_the_socket_are_those_of_the_file(
    recorded: tuple[Path, list[str]], tmp_path: Path
) -> None:
    """While another process holds the file, list, show and export read the same records."""
    db, (first, second) = recorded
    with open_reader(db) as direct:
        assert direct.via is None
        runs = direct.runs()
        one = direct.run(first)
        decisions = direct.decisions(first)
        single = direct.decisions(first, seq=7)
        direct.export(tmp_path / "direct.parquet")
    for holder in _holder(db, "serve"):
        with pytest.raises(DatabaseInUse):
            AuditStore(db, read_only=True, wait_seconds=0)
        with open_reader(db) as served:
            assert served.via == "the running service"
            assert_frame_equal(served.runs(), runs)
            assert served.runs(limit=1, command="score")["run_id"].to_list() == [second]
            assert served.run(first) == one
            assert served.run("nope") is None
            assert_frame_equal(served.decisions(first), decisions)
            assert_frame_equal(served.decisions(first, seq=7), single)
            assert served.export(tmp_path / "served.parquet") == 42
            with pytest.raises(NplError, match="unknown query 'drop'"):
                served.batches("drop", {})
            with pytest.raises(NplError, match="limit must be a whole number"):
                served.batches("runs", {"limit": "1; DROP TABLE runs"})
        assert holder.poll() is None
    assert_frame_equal(
        pl.read_parquet(tmp_path / "served.parquet"), pl.read_parquet(tmp_path / "direct.parquet")
    )
    assert not socket_path(db).exists()  # removed when the holder closed it


def test_the_socket_lets_in_whom_the_file_lets_in(recorded: tuple[Path, list[str]]) -> None:
    """Owner only for a private file; everyone when everyone may read the file."""
    db, _ = recorded
    for file_mode, socket_mode in ((0o600, 0o600), (0o644, 0o666)):
        db.chmod(file_mode)
        for _ in _holder(db, "serve"):
            assert stat.S_ISSOCK(socket_path(db).stat().st_mode)
            assert stat.S_IMODE(socket_path(db).stat().st_mode) == socket_mode


def test_a_holder_without_a_socket_is_reported_in_use(recorded: tuple[Path, list[str]]) -> None:
    """A socket left by a killed service is not mistaken for a live one: the file is in use."""
    db, _ = recorded
    stale = socket.socket(socket.AF_UNIX)
    stale.bind(str(socket_path(db)))
    stale.close()  # the file stays; nobody listens
    for _ in _holder(db, "hold"):
        with pytest.raises(DatabaseInUse, match="is in use by another process"):
            open_reader(db, wait_seconds=0.5)
    # The next service replaces the stale socket.
    for _ in _holder(db, "serve"):
        with open_reader(db) as served:
            assert served.via == "the running service"
            assert served.runs().height == 2
