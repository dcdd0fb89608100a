"""Scoring in chunks writes exactly the rows of the in-memory scoring."""

from __future__ import annotations

from pathlib import Path

import polars as pl
import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner, Result
from polars.testing import assert_frame_equal

from npl_engine.audit import AuditStore
from npl_engine.cli import main
from npl_engine.data import read_dataset
from npl_engine.errors import NplError
from npl_engine.scoring import (
    AUTO_CHUNK_ROWS,
    RecoveryModel,
    _chunked,
    chunk_rows_for,
    score_in_chunks,
)


def test_chunked_scores_and_curves_equal_in_memory(
    small_model_and_tape: tuple[Path, Path], tmp_path: Path
) -> None:
    """Chunks of 400 loans (the last one short) give the in-memory scores and curves."""
    model_dir, tape = small_model_and_tape
    model = RecoveryModel.load(model_dir)
    loans = read_dataset(tape).loans
    whole = model.score(loans)
    n = score_in_chunks(
        model,
        loans,
        scores_path=tmp_path / "scores.parquet",
        curves_path=tmp_path / "curves.parquet",
        chunk_rows=400,
    )
    assert n == whole.scores.height == 1500
    assert_frame_equal(pl.read_parquet(tmp_path / "scores.parquet"), whole.scores, check_exact=True)
    assert_frame_equal(pl.read_parquet(tmp_path / "curves.parquet"), whole.curves, check_exact=True)
    # One row group per chunk: the curves were written as they were scored.
    assert pq.ParquetFile(tmp_path / "curves.parquet").num_row_groups == 4


