"""Decision records: what `npl score` and `npl value` record, export, refusals, and crash safety."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import textwrap
from datetime import UTC, datetime
from pathlib import Path

import duckdb
import polars as pl
import pytest
from click.testing import CliRunner, Result
from polars.testing import assert_frame_equal

from npl_engine import __version__
from npl_engine.audit import (
    AuditStore,
    RunRecord,
    decision_frame,
    decision_rows,
    files_fingerprint,
    new_run_id,
    record_run,
    run_rows,
)
from npl_engine.cli import main
from npl_engine.data import read_dataset
from npl_engine.data.contract import LOANS
from npl_engine.data.simulator import SimulationSettings, simulate, write_simulation
from npl_engine.errors import NplError

REPO = Path(__file__).resolve().parents[2]


def _npl(*args: str | Path) -> Result:
    return CliRunner().invoke(main, [str(a) for a in args])


@pytest.fixture(scope="module")
def work(tmp_path_factory: pytest.TempPathFactory, small_model_and_tape: tuple[Path, Path]) -> Path:
    """The shared small model (tests/conftest.py) and a 400-loan tape, in one folder."""
    root = tmp_path_factory.mktemp("audit")
    shutil.copytree(small_model_and_tape[0], root / "model")
    write_simulation(simulate(SimulationSettings(n_loans=400, seed=32, kind="tape")), root / "tape")
    return root


def _loans(folder: Path) -> pl.DataFrame:
    return read_dataset(folder).loans.collect()


def test_score_records_inputs_outputs_and_reasons(work: Path, tmp_path: Path) -> None:
    """`npl score --explain` appends one run whose rows hold the tape, the scores and reasons."""
    db = tmp_path / "audit.duckdb"
    out = tmp_path / "scores"
    result = _npl(
        "score", "--model", work / "model", "--data", work / "tape", "--out", out,
        "--explain", "--audit-db", db,
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    with AuditStore(db, read_only=True) as store:
        runs = store.runs()
        assert runs.height == 1
        run = runs.row(0, named=True)
        rows = store.decisions(run["run_id"])
    assert f"decision record {run['run_id']}" in result.output
    assert run["command"] == "score"
    assert run["caller_kind"] == "os_user"
    assert run["engine_version"] == __version__
    assert run["n_loans"] == 400
    assert run["model_fingerprint"] == files_fingerprint(work / "model")
    assert run["input_fingerprint"] == files_fingerprint(work / "tape", dataset=True)
    assert json.loads(run["parameters"]) == {"explain": True}
    tape = _loans(work / "tape").with_columns(pl.col(pl.Enum).cast(pl.String))
    assert_frame_equal(rows.select(LOANS.names), tape.select(LOANS.names))
    scores = pl.read_parquet(out / "scores.parquet")
    outputs = pl.DataFrame([json.loads(o) for o in rows["outputs"]])
    assert_frame_equal(
        outputs.select("p_recover", "expected_collections"),
        scores.select("p_recover", "expected_collections"),
    )
    reasons = json.loads(rows["reasons"][0])
    assert reasons["reason_1"] == scores["reason_1"][0]
    assert reasons["collections_reason_1"] == scores["collections_reason_1"][0]


def test_value_records_a_run_and_no_audit_records_none(work: Path, tmp_path: Path) -> None:
    """`npl value` records per-loan outputs and the price; `--no-audit` creates no database."""
    db = tmp_path / "audit.duckdb"
    scenarios = REPO / "scenarios" / "base.toml"
    args = ["value", "--model", work / "model", "--data", work / "tape", "--scenarios", scenarios]
    result = _npl(*args, "--out", tmp_path / "v1", "--audit-db", db)
    assert result.exit_code == 0, result.output
    with AuditStore(db, read_only=True) as store:
        run = store.runs().row(0, named=True)
        rows = store.decisions(run["run_id"])
    valuation = json.loads((tmp_path / "v1" / "valuation.json").read_text())
    parameters = json.loads(run["parameters"])
    assert run["command"] == "value"
    assert parameters["weighted_price"] == pytest.approx(valuation["weighted"]["price"])
    assert parameters["scenarios"]["path"] == str(scenarios)
    assert rows.height == 400
    assert set(json.loads(rows["outputs"][0])) == {
        "exposure",
        "p_recover",
        "expected_collections",
    }
    other = tmp_path / "other.duckdb"
    result = _npl(*args, "--out", tmp_path / "v2", "--audit-db", other, "--no-audit")
    assert result.exit_code == 0, result.output
    assert not other.exists()


def test_unwritable_audit_database_publishes_nothing(work: Path, tmp_path: Path) -> None:
    """A file that is not an audit database: exit 2, the message names it, no scores written."""
    db = tmp_path / "notes.duckdb"
    db.write_text("not a database\n")
    out = tmp_path / "scores"
    result = _npl(
        "score", "--model", work / "model", "--data", work / "tape", "--out", out,
        "--audit-db", db,
    )  # fmt: skip
    assert result.exit_code == 2
    assert f"cannot open the audit database {db}" in result.output
    assert "Traceback" not in result.output
    assert not out.exists()
    assert not list(tmp_path.glob(".*tmp*"))


def _record(db: Path, n: int, *, command: str = "score") -> tuple[str, pl.DataFrame]:
    loans = simulate(SimulationSettings(n_loans=n, seed=33, kind="tape")).loans
    outputs = loans.select("loan_id", p_recover=pl.col("outstanding_principal") / 1e6)
    reasons = loans.select("loan_id", reason_1=pl.format("reason of {}", pl.col("loan_id")))
    rows = decision_frame(loans, outputs, reasons)
    run_id = record_run(
        command=command,
        decisions=rows,
        input_fingerprint="a" * 64,
        parameters={"budget": 1000.0},
        caller="examiner",
        db=db,
    )
    return run_id, rows


def test_records_round_trip_through_export(tmp_path: Path) -> None:
    """`npl audit export` writes every decision with its run, as recorded."""
    db = tmp_path / "audit.duckdb"
    first, rows = _record(db, 50)
    second, _ = _record(db, 30, command="policy")
    out = tmp_path / "export" / "records.parquet"
    result = _npl("audit", "export", "--out", out, "--audit-db", db)
    assert result.exit_code == 0, result.output
    exported = pl.read_parquet(out)
    assert exported.height == 80
    mine = exported.filter(pl.col("run_id") == first).sort("seq")
    expected = rows.with_columns(pl.col(pl.Enum).cast(pl.String))
    assert_frame_equal(mine.select(expected.columns), expected)
    assert mine["decision_id"].to_list() == [f"{first}:{i}" for i in range(1, 51)]
    assert set(mine["caller"]) == {"examiner"}
    assert set(mine["command"]) == {"score"}
    assert json.loads(mine["parameters"][0]) == {"budget": 1000.0}
    only = tmp_path / "second.parquet"
    assert _npl("audit", "export", "--out", only, "--run", second, "--audit-db", db).exit_code == 0
    assert set(pl.read_parquet(only)["run_id"]) == {second}


def test_audit_list_and_show(tmp_path: Path) -> None:
    """`npl audit list` shows runs; `show` a run and one decision; unknown ids exit 2."""
    db = tmp_path / "audit.duckdb"
    run_id, rows = _record(db, 5)
    listed = _npl("audit", "list", "--audit-db", db)
    assert listed.exit_code == 0, listed.output
    assert run_id in listed.output
    shown = _npl("audit", "show", f"{run_id}:2", "--audit-db", db)
    assert shown.exit_code == 0, shown.output
    assert rows["loan_id"][1] in shown.output
    assert f"reason of {rows['loan_id'][1]}" in shown.output
    for bad in ("nope", f"{run_id}:99", f"{run_id}:x"):
        result = _npl("audit", "show", bad, "--audit-db", db)
        assert result.exit_code == 2, bad
        assert "error:" in result.output
    missing = _npl("audit", "list", "--audit-db", tmp_path / "none.duckdb")
    assert missing.exit_code == 2
    assert "no audit database" in missing.output


def test_a_run_id_is_never_recorded_twice(tmp_path: Path) -> None:
    """Appending a run id again fails and leaves the database as it was (append-only)."""
    db = tmp_path / "audit.duckdb"
    run_id, rows = _record(db, 3)
    again = RunRecord(
        run_id=run_id,
        recorded_at=datetime.now(UTC),
        caller="x",
        caller_kind="os_user",
        command="score",
        model_id=None,
        model_fingerprint=None,
        input_fingerprint="b" * 64,
        engine_version=__version__,
        decisions=rows,
    )
    with AuditStore(db) as store:
        with pytest.raises(NplError, match="recorded twice"):
            store.append([again])
        assert store.runs().height == 1
        assert store.decisions(run_id).height == 3


_KILLED_WRITER = textwrap.dedent(
    """
    import sys, time
    import polars as pl
    from npl_engine.audit import record_run

    def chunks():
        for i in range(1000):
            ids = [f"K{i}-{j}" for j in range(5000)]
            yield pl.DataFrame({"loan_id": ids, "outputs": ['{"p_recover": 0.5}'] * 5000})
            if i == 3:
                print("mid-write", flush=True)
                time.sleep(120)

    record_run(command="score", decisions=chunks(), input_fingerprint="c" * 64, db=sys.argv[1])
    print("committed", flush=True)
    """
)


def test_a_run_killed_while_writing_leaves_no_partial_record(tmp_path: Path) -> None:
    """SIGKILL in the middle of a run's transaction: earlier runs intact, nothing of the killed one.

    The writer inserts 20,000 decisions of a run, then is killed before its commit; the
    database must open, hold the earlier run exactly, and take new runs.
    """
    db = tmp_path / "audit.duckdb"
    before, rows = _record(db, 40)
    process = subprocess.Popen(
        [sys.executable, "-c", _KILLED_WRITER, str(db)],
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": str(REPO / "src")},
    )
    assert process.stdout is not None
    assert process.stdout.readline().strip() == "mid-write"
    process.send_signal(signal.SIGKILL)
    process.wait(timeout=30)
    assert process.returncode == -signal.SIGKILL
    with AuditStore(db) as store:
        runs = store.runs()
        assert runs["run_id"].to_list() == [before]
        assert runs["n_loans"].to_list() == [40]
        kept = store.decisions(before)
        expected = rows.with_columns(pl.col(pl.Enum).cast(pl.String))
        assert_frame_equal(kept.select(expected.columns), expected)
    con = duckdb.connect(str(db), read_only=True)
    try:
        orphans = con.execute("SELECT count(*) FROM decisions WHERE run_id <> ?", [before])
        assert orphans.fetchone() == (0,)
    finally:
        con.close()
    after, _ = _record(db, 2)
    with AuditStore(db, read_only=True) as store:
        assert set(store.runs()["run_id"]) == {before, after}


def test_run_ids_sort_by_time() -> None:
    """Run ids start with the UTC time, so they sort as the runs happened."""
    early = new_run_id(datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC))
    late = new_run_id(datetime(2026, 1, 2, 3, 4, 6, tzinfo=UTC))
    assert early.startswith("20260102T030405Z-")
    assert early < late


@pytest.mark.parametrize("delay", [0.5, 2.0, 4.0])
def test_a_killed_npl_score_leaves_a_whole_record_or_none(
    work: Path, tmp_path: Path, delay: float
) -> None:
    """A real `npl score` process killed after ``delay`` seconds leaves no partial record.

    The database holds the earlier run intact and either the killed run in full (it had
    committed) or nothing of it; scores are never published without their record.
    """
    db = tmp_path / "audit.duckdb"
    before, _ = _record(db, 5)
    out = tmp_path / "scores"
    process = subprocess.Popen(
        [sys.executable, "-c", "from npl_engine.cli import main; main()", "score",
         "--model", str(work / "model"), "--data", str(work / "tape"), "--out", str(out),
         "--audit-db", str(db)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env={**os.environ, "PYTHONPATH": str(REPO / "src")},
    )  # fmt: skip
    try:
        process.wait(timeout=delay)
    except subprocess.TimeoutExpired:
        process.send_signal(signal.SIGKILL)
        process.wait(timeout=30)
    with AuditStore(db, read_only=True) as store:
        runs = store.runs()
        assert before in runs["run_id"].to_list()
        assert store.decisions(before).height == 5
        killed = runs.filter(pl.col("run_id") != before)
        assert killed.height <= 1
        for run_id, n_loans in killed.select("run_id", "n_loans").iter_rows():
            assert n_loans == 400
            assert store.decisions(run_id).height == 400
        if (out / "scores.parquet").exists():
            assert killed.height == 1


def test_many_small_runs_in_one_frame_read_back_as_separate_runs(tmp_path: Path) -> None:
    """Rows built for many runs at once (the service's batches): each run's own, seq from 1."""
    loans = simulate(SimulationSettings(n_loans=6, seed=34, kind="tape")).loans
    outputs = loans.select("loan_id", p_recover=pl.col("outstanding_principal") / 1e6)
    rows = decision_frame(loans, outputs, None)
    now = datetime.now(UTC)
    records = [
        RunRecord(
            run_id=new_run_id(now),
            recorded_at=now,
            caller="k1",
            caller_kind="api_key",
            command="serve:score",
            model_id=None,
            model_fingerprint=None,
            input_fingerprint=str(i),
            engine_version="test",
            n_loans=n,
        )
        for i, n in enumerate((1, 3, 2))
    ]
    ids = [r.run_id for r in records]
    with pytest.raises(ValueError, match="5 decision rows for runs of 6 loans"):
        decision_rows(rows.head(5), ids, [1, 3, 2])
    db = tmp_path / "audit.duckdb"
    with AuditStore(db) as store:
        with pytest.raises(ValueError, match="5 decision rows for runs of 6 loans"):
            store.append_rows(run_rows(records), decision_rows(rows, ids, [1, 3, 2]).head(5))
        assert store.runs().is_empty()
        store.append_rows(run_rows(records), decision_rows(rows, ids, [1, 3, 2]))
        second = store.decisions(records[1].run_id)
        counts = [store.run(r.run_id)["n_loans"] for r in records]  # type: ignore[index]
    assert counts == [1, 3, 2]
    assert second["loan_id"].to_list() == loans["loan_id"][1:4].to_list()
    assert second["seq"].to_list() == [1, 2, 3]


def test_reading_a_large_run_draws_no_progress_bar_into_the_output(tmp_path: Path) -> None:
    """The store turns DuckDB's progress bar off: `npl audit` tables and CSV stay clean.

    DuckDB draws it on stdout for queries over 2 s, such as reading a million-loan run. It is
    on by default in a plain process (not under pytest), hence the child process.
    """
    db = tmp_path / "audit.duckdb"
    _record(db, 3)
    code = textwrap.dedent(
        f"""
        from npl_engine.audit import AuditStore
        for read_only in (True, False):
            with AuditStore({str(db)!r}, read_only=read_only) as store:
                print(store._con.execute(
                    "SELECT value FROM duckdb_settings() WHERE name = 'enable_progress_bar'"
                ).fetchone()[0])
        """
    )
    env = {**os.environ, "PYTHONPATH": str(REPO / "src")}
    child = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True
    )
    assert child.stdout.split() == ["false", "false"]
