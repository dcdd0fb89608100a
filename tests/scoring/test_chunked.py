"""Scoring in chunks writes exactly the rows of the in-memory scoring."""

from __future__ import annotations

from pathlib import Path

import polars as pl
import pyarrow.parquet as pq
from polars.testing import assert_frame_equal

from npl_engine.data import read_dataset
from npl_engine.scoring import RecoveryModel, score_in_chunks


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