def test_a_failed_write_stops_scoring_and_is_raised(
    small_model_and_tape: tuple[Path, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A chunk is written by a background thread: its error reaches the caller.

    The error is raised when the next chunk is handed over, so no later chunk is scored.
    """
    model_dir, tape = small_model_and_tape
    model = RecoveryModel.load(model_dir)
    real_write = _chunked._write
    writes: list[int] = []
    scored: list[int] = []

    def failing_write(writers, scores, curves):  # type: ignore[no-untyped-def]
        writes.append(scores.num_rows)
        if len(writes) == 2:
            raise OSError("disk full")
        real_write(writers, scores, curves)

    real_score = model.score

    def counting_score(loans):  # type: ignore[no-untyped-def]
        scored.append(1)
        return real_score(loans)

    monkeypatch.setattr(_chunked, "_write", failing_write)
    monkeypatch.setattr(model, "score", counting_score)
    with pytest.raises(OSError, match="disk full"):
        score_in_chunks(
            model,
            read_dataset(tape).loans,
            scores_path=tmp_path / "scores.parquet",
            curves_path=tmp_path / "curves.parquet",
            chunk_rows=215,
        )
    # The second write failed while the third chunk was scored; the fourth never was.
    assert writes == [215, 215]
    assert len(scored) == 3


def _npl(*args: str | Path) -> Result:
    return CliRunner().invoke(main, [str(a) for a in args])


def _score_run(model: Path, tape: Path, out: Path, db: Path, *options: str) -> tuple[Result, dict]:
    result = _npl("score", "--model", model, "--data", tape, "--out", out, "--audit-db", db,
                  *options)  # fmt: skip
    assert result.exit_code == 0, result.output
    with AuditStore(db, read_only=True) as store:
        run = store.runs(limit=1).row(0, named=True)
        run["decisions"] = store.decisions(run["run_id"]).drop("run_id")
    return result, run


@pytest.mark.parametrize(("chunk_rows", "chunks"), [(1500, 1), (500, 3), (215, 7)])
def test_cli_score_in_chunks_writes_the_in_memory_files_and_record(
    small_model_and_tape: tuple[Path, Path], tmp_path: Path, chunk_rows: int, chunks: int
) -> None:
    """`npl score --chunk-rows N` (1, 3, 7 chunks) writes the in-memory rows and record."""
    model, tape = small_model_and_tape
    db = tmp_path / "audit.duckdb"
    whole, whole_run = _score_run(model, tape, tmp_path / "whole", db, "--chunk-rows", "0")
    part, part_run = _score_run(model, tape, tmp_path / "part", db, "--chunk-rows", str(chunk_rows))
    for name in ("scores.parquet", "curves.parquet"):
        assert_frame_equal(
            pl.read_parquet(tmp_path / "part" / name),
            pl.read_parquet(tmp_path / "whole" / name),
            check_exact=True,
        )
    assert pq.ParquetFile(tmp_path / "part" / "curves.parquet").num_row_groups == chunks
    assert_frame_equal(part_run["decisions"], whole_run["decisions"], check_exact=True)
    assert part_run["n_loans"] == whole_run["n_loans"] == 1500
    assert part_run["parameters"] == whole_run["parameters"]
    assert f"scoring chunk {chunks}/{chunks}: loans" in part.output
    assert "scoring chunk" not in whole.output
    # The summary table printed is the same.
    assert whole.stdout.split("wrote")[0] == part.stdout.split("wrote")[0]


def test_cli_score_in_chunks_with_reason_codes(
    small_model_and_tape: tuple[Path, Path], tmp_path: Path
) -> None:
    """With --explain, chunks of 600 loans give the in-memory reason codes and record."""
    model, tape = small_model_and_tape
    db = tmp_path / "audit.duckdb"
    _, whole_run = _score_run(model, tape, tmp_path / "whole", db, "--explain")
    _, part_run = _score_run(model, tape, tmp_path / "part", db, "--explain", "--chunk-rows", "600")
    scores = pl.read_parquet(tmp_path / "part" / "scores.parquet")
    assert "reason_1" in scores.columns
    assert_frame_equal(scores, pl.read_parquet(tmp_path / "whole" / "scores.parquet"))
    assert_frame_equal(part_run["decisions"], whole_run["decisions"], check_exact=True)


def test_automatic_chunks_only_above_the_threshold() -> None:
    """No --chunk-rows: in memory up to 250,000 loans, chunks of 250,000 beyond."""
    assert chunk_rows_for(AUTO_CHUNK_ROWS, None) == 0
    assert chunk_rows_for(AUTO_CHUNK_ROWS + 1, None) == AUTO_CHUNK_ROWS
    assert chunk_rows_for(AUTO_CHUNK_ROWS + 1, 0) == 0
    with pytest.raises(ValueError, match="chunk_rows must be 0"):
        chunk_rows_for(10, -1)


def test_cli_score_in_chunks_failing_midway_records_and_publishes_nothing(
    small_model_and_tape: tuple[Path, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The record is appended while chunks are scored: a run failing at chunk 3 rolls it back.

    Exit 2 with the error, no output folder, and the database holds only the earlier run.
    """
    model, tape = small_model_and_tape
    db = tmp_path / "audit.duckdb"
    _score_run(model, tape, tmp_path / "first", db, "--chunk-rows", "500")
    real_score = RecoveryModel.score
    calls: list[int] = []

    def failing_score(self: RecoveryModel, loans: pl.DataFrame) -> object:
        calls.append(loans.height)
        if len(calls) == 3:
            raise NplError("chunk 3 cannot be scored")
        return real_score(self, loans)

    monkeypatch.setattr(RecoveryModel, "score", failing_score)
    out = tmp_path / "second"
    result = _npl("score", "--model", model, "--data", tape, "--out", out, "--audit-db", db,
                  "--chunk-rows", "500")  # fmt: skip
    assert result.exit_code == 2, result.output
    assert "chunk 3 cannot be scored" in result.output
    assert "Traceback" not in result.output
    assert not out.exists()
    with AuditStore(db, read_only=True) as store:
        runs = store.runs()
        assert runs.height == 1
        assert store.decisions(runs["run_id"][0]).height == 1500


def test_cli_score_in_chunks_with_an_unwritable_audit_database_publishes_nothing(
    small_model_and_tape: tuple[Path, Path], tmp_path: Path
) -> None:
    """The recorder fails as the run starts: exit 2 naming the database, nothing written."""
    model, tape = small_model_and_tape
    db = tmp_path / "notes.duckdb"
    db.write_text("not a database\n")
    out = tmp_path / "scores"
    result = _npl("score", "--model", model, "--data", tape, "--out", out, "--audit-db", db,
                  "--chunk-rows", "500")  # fmt: skip
    assert result.exit_code == 2, result.output
    assert f"cannot open the audit database {db}" in result.output
    assert "Traceback" not in result.output
    assert not out.exists()
