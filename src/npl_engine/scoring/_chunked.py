"""Scoring a tape in chunks of loans, written as it goes: memory follows the chunk, not the tape."""

from __future__ import annotations

from pathlib import Path

import polars as pl
import pyarrow.parquet as pq

from npl_engine.scoring._model import RecoveryModel

__all__ = ["score_in_chunks"]


def score_in_chunks(
    model: RecoveryModel,
    loans: pl.LazyFrame,
    *,
    scores_path: str | Path,
    curves_path: str | Path,
    chunk_rows: int = 100_000,
) -> int:
    """Score ``loans`` ``chunk_rows`` at a time, appending each chunk to two Parquet files.

    Parameters
    ----------
    model
        A fitted recovery model.
    loans
        Validated contract ``loans``, lazily (each chunk is a slice of it, so a Parquet scan
        reads one chunk's rows at a time).
    scores_path, curves_path
        Files written: the rows of ``model.score(loans).scores`` and ``.curves``, in the same
        order and with the same values (scoring is per loan).
    chunk_rows
        Loans per chunk: peak memory grows with it (the curves of a chunk are
        ``chunk_rows × horizon`` rows), not with the tape.

    Returns
    -------
    int
        Loans scored.
    """
    if chunk_rows < 1:
        msg = f"chunk_rows must be at least 1, got {chunk_rows}"
        raise ValueError(msg)
    n = int(loans.select(pl.len()).collect().item())
    writers: tuple[pq.ParquetWriter, pq.ParquetWriter] | None = None
    try:
        for start in range(0, max(n, 1), chunk_rows):
            part = model.score(loans.slice(start, chunk_rows))
            scores, curves = part.scores.to_arrow(), part.curves.to_arrow()
            if writers is None:
                writers = (
                    pq.ParquetWriter(scores_path, scores.schema),
                    pq.ParquetWriter(curves_path, curves.schema),
                )
            writers[0].write_table(scores)
            writers[1].write_table(curves)
    finally:
        if writers is not None:
            for writer in writers:
                writer.close()
    return n
